"""aiortc (an independent WebRTC stack) as the client of our echo endpoint: frames must come back."""

from __future__ import annotations

import asyncio
import uuid

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack

from tests.signaling.wsclient import Client
from tests.support.server import ServerProcess


@pytest.fixture(autouse=True)
def loopback_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice skips 127.0.0.1 when gathering; inside the test namespace loopback is all there is."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


async def echo_peer(server: ServerProcess) -> tuple[RTCPeerConnection, Client, asyncio.Queue[MediaStreamTrack]]:
    client, _ = await Client.joined(server.ws_base, "aiortc-" + uuid.uuid4().hex[:6], "aiortc")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    pc.on("track", tracks.put_nowait)
    pc.addTrack(VideoStreamTrack())
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    await client.send({"type": "offer", "to": "$echo", "sdp": pc.localDescription.sdp})
    answer = await client.recv_type("answer", timeout=10)
    assert answer["from"] == "$echo" and "a=ice-lite" in answer["sdp"]
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    return pc, client, tracks


async def test_aiortc_receives_its_own_frames_back(server: ServerProcess) -> None:
    pc, client, tracks = await echo_peer(server)
    try:
        received = {}
        for _ in range(2):
            track = await asyncio.wait_for(tracks.get(), 10)
            received[track.kind] = track
        video = received["video"]
        frames = [await asyncio.wait_for(video.recv(), 10) for _ in range(10)]
        assert len(frames) == 10 and frames[0].width == 640  # aiortc's VideoStreamTrack sends 640x480
        audio = await asyncio.wait_for(received["audio"].recv(), 10)
        assert audio.sample_rate == 48000
        assert pc.connectionState == "connected"
    finally:
        await pc.close()
        await client.close()


async def test_offer_with_a_wrong_fingerprint_gets_no_media(server: ServerProcess) -> None:
    """B5: our side verifies aiortc's certificate against the SDP; a forged fingerprint fails closed."""
    client, _ = await Client.joined(server.ws_base, "fp-" + uuid.uuid4().hex[:6], "forger")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(VideoStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    forged = "\r\n".join(
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) if line.startswith("a=fingerprint:") else line
        for line in pc.localDescription.sdp.split("\r\n")
    )
    await client.send({"type": "offer", "to": "$echo", "sdp": forged})
    answer = await client.recv_type("answer", timeout=10)
    failed = asyncio.Event()

    @pc.on("connectionstatechange")
    def _state() -> None:
        if pc.connectionState in ("failed", "closed"):
            failed.set()

    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    tracks = [t.receiver.track for t in pc.getTransceivers() if t.receiver and t.receiver.track]
    got_frame = asyncio.create_task(tracks[0].recv()) if tracks else None
    await asyncio.wait_for(failed.wait(), 40)
    assert pc.connectionState in ("failed", "closed")
    if got_frame is not None:
        assert not got_frame.done() or got_frame.exception() is not None
        got_frame.cancel()
    await pc.close()
    await client.close()
