"""aiortc ↔ Chromium through the SFU, both directions (interop with an independent WebRTC stack)."""

from __future__ import annotations

import asyncio
import uuid

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack, VideoStreamTrack
from av import VideoFrame

from tests.e2e.test_sfu import decoding_tracks
from tests.signaling.wsclient import Client
from tests.support.browser_fixtures import NewPage
from tests.support.quality import OUTBOUND, WINDOW, FreezeMeter, measure
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def loopback_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


class CountingTrack(VideoStreamTrack):
    """aiortc's test pattern (30 fps), counting the frames handed to its encoder: the source rate."""

    frames = 0

    async def recv(self) -> VideoFrame:
        frame = await super().recv()
        self.frames += 1
        return frame


async def test_aiortc_publisher_to_chromium_subscriber(server: ServerProcess, new_page: NewPage) -> None:
    room = "ai-pub-" + uuid.uuid4().hex[:6]
    client, _ = await Client.joined(server.ws_base, room, "aiortc-cam")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        track = CountingTrack()
        pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        await client.send(
            {
                "type": "offer",
                "to": "$publish",
                "sdp": pc.localDescription.sdp,
                "tracks": [{"track_id": track.id, "source": "camera", "name": "aiortc"}],
            }
        )
        answer = await client.recv_type("answer", timeout=10)
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        viewer = await new_page(f"{server.base}/stream?room={room}&role=viewer&identity=viewer")
        await viewer.wait_for_function("window.streamState && window.streamState.joined")
        frames = await decoding_tracks(viewer, 1)
        assert max(frames) > 0
        assert await viewer.evaluate("window.streamState.tracks[0].from") == "aiortc-cam"
        got = await measure(viewer, source_frames=lambda: track.frames)
        print("aiortc-pub", got)
        assert got["video"]["fps"] >= 0.9 * got["source"]["fps"], got  # aiortc encodes VP8 in software
        assert got["video"]["freezes"] < 0.5 and got["video"]["lost"] == 0, got
    finally:
        await pc.close()
        await client.close()


async def test_chromium_publisher_to_aiortc_subscriber(server: ServerProcess, new_page: NewPage) -> None:
    room = "ai-sub-" + uuid.uuid4().hex[:6]
    host = await new_page(f"{server.base}/stream?room={room}&role=host&identity=host")
    await host.wait_for_function("window.streamState && window.streamState.joined")
    client, joined = await Client.joined(server.ws_base, room, "aiortc-viewer", can_publish=False)
    tracks = joined["tracks"]
    while len(tracks) < 2:  # the host's audio and video may be announced after we joined
        tracks = (await client.recv_type("tracks", timeout=10))["tracks"]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    received: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    pc.on("track", received.put_nowait)
    try:
        video_sid = next(t["sid"] for t in tracks if t["kind"] == "video" and t["participant"] == "host")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        mid = pc.getTransceivers()[0].mid
        await client.send(
            {"type": "offer", "to": "$subscribe", "sdp": pc.localDescription.sdp, "subscriptions": {mid: video_sid}}
        )
        answer = await client.recv_type("answer", timeout=10)
        assert "a=sendonly" in answer["sdp"] and f"msid:host {video_sid}" in answer["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        video = await asyncio.wait_for(received.get(), 10)
        # The host page asks for 640x360 and publishes simulcast (h 320, f 640 wide): its `f` layer may start a
        # moment after the first frames here, which then come from `h`; the server moves us up at f's keyframe
        widths = [(await asyncio.wait_for(video.recv(), 15)).width for _ in range(5)]
        while widths[-1] != 640 and len(widths) < 150:
            widths.append((await asyncio.wait_for(video.recv(), 15)).width)
        assert widths[-1] == 640 and widths == sorted(widths), widths  # up to the full layer, never back down
        meter, source = FreezeMeter(), await host.evaluate(OUTBOUND)
        loop = asyncio.get_running_loop()
        end = loop.time() + WINDOW
        while loop.time() < end:  # the measurement window: every frame aiortc decodes
            await asyncio.wait_for(video.recv(), 5)
            meter.frame(loop.time())
        after = await host.evaluate(OUTBOUND)
        source_fps = (after["frames"] - source["frames"]) / (after["t"] - source["t"])
        stats = [s for s in (await pc.getStats()).values() if s.type == "inbound-rtp"]
        got = {"fps": meter.frames / WINDOW, "source_fps": source_fps, "freezes": meter.total,
               "lost": sum(s.packetsLost for s in stats)}  # fmt: skip
        print("aiortc-sub", got)
        assert got["fps"] >= 0.9 * source_fps and got["freezes"] < 0.5 and got["lost"] == 0, got
    finally:
        await pc.close()
        await client.close()
