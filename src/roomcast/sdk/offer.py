"""SDP offers a non-browser client sends (RFC 8829 as the offerer, unified plan, BUNDLE, rtcp-mux)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from roomcast.wire.sdp import Attribute, MediaDescription, SessionDescription

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"


@dataclass(frozen=True, slots=True)
class OfferedTrack:
    kind: str  # "audio" | "video"
    direction: str  # "sendonly" (publish) | "recvonly" (subscribe) | "sendrecv" (echo)
    track_id: str = ""
    ssrc: int = 0
    rtx_ssrc: int = 0
    video_codecs: tuple[str, ...] = ("vp8",)  # offered in this order; a subscriber offers several


# (payload type, rtpmap, fmtp): the PTs are ours as the offerer, the server keeps them (RFC 8829 §5.3.1).
H264_FMTP = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
VIDEO_CODECS: dict[str, tuple[tuple[str, str, str | None], ...]] = {
    "vp8": (("96", "VP8/90000", None), ("97", "rtx/90000", "apt=96")),
    "h264": (("102", "H264/90000", H264_FMTP), ("103", "rtx/90000", "apt=102")),
}
VIDEO = tuple((pt, encoding) for pt, encoding, _ in VIDEO_CODECS["vp8"])
AUDIO = (("111", "opus/48000/2"),)
PAYLOAD_TYPES = {"vp8": 96, "h264": 102, "opus": 111}


def client_offer(
    tracks: list[OfferedTrack], ufrag: str, pwd: str, fingerprint: str, stream_id: str = "roomcast"
) -> str:
    media: list[MediaDescription] = []
    for mid, track in enumerate(tracks):
        if track.kind == "application":  # data channels only (RFC 8841)
            attrs_dc: list[Attribute] = [
                ("ice-ufrag", ufrag),
                ("ice-pwd", pwd),
                ("fingerprint", f"sha-256 {fingerprint}"),
                ("setup", "actpass"),
                ("mid", str(mid)),
                ("sctp-port", "5000"),
                ("max-message-size", "262144"),
            ]
            media.append(
                MediaDescription(
                    "application", 9, "UDP/DTLS/SCTP", ("webrtc-datachannel",), "IN IP4 0.0.0.0", tuple(attrs_dc)
                )
            )
            continue
        codecs: list[tuple[str, str, str | None]] = (
            [c for name in track.video_codecs for c in VIDEO_CODECS[name]]
            if track.kind == "video"
            else [(pt, encoding, None) for pt, encoding in AUDIO]
        )
        attrs: list[Attribute] = [
            ("ice-ufrag", ufrag),
            ("ice-pwd", pwd),
            ("fingerprint", f"sha-256 {fingerprint}"),
            ("setup", "actpass"),
            ("mid", str(mid)),
            ("extmap", f"4 {MID_URI}"),
            (track.direction, None),
            ("rtcp-mux", None),
        ]
        for pt, encoding, fmtp in codecs:
            attrs.append(("rtpmap", f"{pt} {encoding}"))
            if track.kind == "video" and not encoding.startswith("rtx"):
                attrs += [("rtcp-fb", f"{pt} nack"), ("rtcp-fb", f"{pt} nack pli")]
            if fmtp:
                attrs.append(("fmtp", f"{pt} {fmtp}"))
        if track.direction in ("sendonly", "sendrecv"):
            attrs.append(("msid", f"{stream_id} {track.track_id}"))
            if track.rtx_ssrc:
                attrs.append(("ssrc-group", f"FID {track.ssrc} {track.rtx_ssrc}"))
            for ssrc in (track.ssrc, track.rtx_ssrc):
                if ssrc:
                    attrs.append(("ssrc", f"{ssrc} cname:{stream_id}"))
        fmts = tuple(pt for pt, _, _ in codecs)
        media.append(MediaDescription(track.kind, 9, "UDP/TLS/RTP/SAVPF", fmts, "IN IP4 0.0.0.0", tuple(attrs)))
    session = SessionDescription(
        origin=f"- {random.randint(1, 2**62)} 2 IN IP4 127.0.0.1",
        attributes=(("group", "BUNDLE " + " ".join(str(i) for i in range(len(tracks)))), ("msid-semantic", " WMS *")),
        media=tuple(media),
    )
    return session.serialize()
