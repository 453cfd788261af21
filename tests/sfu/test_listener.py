"""The listener (issue 14 items 1 and 7): which producer and layer an incoming RTP packet feeds.

The GStreamer offer below is shaped as webrtcbin (1.22) writes one for a sendonly VP8 + Opus pipeline:
mids ``video0``/``audio1``, no ``a=extmap`` at all (so no MID header extension), no ``a=ssrc`` lines,
one payload type per m-line. RFC 8843 §9.2 lets the answerer demultiplex such packets by payload type
when payload types are unique across the bundle; before this, its video was dropped as unknown_ssrc.
"""

from __future__ import annotations

import random
import struct

from roomcast.proto.jsep import AnswerParams, NegotiatedAnswer, create_answer
from roomcast.sfu.router import Router
from roomcast.wire.rtp import ONE_BYTE_PROFILE, RtpPacket
from roomcast.wire.sdp import SessionDescription
from tests.sfu.simulcast_support import EXT, RecordingTransport, publish_media, subscribe_media

FINGERPRINT = ":".join(["AB"] * 32)

GSTREAMER_OFFER = """v=0
o=- 7218253916441577214 0 IN IP4 0.0.0.0
s=-
t=0 0
a=ice-options:trickle
a=group:BUNDLE video0 audio1
m=video 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 0.0.0.0
a=setup:actpass
a=ice-ufrag:Jx3jMxn0mbp2nYH9oWxXvmSFBpODhJw+
a=ice-pwd:0ryAC5TPP7dBM6iq8FNeMjoG2FCX2pXT
a=rtcp-mux
a=rtcp-rsize
a=sendonly
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=framerate:30
a=mid:video0
a=fingerprint:sha-256 4E:7B:50:12:5A:1F:C4:09:95:C1:1B:12:3B:3C:8E:31:4C:4F:66:05:27:47:4B:34:B9:07:D2:1C:0A:5A:73:1E
m=audio 9 UDP/TLS/RTP/SAVPF 97
c=IN IP4 0.0.0.0
a=setup:actpass
a=ice-ufrag:Jx3jMxn0mbp2nYH9oWxXvmSFBpODhJw+
a=ice-pwd:0ryAC5TPP7dBM6iq8FNeMjoG2FCX2pXT
a=rtcp-mux
a=rtcp-rsize
a=sendonly
a=rtpmap:97 OPUS/48000/2
a=rtcp-fb:97 nack
a=rtcp-fb:97 nack pli
a=fmtp:97 sprop-maxcapturerate=48000;sprop-stereo=0
a=mid:audio1
a=fingerprint:sha-256 4E:7B:50:12:5A:1F:C4:09:95:C1:1B:12:3B:3C:8E:31:4C:4F:66:05:27:47:4B:34:B9:07:D2:1C:0A:5A:73:1E
"""


def answer(offer: str) -> NegotiatedAnswer:
    params = AnswerParams("srvU", "server-password-0123456789", FINGERPRINT, [("127.0.0.1", 40000)], "publish")
    return create_answer(SessionDescription.parse(offer.replace("\n", "\r\n")), params)


def rtp(pt: int, seq: int, ssrc: int, exts: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    profile = ONE_BYTE_PROFILE if exts else None
    return RtpPacket(
        pt, seq, seq * 3000, ssrc, b"\x10\x00" + bytes(40), extension_profile=profile, extensions=exts
    ).serialize()


def publish(negotiated: NegotiatedAnswer) -> tuple[Router, RecordingTransport]:
    router = Router("room")
    transport = RecordingTransport()
    router.attach_publisher(router.participant("gst", "gstreamer"), transport, negotiated, {})  # type: ignore[arg-type]
    return router, transport


def test_gstreamer_style_offer_is_demultiplexed_by_payload_type() -> None:
    negotiated = answer(GSTREAMER_OFFER)
    video, audio = negotiated.media
    assert (video.mid, audio.mid) == ("video0", "audio1")
    assert not video.remote_ssrcs and not video.extensions and not audio.extensions  # nothing else to go by
    router, transport = publish(negotiated)
    viewer = RecordingTransport()
    sid = next(p.sid for p in router.tracks() if p.kind == "video")
    router.attach_subscriber(router.participant("v", "viewer"), viewer, subscribe_media(mid="0"), {"0": sid})  # type: ignore[arg-type]
    video_ssrc, audio_ssrc = random.Random(7).getrandbits(32), random.Random(8).getrandbits(32)
    for seq in range(50):
        transport.on_rtp(rtp(96, seq, video_ssrc))  # type: ignore[operator]
        transport.on_rtp(rtp(97, seq, audio_ssrc))  # type: ignore[operator]
    by_kind = {p.kind: p for p in router.tracks()}
    assert by_kind["video"].packets == 50 and by_kind["video"].ssrc == video_ssrc
    assert by_kind["audio"].packets == 50 and by_kind["audio"].ssrc == audio_ssrc
    assert router.counters["unknown_ssrc"] == 0 and router.counters["ssrc_learned_by_pt"] == 2
    assert len(viewer.rtp) == 50  # and the video reaches a subscriber
    assert {struct.unpack_from("!I", p, 8)[0] for p in viewer.rtp} == {5555}
    # another SSRC on the same payload type: the track has its SSRC, so it is unknown, not learned
    # (it counted as both: tests/security/test_authenticated_media.py saw 1,000 "learned" for 1,000 refused)
    for seq in range(10):
        transport.on_rtp(rtp(96, seq, 0x5EC0))  # type: ignore[operator]
    assert router.counters["unknown_ssrc"] == 10 and router.counters["ssrc_learned_by_pt"] == 2


def test_a_payload_type_shared_by_two_m_lines_is_not_guessed() -> None:
    two_videos = GSTREAMER_OFFER.replace("m=audio 9 UDP/TLS/RTP/SAVPF 97", "m=video 9 UDP/TLS/RTP/SAVPF 96").replace(
        "a=rtpmap:97 OPUS/48000/2", "a=rtpmap:96 VP8/90000"
    )
    router, transport = publish(answer(two_videos))
    assert len(router.tracks()) == 2
    for seq in range(10):
        transport.on_rtp(rtp(96, seq, 1234))  # type: ignore[operator]
    assert all(p.packets == 0 for p in router.tracks())  # which m-line it belongs to cannot be known
    assert router.counters["unknown_ssrc"] == 10


def test_a_stray_ssrc_cannot_take_over_a_learned_stream() -> None:
    router, transport = publish(answer(GSTREAMER_OFFER))
    transport.on_rtp(rtp(96, 1, 1111))  # type: ignore[operator]
    transport.on_rtp(rtp(96, 2, 2222))  # another SSRC with the same payload type: not rebound  # type: ignore[operator]
    video = next(p for p in router.tracks() if p.kind == "video")
    assert video.ssrc == 1111 and video.packets == 1
    assert router.counters["unknown_ssrc"] == 1


def test_mid_and_rid_extensions_bind_layers_and_a_bound_layer_stays_bound() -> None:
    router, transport = publish(publish_media())
    mid, rid = EXT["urn:ietf:params:rtp-hdrext:sdes:mid"], EXT["urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"]
    for ssrc, name in ((11, b"q"), (22, b"h"), (33, b"f"), (44, b"f"), (55, b"x")):
        transport.on_rtp(rtp(96, 1, ssrc, ((mid, b"0"), (rid, name))))  # type: ignore[operator]
    transport.on_rtp(rtp(96, 1, 66, ((mid, b"9"), (rid, b"q"))))  # type: ignore[operator]
    track = router.tracks()[0]
    assert [layer.ssrc for layer in track.layers] == [11, 22, 33]
    assert router.counters["unknown_ssrc"] == 3  # f taken already, no layer x, no m-line 9
    assert router.counters["unknown_rid"] == 1 and router.counters["unknown_mid"] == 1


def test_ssrc_group_sim_binds_layers_in_order_with_their_rtx() -> None:
    offer = GSTREAMER_OFFER.replace(
        "a=mid:video0\n",
        "a=mid:video0\na=rid:q send\na=rid:h send\na=simulcast:send q;h\n"
        "a=ssrc-group:SIM 100 200\na=ssrc-group:FID 100 101\na=ssrc-group:FID 200 201\n"
        "a=ssrc:100 cname:x\na=ssrc:101 cname:x\na=ssrc:200 cname:x\na=ssrc:201 cname:x\n"
        "a=rtpmap:98 rtx/90000\na=fmtp:98 apt=96\n",
    ).replace("m=video 9 UDP/TLS/RTP/SAVPF 96", "m=video 9 UDP/TLS/RTP/SAVPF 96 98")
    negotiated = answer(offer)
    assert negotiated.media[0].layers == (("q",), ("h",)) and negotiated.media[0].simulcast_ssrcs == (100, 200)
    router, transport = publish(negotiated)
    track = next(p for p in router.tracks() if p.kind == "video")
    assert [(layer.ssrc, layer.rtx_ssrc) for layer in track.layers] == [(100, 101), (200, 201)]
    transport.on_rtp(rtp(96, 5, 200))  # type: ignore[operator]
    assert track.layers[1].packets == 1 and router.counters["unknown_ssrc"] == 0


def test_announced_ssrcs_without_sim_are_bound_by_rid_and_bring_their_rtx() -> None:
    """Firefox-style: a=ssrc and FID groups per layer, no SIM group: which SSRC is which layer only the RID
    extension says; once a layer's primary is known, its announced RTX SSRC is bound with it."""
    offer = GSTREAMER_OFFER.replace(
        "a=mid:video0\n",
        "a=mid:video0\na=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\n"
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\n"
        "a=rid:q send\na=rid:h send\na=simulcast:send h;q\n"
        "a=ssrc-group:FID 300 301\na=ssrc-group:FID 400 401\n"
        "a=ssrc:300 cname:x\na=ssrc:301 cname:x\na=ssrc:400 cname:x\na=ssrc:401 cname:x\n"
        "a=rtpmap:98 rtx/90000\na=fmtp:98 apt=96\n",
    ).replace("m=video 9 UDP/TLS/RTP/SAVPF 96", "m=video 9 UDP/TLS/RTP/SAVPF 96 98")
    negotiated = answer(offer)
    assert negotiated.media[0].layers == (("q",), ("h",))  # q/h/f named: ordered by name, not as offered
    router, transport = publish(negotiated)
    track = next(p for p in router.tracks() if p.kind == "video")
    assert [layer.ssrc for layer in track.layers] == [None, None]  # nothing guessed from the a=ssrc order
    transport.on_rtp(rtp(96, 1, 400, ((3, b"video0"), (4, b"q"))))  # type: ignore[operator]
    transport.on_rtp(rtp(96, 1, 300, ((3, b"video0"), (4, b"h"))))  # type: ignore[operator]
    assert [(layer.ssrc, layer.rtx_ssrc) for layer in track.layers] == [(400, 401), (300, 301)]
