"""The interop matrix with GStreamer's webrtcbin (1.22, libnice, its own DTLS/SRTP) and real Chromium.

GStreamer publishes VP8, H.264 (x264, constrained baseline, packetization-mode 1) and Opus through
Roomcast to a Chromium viewer, and subscribes to Chromium's camera and microphone. Each cell asserts
quality over a measured window, not arrival: decoded frame rate at least 90 % of the source's, frozen
under 0.5 s per 10 s, no packet lost on loopback, audio energy above silence.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_sfu import decoding_tracks
from tests.signaling.wsclient import Client
from tests.support.browser_fixtures import NewPage
from tests.support.gstreamer import GstPeer, gstreamer_available, negotiate
from tests.support.quality import OUTBOUND, WARMUP, WINDOW, measure
from tests.support.server import ServerProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not gstreamer_available(), reason="GStreamer webrtcbin (Debian python3-gst-1.0) is missing"),
]
FREEZES_ADDED = 0.5  # s per WINDOW: what the path through Roomcast may add to the sender's own


def assert_video_quality(got: dict[str, dict[str, float]], peer: GstPeer) -> None:
    """Decoded at >= 90 % of the rate the sender really encoded over the same window, frozen less than
    ``FREEZES_ADDED`` beyond the sender's own stalls (its encoder output, measured with Chromium's freeze
    rule: on an idle machine both are 0, on a starved one the sender's are not Roomcast's), nothing lost."""
    source = peer.encoded(got["window"]["start"], got["window"]["end"])
    got["source"] = source
    print("quality", got)
    assert got["video"]["fps"] >= 0.9 * source["fps"], got
    assert got["video"]["freezes"] - source["freezes"] < FREEZES_ADDED, got
    assert got["video"]["lost"] == 0, got


@pytest.fixture(scope="module")
def gst_server(jlo0: None, artifacts: Path) -> Iterator[ServerProcess]:
    """libnice gathers candidates on jlo0 only, so the server announces 127.0.0.2 (it listens on all)."""
    proc = ServerProcess(artifacts, args=["--public-ip", "127.0.0.2"])
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log(), proc.log()[-5000:]


@pytest.fixture
async def gst(artifacts: Path, request: pytest.FixtureRequest) -> AsyncIterator[list[GstPeer]]:
    peers: list[GstPeer] = []
    yield peers
    for peer in peers:
        await peer.stop()


async def start_peer(peers: list[GstPeer], artifacts: Path, *args: str) -> GstPeer:
    peer = await GstPeer.start(artifacts / f"gst-{uuid.uuid4().hex[:6]}.log", *args)
    peers.append(peer)
    return peer


async def gst_publishes(
    server: ServerProcess, peers: list[GstPeer], artifacts: Path, room: str, *args: str
) -> tuple[Client, dict[str, Any]]:
    peer = await start_peer(peers, artifacts, "publish", *args)
    client, _ = await Client.joined(server.ws_base, room, "gst")
    reply = await negotiate(peer, client, "$publish")
    return client, reply


@pytest.mark.parametrize("video", ["vp8", "h264"])
async def test_chromium_views_what_gstreamer_publishes(
    gst_server: ServerProcess, new_page: NewPage, gst: list[GstPeer], artifacts: Path, video: str
) -> None:
    room = f"gst-{video}-" + uuid.uuid4().hex[:6]
    client, reply = await gst_publishes(gst_server, gst, artifacts, room, "--video", video, "--audio")
    assert reply["type"] == "answer", reply
    viewer = await new_page(f"{gst_server.base}/stream?room={room}&role=viewer&identity=viewer")
    await viewer.wait_for_function("window.streamState && window.streamState.joined")
    await decoding_tracks(viewer, 1, timeout=20)
    got = await measure(viewer)
    assert_video_quality(got, gst[0])
    assert got["audio"]["energy"] > 0.001 and got["audio"]["lost"] == 0, got  # Opus: a 440 Hz sine, not silence
    await client.ws.close()


async def test_h264_offered_before_the_encoder_caps_exist_is_accepted_as_mode_0(
    gst_server: ServerProcess, new_page: NewPage, gst: list[GstPeer], artifacts: Path
) -> None:
    """No fmtp means packetization-mode 0 (RFC 6184 §8.1): accepted on a publisher's m-line, since
    single NAL unit packets are valid mode-1 packets for every subscriber; it was port 0, and being
    the BUNDLE tag, GStreamer never connected."""
    room = "gst-h264-mode0-" + uuid.uuid4().hex[:6]
    client, reply = await gst_publishes(gst_server, gst, artifacts, room, "--video", "h264", "--audio", "--early-offer")
    assert reply["type"] == "answer", reply
    video = reply["sdp"].split("m=video ")[1].split("m=")[0]
    assert not video.startswith("0 ") and "H264/90000" in video and "a=fmtp:96" not in video, reply["sdp"]
    viewer = await new_page(f"{gst_server.base}/stream?room={room}&role=viewer&identity=viewer")
    await viewer.wait_for_function("window.streamState && window.streamState.joined")
    await decoding_tracks(viewer, 1, timeout=20)
    got = await measure(viewer)
    assert_video_quality(got, gst[0])
    await client.ws.close()


async def test_an_m_line_we_reject_does_not_stop_gstreamer_from_connecting(
    gst_server: ServerProcess, new_page: NewPage, gst: list[GstPeer], artifacts: Path
) -> None:
    """An L16 m-line after VP8 is rejected (port 0). webrtcbin refused the whole answer while the rejected
    m-line lacked ICE credentials and a fingerprint; now it connects and the VP8 flows."""
    room = "gst-rejected-" + uuid.uuid4().hex[:6]
    client, reply = await gst_publishes(gst_server, gst, artifacts, room, "--video", "vp8", "--unsupported-last")
    assert reply["type"] == "answer", reply
    assert "m=audio 0 " in reply["sdp"], reply["sdp"]
    viewer = await new_page(f"{gst_server.base}/stream?room={room}&role=viewer&identity=viewer")
    await viewer.wait_for_function("window.streamState && window.streamState.joined")
    await decoding_tracks(viewer, 1, timeout=20)
    got = await measure(viewer, 5.0)
    assert_video_quality(got, gst[0])
    await client.ws.close()


async def tracks_of(
    client: Client, joined: dict[str, Any], identity: str, kinds: set[str], timeout: float = 15.0
) -> dict[str, str]:
    """kind -> track sid of ``identity``'s published tracks, once all of ``kinds`` are announced."""
    deadline = asyncio.get_running_loop().time() + timeout
    tracks = joined["tracks"]
    while True:
        found = {t["kind"]: t["sid"] for t in tracks if t["participant"] == identity}
        if kinds <= found.keys():
            return found
        remaining = max(0.1, deadline - asyncio.get_running_loop().time())
        tracks = (await client.recv_type("tracks", timeout=remaining))["tracks"]


async def gst_subscribes(
    server: ServerProcess, peers: list[GstPeer], artifacts: Path, room: str, publisher: str, *args: str
) -> tuple[Client, GstPeer]:
    """A GStreamer subscriber to ``publisher``'s video and audio, decoding frames."""
    client, joined = await Client.joined(server.ws_base, room, "gst-viewer", can_publish=False)
    sids = await tracks_of(client, joined, publisher, {"video", "audio"})
    peer = await start_peer(peers, artifacts, "subscribe", *args)
    offer = await peer.offer()
    mids = [line.split(":", 1)[1].strip() for line in offer.splitlines() if line.startswith("a=mid:")]
    subscriptions = {mids[0]: sids["video"], mids[1]: sids["audio"]}  # video, then audio (gst_peer.py)
    await client.send({"type": "offer", "to": "$subscribe", "sdp": offer, "subscriptions": subscriptions})
    reply = await client.recv_type("answer", timeout=10)
    await peer.send({"type": "answer", "sdp": reply["sdp"]})
    for _ in range(200):  # poll GStreamer's once-a-second report until frames are decoded
        if peer.stats.get("frames", 0) > 0:
            break
        await asyncio.sleep(0.1)
    assert peer.stats.get("frames", 0) > 0, (peer.errors, peer.stats)
    await asyncio.sleep(WARMUP)  # steady state (see measure); GStreamer reports once a second
    return client, peer


def subscriber_figures(peer: GstPeer, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What a GStreamer subscriber decoded between two of its reports: fps, freezes, loss (from the
    start), the audio's loudest RMS in the window (dBFS)."""
    inbound = [r for r in after["rtp"] if r["type"] == "inbound-rtp"]
    in_window = [r for r in peer.history if before["t"] < r["t"] <= after["t"]]
    return {
        "fps": (after["frames"] - before["frames"]) / (after["t"] - before["t"]),
        "freezes": after["freezes"] - before["freezes"],
        "lost": sum(max(0, r.get("packets-lost", 0)) for r in inbound),
        "audio_peak_db": max(r["level_db_last"] for r in in_window),
        "inbound": inbound,
    }


def assert_subscriber_quality(figures: dict[str, Any]) -> None:
    print("gst-sub", figures)
    assert figures["fps"] >= 0.9 * figures["source_fps"], figures
    assert figures["freezes"] - figures.get("source_freezes", 0.0) < FREEZES_ADDED, figures
    assert figures["inbound"] and figures["lost"] == 0, figures
    assert figures["audio_peak_db"] > -60, figures  # RMS dBFS over the window: not silence (digital silence: -inf)


async def test_gstreamer_subscribes_to_what_chromium_publishes(
    gst_server: ServerProcess, new_page: NewPage, gst: list[GstPeer], artifacts: Path
) -> None:
    room = "gst-sub-" + uuid.uuid4().hex[:6]
    host = await new_page(f"{gst_server.base}/stream?room={room}&role=host&identity=host")
    await host.wait_for_function("window.streamState && window.streamState.joined")
    client, peer = await gst_subscribes(gst_server, gst, artifacts, room, "host")
    source_before, before = await host.evaluate(OUTBOUND), dict(peer.stats)
    await asyncio.sleep(WINDOW)  # the measurement window
    source_after, after = await host.evaluate(OUTBOUND), dict(peer.stats)
    figures = subscriber_figures(peer, before, after)
    encoded = source_after["frames"] - source_before["frames"]
    figures["source_fps"] = encoded / (source_after["t"] - source_before["t"])
    assert_subscriber_quality(figures)
    await client.ws.close()


async def test_gstreamer_subscribes_to_gstreamers_h264(
    gst_server: ServerProcess, gst: list[GstPeer], artifacts: Path
) -> None:
    """Both ends webrtcbin, no browser: 1400-byte H.264 FU-A packets forwarded to a non-browser decoder,
    mapped from the publisher's 42c01e onto the subscriber's 42e01f entry."""
    room = "gst-gst-" + uuid.uuid4().hex[:6]
    publisher, reply = await gst_publishes(gst_server, gst, artifacts, room, "--video", "h264", "--audio")
    assert reply["type"] == "answer", reply
    client, peer = await gst_subscribes(gst_server, gst, artifacts, room, "gst", "--video", "h264")
    before = dict(peer.stats)
    await asyncio.sleep(WINDOW)  # the measurement window
    after = dict(peer.stats)
    figures = subscriber_figures(peer, before, after)
    source = gst[0].encoded(before["t"], after["t"])
    figures["source_fps"], figures["source_freezes"] = source["fps"], source["freezes"]
    assert_subscriber_quality(figures)
    await client.ws.close()
    await publisher.ws.close()
