"""GStreamer's webrtcbin (1.22: libnice, its own DTLS/SRTP) on both ends of plain WHIP/WHEP HTTP: it publishes
VP8 + Opus with ``POST /whip/{room}`` and, in another process, plays the room with ``POST /whep/{room}``: the
non-browser WHEP client decodes frames. No Roomcast code on the client side (tests/interop/gst_peer.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gstreamer import GstPeer, gstreamer_available
from tests.support.server import ServerProcess
from tests.whip.conftest import AUTH, mint

pytestmark = pytest.mark.skipif(not gstreamer_available(), reason="GStreamer webrtcbin (python3-gst-1.0) is missing")


@pytest.fixture(scope="module")
def gst_server(jlo0: None, artifacts: Path) -> Iterator[ServerProcess]:
    """libnice gathers candidates on jlo0 only, so the server announces 127.0.0.2."""
    proc = ServerProcess(artifacts, args=["--public-ip", "127.0.0.2"])
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log(), proc.log()[-5000:]


@pytest.fixture
async def peers() -> AsyncIterator[list[GstPeer]]:
    started: list[GstPeer] = []
    yield started
    for peer in started:
        await peer.stop()


async def over_http(server: ServerProcess, peer: GstPeer, path: str, token: str) -> str:
    """The peer's offer POSTed to ``path``, the answer handed back; the session's Location."""
    offer = await peer.offer()
    async with httpx.AsyncClient() as client:
        res = await client.post(
            server.base + path,
            content=offer,
            headers={"content-type": "application/sdp", "authorization": f"Bearer {token}"},
        )
    assert res.status_code == 201, res.text
    await peer.send({"type": "answer", "sdp": res.text})
    return res.headers["location"]


async def test_gstreamer_publishes_over_whip_and_plays_over_whep(
    gst_server: ServerProcess, peers: list[GstPeer], artifacts: Path
) -> None:
    room = "gst-whip-" + uuid.uuid4().hex[:6]
    publisher = await GstPeer.start(artifacts / f"{room}-pub.log", "publish", "--video", "vp8", "--audio")
    peers.append(publisher)
    pub_token = mint(gst_server, room, "gst-encoder")
    pub_location = await over_http(gst_server, publisher, f"/whip/{room}", pub_token)
    player = await GstPeer.start(artifacts / f"{room}-sub.log", "subscribe")
    peers.append(player)
    play_token = mint(gst_server, room, "gst-player", can_publish=False)
    play_location = await over_http(gst_server, player, f"/whep/{room}", play_token)
    for _ in range(200):  # GStreamer reports once a second
        if player.stats.get("frames", 0) > 30:
            break
        await asyncio.sleep(0.1)
    before = dict(player.stats)
    assert before.get("frames", 0) > 30, (player.errors, player.stats, publisher.errors)
    await asyncio.sleep(5.0)  # the measurement window
    after = dict(player.stats)
    fps = (after["frames"] - before["frames"]) / (after["t"] - before["t"])
    print(f"gstreamer whip -> whep: {fps:.1f} fps decoded, freezes {after['freezes'] - before['freezes']:.2f}s")
    assert fps >= 20, (before, after)
    participants = httpx.get(f"{gst_server.base}/api/rooms/{room}/participants", auth=AUTH).json()["participants"]
    assert sorted(p["identity"] for p in participants) == ["gst-encoder", "gst-player"]
    for location, token in ((play_location, play_token), (pub_location, pub_token)):
        res = httpx.delete(gst_server.base + location, headers={"authorization": f"Bearer {token}"})
        assert res.status_code == 200
    assert httpx.get(f"{gst_server.base}/api/rooms/{room}/participants", auth=AUTH).status_code == 404  # room gone
