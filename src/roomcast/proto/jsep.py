"""JSEP answerer (RFC 8829 §5.3) for browser offers, as an ICE-lite, BUNDLE-only, rtcp-mux-only server.

We forward media without decoding, so we accept the offerer's codecs that every receiver can be
expected to decode (Opus, PCMU, PCMA; VP8, VP9, H.264 with their fmtp and RTX), keep the offerer's
payload types and header extension ids (so forwarded packets need no rewriting of either), and reject
m-lines with nothing we can carry.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from roomcast.wire.sdp import Attribute, Codec, MediaDescription, SessionDescription

Mode = Literal["echo", "publish", "subscribe"]

AUDIO_CODECS = frozenset({"opus", "pcmu", "pcma"})
VIDEO_CODECS = frozenset({"vp8", "vp9", "h264"})
RTCP_FEEDBACK = frozenset({"nack", "nack pli", "ccm fir", "goog-remb"})
HEADER_EXTENSIONS = frozenset(
    {
        "urn:ietf:params:rtp-hdrext:sdes:mid",
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "urn:3gpp:video-orientation",
    }
)
_DTLS_ROLE = {"actpass": "passive", "active": "passive", "passive": "active"}


class NegotiationError(ValueError):
    """An offer we cannot answer; ``code`` is sent to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SendTrack:
    """A track we send on an m-line (subscribe mode): it becomes the answer's msid."""

    stream_id: str
    track_id: str


@dataclass(frozen=True, slots=True)
class AnswerParams:
    ice_ufrag: str
    ice_pwd: str
    fingerprint: str
    candidates: list[tuple[str, int]]
    mode: Mode = "echo"
    send_tracks: dict[str, SendTrack] = field(default_factory=dict)
    send_ssrcs: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # keep SSRCs across renegotiation
    data_channels: bool = True
    max_message_size: int = 262144
    rng: random.Random | None = None


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    mid: str
    kind: str
    direction: str  # our direction in the answer
    codecs: tuple[Codec, ...]  # accepted media codecs (no RTX), preferred first
    rtx: dict[int, int]  # media payload type -> its RTX payload type (RFC 4588 apt)
    extensions: dict[str, int]  # header extension URI -> id
    remote_ssrcs: tuple[int, ...]  # primary SSRCs the offerer sends
    remote_rtx: dict[int, int]  # primary SSRC -> RTX SSRC (ssrc-group FID)
    rids: tuple[str, ...]
    send_ssrc: int | None
    send_rtx_ssrc: int | None
    track_id: str | None
    remote_track_id: str | None = None  # the offerer's a=msid track id (publish metadata is keyed by it)

    @property
    def clock_rate(self) -> int:
        return self.codecs[0].clock_rate if self.codecs else 90000


@dataclass(frozen=True, slots=True)
class NegotiatedAnswer:
    answer: SessionDescription
    media: tuple[NegotiatedMedia, ...]
    remote_ice_ufrag: str
    remote_ice_pwd: str
    remote_fingerprints: tuple[tuple[str, str], ...]
    dtls_role: Literal["server", "client"]
    data_mid: str | None
    max_message_size: int | None

    def by_mid(self, mid: str) -> NegotiatedMedia | None:
        return next((m for m in self.media if m.mid == mid), None)


def _accepted_codecs(m: MediaDescription) -> tuple[list[Codec], dict[int, int]]:
    allowed = AUDIO_CODECS if m.kind == "audio" else VIDEO_CODECS
    codecs = m.codecs()
    media = [c for c in codecs if c.mime in allowed]
    if m.kind == "video":
        media = [c for c in media if c.mime != "h264" or c.fmtp_params().get("packetization-mode", "0") == "1"]
    kept = {c.payload_type for c in media}
    rtx: dict[int, int] = {}
    for c in codecs:
        if c.mime == "rtx":
            apt = c.fmtp_params().get("apt", "")
            if apt.isdigit() and int(apt) in kept:
                rtx[int(apt)] = c.payload_type
    return media, rtx


def _remote_ssrcs(m: MediaDescription) -> tuple[tuple[int, ...], dict[int, int]]:
    ssrcs = list(m.ssrcs())
    rtx: dict[int, int] = {}
    for semantics, group in m.ssrc_groups():
        if semantics == "FID" and len(group) == 2:
            rtx[group[0]] = group[1]
    secondaries = set(rtx.values())
    return tuple(s for s in ssrcs if s not in secondaries), rtx


def _check_transport(offer: SessionDescription, m: MediaDescription) -> None:
    if not m.rtcp_mux and m.kind != "application":
        raise NegotiationError("rtcp_mux_required", f"m-line {m.mid!r} lacks a=rtcp-mux (RFC 8843 requires it)")
    if not (m.fingerprints or offer.fingerprints):
        raise NegotiationError("missing_fingerprint", "the offer has no a=fingerprint")
    setup = m.setup or offer.value("setup")
    if setup not in _DTLS_ROLE:
        raise NegotiationError("bad_setup", f"a=setup:{str(setup)[:20]} is not actpass, active or passive")


def create_answer(offer: SessionDescription, params: AnswerParams) -> NegotiatedAnswer:
    rng = params.rng or random.SystemRandom()
    if not offer.media:
        raise NegotiationError("no_media", "the offer has no m-lines")
    mids = [m.mid for m in offer.media]
    if any(mid is None for mid in mids):
        raise NegotiationError("missing_mid", "every m-line needs a=mid (unified plan)")
    if len(set(mids)) != len(mids):
        raise NegotiationError("duplicate_mid", "two m-lines share one a=mid")
    first = offer.media[0]
    ufrag = first.ice_ufrag or offer.value("ice-ufrag")
    pwd = first.ice_pwd or offer.value("ice-pwd")
    if not ufrag or not pwd:
        raise NegotiationError("missing_ice_credentials", "the offer has no a=ice-ufrag / a=ice-pwd")
    bundle = offer.bundle_mids()
    fingerprints = first.fingerprints or offer.fingerprints
    setup = first.setup or offer.value("setup")
    cname = "roomcast"
    answered: list[MediaDescription] = []
    negotiated: list[NegotiatedMedia] = []
    data_mid: str | None = None
    candidate_lines: list[Attribute] = [
        ("candidate", f"{i + 1} 1 udp {2130706431 - i} {host} {port} typ host generation 0")
        for i, (host, port) in enumerate(params.candidates)
    ]
    candidate_lines.append(("end-of-candidates", None))
    common: list[Attribute] = [
        ("ice-ufrag", params.ice_ufrag),
        ("ice-pwd", params.ice_pwd),
        ("fingerprint", f"sha-256 {params.fingerprint}"),
        ("setup", _DTLS_ROLE.get(setup or "", "passive")),
    ]
    host = params.candidates[0][0] if params.candidates else "0.0.0.0"
    port = params.candidates[0][1] if params.candidates else 9
    for m in offer.media:
        mid = m.mid or ""
        if bundle and mid not in bundle:
            answered.append(_rejected(m))
            continue
        if m.kind == "application":
            if not params.data_channels or "webrtc-datachannel" not in m.fmts or data_mid is not None:
                answered.append(_rejected(m))
                continue
            _check_transport(offer, m)
            data_mid = mid
            attrs = [*common, ("mid", mid), ("sctp-port", "5000"), ("max-message-size", str(params.max_message_size))]
            answered.append(
                MediaDescription("application", port, m.proto, m.fmts, f"IN IP4 {host}", tuple(attrs + candidate_lines))
            )
            continue
        if m.kind not in ("audio", "video") or m.port == 0:
            answered.append(_rejected(m))
            continue
        _check_transport(offer, m)
        codecs, rtx = _accepted_codecs(m)
        if not codecs:
            answered.append(_rejected(m))
            continue
        direction = _direction(params.mode, m.direction, mid in params.send_tracks)
        sending = direction in ("sendrecv", "sendonly")
        fixed = params.send_ssrcs.get(mid)
        send_ssrc = (fixed[0] if fixed else rng.randint(1, 0xFFFFFFFF)) if sending else None
        send_rtx = (fixed[1] if fixed and fixed[1] else rng.randint(1, 0xFFFFFFFF)) if sending and rtx else None
        extensions = {uri: ident for ident, uri in m.extmaps() if uri in HEADER_EXTENSIONS}
        remote_ssrcs, remote_rtx = _remote_ssrcs(m)
        track = params.send_tracks.get(mid) or SendTrack("roomcast-echo", f"echo-{mid}")
        attrs = [*common, ("mid", mid)]
        attrs += [("extmap", f"{ident} {uri}") for uri, ident in extensions.items()]
        attrs.append((direction, None))
        if sending:
            attrs.append(("msid", f"{track.stream_id} {track.track_id}"))
        attrs.append(("rtcp-mux", None))
        if m.has("rtcp-rsize"):
            attrs.append(("rtcp-rsize", None))
        fmts: list[str] = []
        for codec in codecs:
            fmts.append(str(codec.payload_type))
            attrs += _codec_attrs(codec)
            if codec.payload_type in rtx:
                rtx_pt = rtx[codec.payload_type]
                fmts.append(str(rtx_pt))
                attrs.append(("rtpmap", f"{rtx_pt} rtx/{codec.clock_rate}"))
                attrs.append(("fmtp", f"{rtx_pt} apt={codec.payload_type}"))
        if send_ssrc is not None:
            if send_rtx is not None:
                attrs.append(("ssrc-group", f"FID {send_ssrc} {send_rtx}"))
            for ssrc in (send_ssrc, send_rtx):
                if ssrc is not None:
                    attrs.append(("ssrc", f"{ssrc} cname:{cname}"))
                    attrs.append(("ssrc", f"{ssrc} msid:{track.stream_id} {track.track_id}"))
        answered.append(
            MediaDescription(
                m.kind, port, "UDP/TLS/RTP/SAVPF", tuple(fmts), f"IN IP4 {host}", tuple(attrs + candidate_lines)
            )
        )
        negotiated.append(
            NegotiatedMedia(
                mid=mid,
                kind=m.kind,
                direction=direction,
                codecs=tuple(codecs),
                rtx=rtx,
                extensions=extensions,
                remote_ssrcs=remote_ssrcs,
                remote_rtx=remote_rtx,
                rids=tuple(rid for rid, d in m.rids() if d == "send"),
                send_ssrc=send_ssrc,
                send_rtx_ssrc=send_rtx,
                track_id=track.track_id if sending else None,
                remote_track_id=_msid_track(m),
            )
        )
    accepted = [m.mid for m in answered if m.port != 0 and m.mid is not None]
    if not accepted:
        raise NegotiationError("no_acceptable_media", "no m-line has a codec or transport this server supports")
    session_attrs: list[Attribute] = [("group", "BUNDLE " + " ".join(accepted)), ("ice-lite", None)]
    if offer.value("extmap-allow-mixed") is not None:
        session_attrs.append(("extmap-allow-mixed", None))
    session_attrs.append(("msid-semantic", " WMS *"))
    answer = SessionDescription(
        origin=f"- {rng.randint(1, 2**62)} 2 IN IP4 127.0.0.1",
        attributes=tuple(session_attrs),
        media=tuple(answered),
    )
    return NegotiatedAnswer(
        answer=answer,
        media=tuple(negotiated),
        remote_ice_ufrag=ufrag,
        remote_ice_pwd=pwd,
        remote_fingerprints=tuple(fingerprints),
        dtls_role="server" if _DTLS_ROLE.get(setup or "", "passive") == "passive" else "client",
        data_mid=data_mid,
        max_message_size=_int(offer.media[[m.mid for m in offer.media].index(data_mid)].value("max-message-size"))
        if data_mid is not None
        else None,
    )


def _direction(mode: Mode, offered: str, has_track: bool) -> str:
    """Our direction: echo mirrors, publish only receives, subscribe only sends (RFC 8829 §5.3.1)."""
    remote_sends = offered in ("sendrecv", "sendonly")
    remote_receives = offered in ("sendrecv", "recvonly")
    if mode == "echo":
        we_send = remote_receives and remote_sends
        return {(True, True): "sendrecv", (False, True): "recvonly"}.get((we_send, remote_sends), "inactive")
    if mode == "publish":
        return "recvonly" if remote_sends else "inactive"
    return "sendonly" if remote_receives and has_track else "inactive"


def _codec_attrs(codec: Codec) -> list[Attribute]:
    encoding = f"{codec.name}/{codec.clock_rate}" + (f"/{codec.channels}" if codec.channels else "")
    attrs: list[Attribute] = [("rtpmap", f"{codec.payload_type} {encoding}")]
    attrs += [("rtcp-fb", f"{codec.payload_type} {fb}") for fb in codec.rtcp_fb if fb in RTCP_FEEDBACK]
    if codec.fmtp:
        attrs.append(("fmtp", f"{codec.payload_type} {codec.fmtp}"))
    return attrs


def _rejected(m: MediaDescription) -> MediaDescription:
    attrs: tuple[Attribute, ...] = (("mid", m.mid),) if m.mid is not None else ()
    return MediaDescription(m.kind, 0, m.proto, m.fmts[:1] or ("0",), "IN IP4 0.0.0.0", (*attrs, ("inactive", None)))


def _msid_track(m: MediaDescription) -> str | None:
    msid = m.value("msid")
    if msid:
        parts = msid.split()
        return parts[1] if len(parts) > 1 else None
    for attrs in m.ssrcs().values():
        parts = attrs.get("msid", "").split()
        if len(parts) > 1:
            return parts[1]
    return None


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None
