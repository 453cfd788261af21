"""Media limits and bad offers through signaling (no browser: a real Chromium offer from the fixtures)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.signaling.wsclient import Client
from tests.support.server import ServerProcess

OFFER = json.loads((Path(__file__).parent.parent / "wire" / "fixtures" / "chromium.json").read_text())["offer"]


@pytest.fixture(scope="module")
def limited(artifacts: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(artifacts, env={"ROOMCAST_MAX_PUBLISHERS": "1", "ROOMCAST_MAX_TRACKS_PER_PARTICIPANT": "2"})
    yield proc
    assert proc.stop() == 0


async def publish(client: Client, sdp: str) -> dict:  # type: ignore[type-arg]
    await client.send({"type": "offer", "to": "$publish", "sdp": sdp})
    while True:
        msg = await client.recv()
        if msg["type"] in ("answer", "error"):
            return msg


async def test_publisher_limit_per_room(limited: ServerProcess) -> None:
    room = "lim-" + uuid.uuid4().hex[:6]
    first, _ = await Client.joined(limited.ws_base, room, "first")
    second, _ = await Client.joined(limited.ws_base, room, "second")
    assert (await publish(first, OFFER))["type"] == "answer"
    refused = await publish(second, OFFER)
    assert (refused["type"], refused["code"], refused["ref"]) == ("error", "too_many_publishers", "$publish")
    await first.close()
    await second.close()


async def test_track_limit_per_participant(limited: ServerProcess) -> None:
    room = "lim-" + uuid.uuid4().hex[:6]
    client, _ = await Client.joined(limited.ws_base, room, "greedy")
    audio = OFFER[OFFER.index("m=audio") : OFFER.index("m=video")]
    extra = audio.replace("a=mid:0", "a=mid:9")
    greedy = OFFER + extra  # a third sending m-line
    refused = await publish(client, greedy)
    assert refused["code"] == "too_many_tracks"
    await client.close()


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda s: s.replace("a=fingerprint:", "a=x-fingerprint:"), "missing_fingerprint"),
        (lambda s: s.replace("a=setup:actpass", "a=setup:holdconn"), "bad_setup"),
        (lambda s: s.replace("a=mid:1", "a=mid:0"), "duplicate_mid"),
        (lambda s: "v=0\r\n" + "a=x\r\n" * 12_000, "invalid_sdp"),
        (lambda s: "garbage", "invalid_sdp"),
    ],
)
async def test_bad_offers_get_typed_errors(server: ServerProcess, mangle, code: str) -> None:  # type: ignore[no-untyped-def]
    client, _ = await Client.joined(server.ws_base, "bad-" + uuid.uuid4().hex[:6], "mallory")
    sdp = mangle(OFFER)
    await client.send({"type": "offer", "to": "$publish", "sdp": sdp})
    reply = await client.recv_type("error")
    assert reply["code"] in (code, "sdp_too_large", "message_too_large"), reply
    if reply["code"] in ("sdp_too_large", "message_too_large"):
        assert code == "invalid_sdp"
    else:
        await client.send({"type": "ping"})
        assert (await client.recv_type("pong"))["type"] == "pong"
        await client.close()


def test_metrics_expose_media_and_loop_lag(server: ServerProcess) -> None:
    text = httpx.get(server.base + "/metrics").text
    for name in (
        "roomcast_tracks",
        "roomcast_event_loop_lag_seconds",
        "roomcast_media_forwarded_packets_total",
        "roomcast_media_transports",
        "roomcast_rooms",
        "roomcast_participants",
    ):
        assert name in text, name
