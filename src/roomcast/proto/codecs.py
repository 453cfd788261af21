"""What an answer may carry on an RTP m-line: codecs, RTX, RTCP feedback and header extensions.

The SFU forwards packets without decoding them, so a codec is acceptable when every receiver can be
expected to decode it (Opus, PCMU, PCMA; VP8, VP9, H.264 with packetization-mode 1). Payload types,
fmtp and extension ids are the offerer's own (RFC 8829 §5.3.1), so forwarded packets need no rewriting
of either; RTX (RFC 4588) is kept for every accepted codec whose ``apt`` points at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from roomcast.wire.sdp import Attribute, Codec, Extmap, MediaDescription

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
VIDEO_ORIENTATION_URI = "urn:3gpp:video-orientation"

AUDIO_CODECS = frozenset({"opus", "pcmu", "pcma"})
VIDEO_CODECS = frozenset({"vp8", "vp9", "h264"})
RTCP_FEEDBACK = frozenset({"nack", "nack pli", "ccm fir", "goog-remb"})
HEADER_EXTENSIONS = frozenset(
    {MID_URI, RID_URI, REPAIRED_RID_URI, ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, VIDEO_ORIENTATION_URI}
)
H264_DEFAULT_PROFILE_LEVEL_ID = "420010"  # RFC 6184 §8.1: absent means Baseline, level 1.0


@dataclass(frozen=True, slots=True)
class CodecPolicy:
    """Which codecs, feedback and extensions we accept.

    H.264 packetization modes are asymmetric (RFC 6184 §6.2-6.3): a single-NAL-unit (mode 0) stream is
    also a valid non-interleaved (mode 1) stream, never the reverse. An m-line we send on needs an entry
    in ``h264_packetization_modes`` (mode 1: the publisher may send FU-A and STAP-A packets, which a
    mode-0 receiver cannot take). An m-line we only receive (a publisher's) that offers no such entry
    may use ``h264_receive_packetization_modes`` instead, which includes mode 0: what GStreamer offers
    before its encoder's caps exist (no fmtp at all); every mode-1 subscriber decodes what it sends.

    ``transport_cc`` adds transport-wide congestion control (the TWCC extension and ``transport-cc``
    feedback): once negotiated, Chrome drives its sender bitrate from TWCC feedback alone, so only turn
    it on where the server sends that feedback. ``h264_profiles`` lists wanted profile-level-id
    prefixes (``profile_idc`` + ``profile-iop``, e.g. ``"42e0"``); when some offered H.264 entry
    matches, the others are dropped, otherwise all with an allowed packetization-mode stay.
    """

    audio: frozenset[str] = AUDIO_CODECS
    video: frozenset[str] = VIDEO_CODECS
    rtcp_feedback: frozenset[str] = RTCP_FEEDBACK
    header_extensions: frozenset[str] = HEADER_EXTENSIONS
    transport_cc: bool = False
    h264_packetization_modes: frozenset[str] = frozenset({"1"})
    h264_receive_packetization_modes: frozenset[str] = frozenset({"0", "1"})
    h264_profiles: tuple[str, ...] = field(default=())

    def feedback(self) -> frozenset[str]:
        return self.rtcp_feedback | {"transport-cc"} if self.transport_cc else self.rtcp_feedback

    def extensions(self) -> frozenset[str]:
        return self.header_extensions | {TWCC_URI} if self.transport_cc else self.header_extensions


@dataclass(frozen=True, slots=True)
class NegotiatedCodec:
    """One accepted codec as both sides will use it; ``rtx_payload_type`` when RTX was kept."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int | None
    fmtp: str | None
    rtx_payload_type: int | None


def h264_profile(codec: Codec) -> str:
    """``profile_idc`` + ``profile-iop`` of an H.264 fmtp (RFC 6184 §8.1), lower-case hex."""
    return codec.fmtp_params().get("profile-level-id", H264_DEFAULT_PROFILE_LEVEL_ID)[:4].lower()


def h264_packetization_mode(codec: Codec) -> str:
    """RFC 6184 §8.1: absent means 0 (single NAL unit)."""
    return codec.fmtp_params().get("packetization-mode", "0")


def select_codecs(
    m: MediaDescription, policy: CodecPolicy, *, receive_only: bool = False
) -> tuple[list[Codec], dict[int, Codec]]:
    """Accepted media codecs in the offerer's preference order, and media PT → its RTX codec;
    ``receive_only``: our answer only receives on this m-line (see :class:`CodecPolicy` on H.264)."""
    allowed = policy.audio if m.kind == "audio" else policy.video if m.kind == "video" else frozenset()
    offered = m.codecs()
    media = [c for c in offered if c.mime in allowed]
    h264 = [c for c in media if c.mime == "h264" and h264_packetization_mode(c) in policy.h264_packetization_modes]
    if receive_only and not h264:  # only then: a browser's answer keeps its mode-1 entries alone
        modes = policy.h264_receive_packetization_modes
        h264 = [c for c in media if c.mime == "h264" and h264_packetization_mode(c) in modes]
    wanted = tuple(p.lower()[:4] for p in policy.h264_profiles)
    matching = [c for c in h264 if h264_profile(c) in wanted]
    keep_h264 = {c.payload_type for c in (matching or h264)}
    media = [c for c in media if c.mime != "h264" or c.payload_type in keep_h264]
    kept = {c.payload_type for c in media}
    rtx: dict[int, Codec] = {}
    for c in offered:
        apt = c.fmtp_params().get("apt", "")
        if c.mime == "rtx" and apt.isascii() and apt.isdigit() and int(apt) in kept and int(apt) not in rtx:
            rtx[int(apt)] = c
    return media, rtx


def select_extensions(m: MediaDescription, policy: CodecPolicy) -> list[Extmap]:
    """Offered extensions we understand, with the offerer's ids (RFC 8285 §6)."""
    accepted = policy.extensions()
    out: list[Extmap] = []
    seen: set[int] = set()
    for ext in m.header_extensions:
        if ext.uri in accepted and ext.id not in seen and ext.direction != "inactive":
            seen.add(ext.id)
            out.append(ext)
    return out


def extmap_attribute(ext: Extmap) -> Attribute:
    """The answer's ``a=extmap``: a one-way offer gets the mirrored direction (RFC 8285 §6)."""
    mirrored = {"sendonly": "recvonly", "recvonly": "sendonly"}.get(ext.direction or "")
    head = f"{ext.id}/{mirrored}" if mirrored else str(ext.id)
    return ("extmap", f"{head} {ext.uri}")


def codec_attributes(codec: Codec, rtx: Codec | None, policy: CodecPolicy) -> list[Attribute]:
    """rtpmap, supported rtcp-fb and the offerer's fmtp, then the same for its RTX payload type."""
    encoding = f"{codec.name}/{codec.clock_rate}" + (f"/{codec.channels}" if codec.channels else "")
    feedback = policy.feedback()
    attrs: list[Attribute] = [("rtpmap", f"{codec.payload_type} {encoding}")]
    seen: set[str] = set()
    for fb in codec.rtcp_fb:
        if fb in feedback and fb not in seen:
            seen.add(fb)
            attrs.append(("rtcp-fb", f"{codec.payload_type} {fb}"))
    if codec.fmtp:
        attrs.append(("fmtp", f"{codec.payload_type} {codec.fmtp}"))
    if rtx is not None:
        attrs.append(("rtpmap", f"{rtx.payload_type} {rtx.name}/{rtx.clock_rate}"))
        attrs.append(("fmtp", f"{rtx.payload_type} {rtx.fmtp}"))
    return attrs


def negotiated_codecs(codecs: tuple[Codec, ...], rtx: dict[int, int]) -> tuple[NegotiatedCodec, ...]:
    return tuple(
        NegotiatedCodec(c.payload_type, c.name, c.clock_rate, c.channels, c.fmtp, rtx.get(c.payload_type))
        for c in codecs
    )
