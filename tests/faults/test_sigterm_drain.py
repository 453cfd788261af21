"""F11: SIGTERM drains the node: new joins refused with a reason, open sockets told, calls keep
running through the grace period, and the process exits 0 within a bound."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import httpx

from tests.faults.bots import counting_subscriber, publisher, send_video, until
from tests.signaling.wsclient import Client, dev_token
from tests.support.canary import Canaries
from tests.support.server import ServerProcess

GRACE = 3.0


async def refused_join(server: ServerProcess, room: str) -> tuple[dict[str, object], tuple[int | None, str]]:
    late = await Client.open(server.ws_base, dev_token(room, "late-" + uuid.uuid4().hex[:4]))
    return await late.recv(), await late.closed()


async def test_sigterm_drains_then_exits_when_the_last_client_leaves(artifacts: Path, canaries: Canaries) -> None:
    server = ServerProcess(artifacts, env={"ROOMCAST_DRAIN_TIMEOUT": "20"})
    try:
        canary = await canaries.sdk(server)  # another room: it keeps its call through the drain
        room = "f11-" + uuid.uuid4().hex[:6]
        camera, publication = await publisher(server, room)
        viewer, counts = await counting_subscriber(server, room, "viewer")
        member, _ = await Client.joined(server.ws_base, room, "member", can_publish=False)
        await send_video(publication, 20, 200)
        await until(lambda: sum(counts.values()) >= 18, 5, "media before the signal")

        signalled = canary.mark()
        server.proc.send_signal(signal.SIGTERM)
        notice = await member.recv_type("server_shutdown")
        assert notice["reason"] == "draining" and notice["grace"] == 20
        health = httpx.get(server.base + "/healthz")
        assert health.status_code == 503 and health.json()["status"] == "draining"
        error, (code, reason) = await refused_join(server, room)
        assert error["type"] == "error" and error["code"] == "server_shutting_down" and error["fatal"] is True
        assert (code, reason) == (1013, "server_shutting_down")
        before = sum(counts.values())
        await send_video(publication, 20, 200, start=20)  # the room keeps running while draining
        await until(lambda: sum(counts.values()) >= before + 18, 5, "media during the drain")

        canary.assert_flowed(since=signalled, max_gap=1.0)  # O3 while draining
        await canary.assert_alive()
        await canary.close()
        for client in (camera, viewer):
            await client.close()
        await member.close()
        start = time.monotonic()
        code = await asyncio.to_thread(server.proc.wait, 10)
        print(f"\nF11: exit {code} {time.monotonic() - start:.2f}s after the last client left")
        assert code == 0 and time.monotonic() - start < 5  # not the 20 s grace: nobody was left
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()[-3000:]


async def test_sigterm_closes_lingering_sockets_after_the_grace_period(artifacts: Path) -> None:
    server = ServerProcess(artifacts, env={"ROOMCAST_DRAIN_TIMEOUT": str(GRACE)})
    try:
        room = "f11b-" + uuid.uuid4().hex[:6]
        member, _ = await Client.joined(server.ws_base, room, "stays")
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert (await member.recv_type("server_shutdown"))["grace"] == GRACE
        final = await member.recv_type("error", timeout=GRACE + 3)
        assert final["code"] == "server_shutdown" and final["fatal"] is True
        assert time.monotonic() - signalled >= GRACE - 0.5  # it had its grace period
        assert await member.closed() == (1000, "server_shutdown")  # normal close: clients must not resume here
        code = await asyncio.to_thread(server.proc.wait, 10)
        elapsed = time.monotonic() - signalled
        print(f"\nF11: lingering client closed, exit {code} {elapsed:.2f}s after SIGTERM (grace {GRACE}s)")
        assert code == 0 and elapsed < GRACE + 5
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()[-3000:]
