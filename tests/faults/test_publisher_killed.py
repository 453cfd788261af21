"""F1: a publisher's process dies (no leave, no close frame, no DTLS alert). Its subscribers are told:
its tracks end when ICE consent expires (RFC 7675) and it leaves the room when its resume window ends.

The server runs with short windows (consent 7 s, above the SDK's 5 s check interval; resume 9 s) so
the test is quick; with the defaults
(30 s and 20 s) the same two events come at 20 s, inside RELIABILITY's "within 30 s".
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.bots import counting_subscriber, kill, metric, publisher, send_video, until
from tests.signaling.wsclient import Client
from tests.support.canary import Canaries
from tests.support.server import ServerProcess

CONSENT, RESUME = 7.0, 9.0
CHECK_INTERVAL = 5.0  # roomcast.proto.ice_controlling.CONSENT_INTERVAL: the last check was at most this long ago


@pytest.fixture(scope="module")
def short_server(artifacts: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        artifacts, env={"ROOMCAST_CONSENT_TIMEOUT": str(CONSENT), "ROOMCAST_RESUME_WINDOW": str(RESUME)}
    )
    yield proc
    assert proc.stop() == 0 and "Traceback" not in proc.log(), proc.log()[-3000:]


async def test_killed_publisher_tracks_end_at_consent_expiry_then_it_leaves(
    short_server: ServerProcess, canaries: Canaries
) -> None:
    server = short_server
    canary = await canaries.sdk(server)
    room = "f1-" + uuid.uuid4().hex[:6]
    camera, publication = await publisher(server, room)
    watcher, _ = await Client.joined(server.ws_base, room, "watcher", can_publish=False)
    seen: list[tuple[float, dict[str, Any]]] = []

    async def record() -> None:
        async for raw in watcher.ws:
            seen.append((time.monotonic(), json.loads(raw)))

    recorder = asyncio.create_task(record())
    viewer, counts = await counting_subscriber(server, room, "viewer")
    await send_video(publication, 50, 200)
    await until(lambda: sum(counts.values()) >= 45, 5, "the viewer receiving video")
    before_kill = metric(server, r"^roomcast_media_transports ([0-9.e+]+)")

    kill(camera)
    killed_at = canary.mark()

    def event_at(check: Callable[[dict[str, Any]], bool]) -> float | None:
        return next((t - killed_at for t, msg in seen if t >= killed_at and check(msg)), None)

    def tracks_gone(msg: dict[str, Any]) -> bool:
        return msg["type"] == "tracks" and not [t for t in msg["tracks"] if t["participant"] == "camera"]

    def left(msg: dict[str, Any]) -> bool:
        return bool(msg["type"] == "participant_left" and msg["identity"] == "camera")

    await until(lambda: event_at(tracks_gone) is not None, CONSENT + 3, "tracks removed after consent expiry")
    await until(lambda: event_at(left) is not None, RESUME + 3, "participant_left after the resume window")
    ended, gone = event_at(tracks_gone), event_at(left)
    assert ended is not None and gone is not None
    print(f"\nF1: tracks removed {ended:.2f}s after the kill (consent {CONSENT}s), left after {gone:.2f}s")
    assert CONSENT - CHECK_INTERVAL - 0.5 <= ended <= CONSENT + 3
    assert ended < gone  # the tracks ended by consent expiry, before (and apart from) the resume window
    assert next(msg for _, msg in seen if left(msg))["reason"] == "disconnected"
    # O4: the dead publisher's transport is gone; the viewer's remains
    await until(
        lambda: metric(server, r"^roomcast_media_transports ([0-9.e+]+)") == before_kill - 1, 5, "transport released"
    )
    canary.assert_flowed(since=killed_at, max_gap=1.0)  # O3: another room never noticed
    await canary.assert_alive()
    recorder.cancel()
    await viewer.close()
    await watcher.close()
