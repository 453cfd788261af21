"""JSEP answerer (RFC 8829 §5.3) for browser offers, as an ICE-lite, BUNDLE-only, rtcp-mux-only server.

Every accepted m-line shares one transport (RFC 8843): the ICE credentials, fingerprint and setup of
the offerer-tagged m-line describe the remote end, and our candidates go only in the answerer-tagged
m-line. What we carry per m-line is decided in :mod:`roomcast.proto.codecs`; an m-line with nothing we
can carry is rejected with port 0 (RFC 8829 §5.3.1), and an offer we cannot answer at all raises
:class:`NegotiationError` with a code signaling sends back to the client.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from roomcast.proto.codecs import (
    CodecPolicy,
    NegotiatedCodec,
    codec_attributes,
    extmap_attribute,
    negotiated_codecs,
    select_codecs,
    select_extensions,
)
from roomcast.wire.sdp import Attribute, Codec, MediaDescription, Rid, SessionDescription

Mode = Literal["echo", "publish", "subscribe", "recvonly"]
DirectionPolicy = Callable[[MediaDescription], str]
"""Given an offered m-line, the direction we would like; it is narrowed to what the offer allows."""

# RFC 8842 §5.3 / RFC 4145 §4: the offerer's a=setup → ours. Absent means "active" (RFC 4145 §4).
_DTLS_ROLE = {"actpass": "passive", "active": "passive", "passive": "active"}
_RTP_PROTOS = ("UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP", "RTP/SAVPF", "RTP/SAVP")

# NegotiationError codes (the signaling layer sends them to the client as they are).
NO_MEDIA = "no_media"
MISSING_MID = "missing_mid"
DUPLICATE_MID = "duplicate_mid"
NO_BUNDLE = "no_bundle"
MISSING_ICE_CREDENTIALS = "missing_ice_credentials"
MISSING_FINGERPRINT = "missing_fingerprint"
BAD_SETUP = "bad_setup"
RTCP_MUX_REQUIRED = "rtcp_mux_required"
NO_ACCEPTABLE_MEDIA = "no_acceptable_media"


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
    """Our side of the answer.

    ``mode`` says what we do on each m-line: ``echo`` sends back what it receives, ``publish`` (or
    ``recvonly``) only receives, ``subscribe`` sends ``send_tracks[mid]``; ``direction`` overrides it
    per m-line. ``send_ssrcs`` keeps our SSRCs across renegotiation; ``rng`` makes SSRCs and the
    session id reproducible.
    """

    ice_ufrag: str
    ice_pwd: str
    fingerprint: str  # sha-256, "AB:CD:..."
    candidates: list[tuple[str, int]]
    mode: Mode = "echo"
    tcp_candidates: list[tuple[str, int]] = field(default_factory=list)  # ICE-TCP passive (RFC 6544)
    send_tracks: dict[str, SendTrack] = field(default_factory=dict)
    send_ssrcs: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    data_channels: bool = True
    max_message_size: int = 262144
    rng: random.Random | None = None
    ice_lite: bool = True
    codecs: CodecPolicy = field(default_factory=CodecPolicy)
    direction: DirectionPolicy | None = None
    sctp_port: int = 5000
    cname: str = "roomcast"


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """An accepted audio/video m-line, as both sides will use it."""

    mid: str
    kind: str
    direction: str  # our direction in the answer
    codecs: tuple[Codec, ...]  # accepted media codecs (no RTX), preferred first
    rtx: dict[int, int]  # media payload type -> its RTX payload type (RFC 4588 apt)
    extensions: dict[str, int]  # header extension URI -> id
    remote_ssrcs: tuple[int, ...]  # primary SSRCs the offerer sends
    remote_rtx: dict[int, int]  # primary SSRC -> RTX SSRC (ssrc-group FID)
    rids: tuple[str, ...]  # rids the offerer sends (simulcast, RFC 8853)
    send_ssrc: int | None
    send_rtx_ssrc: int | None
    track_id: str | None
    remote_track_id: str | None = None  # the offerer's a=msid track id (publish metadata is keyed by it)
    # Accepted simulcast streams (RFC 8853 §5.1), lowest resolution first, each its alternative rids
    # ("~" stripped); empty when the m-line is not simulcast. Also SSRCs of a=ssrc-group:SIM, if any.
    layers: tuple[tuple[str, ...], ...] = ()
    simulcast_ssrcs: tuple[int, ...] = ()

    @property
    def clock_rate(self) -> int:
        return self.codecs[0].clock_rate if self.codecs else 90000

    @property
    def negotiated_codecs(self) -> tuple[NegotiatedCodec, ...]:
        return negotiated_codecs(self.codecs, self.rtx)


@dataclass(frozen=True, slots=True)
class NegotiatedAnswer:
    """The answer to send, and what it means for the transport and the media plane."""

    answer: SessionDescription
    media: tuple[NegotiatedMedia, ...]
    remote_ice_ufrag: str
    remote_ice_pwd: str
    remote_fingerprints: tuple[tuple[str, str], ...]
    dtls_role: Literal["server", "client"]
    data_mid: str | None
    max_message_size: int | None  # the offerer's a=max-message-size on the data m-line
    remote_sctp_port: int | None = None
    local_sctp_port: int | None = None
    bundle_mids: tuple[str, ...] = ()

    def by_mid(self, mid: str) -> NegotiatedMedia | None:
        return next((m for m in self.media if m.mid == mid), None)


def create_answer(offer: SessionDescription, params: AnswerParams) -> NegotiatedAnswer:
    """Answer ``offer`` (RFC 8829 §5.3.1); raises :class:`NegotiationError` when nothing can be."""
    rng = params.rng or random.SystemRandom()
    bundle = _bundle(offer)
    tagged = next(m for mid in bundle for m in offer.media if m.mid == mid)
    ufrag = tagged.ice_ufrag or offer.ice_ufrag
    pwd = tagged.ice_pwd or offer.ice_pwd
    if not ufrag or not pwd:
        raise NegotiationError(MISSING_ICE_CREDENTIALS, "the offer has no a=ice-ufrag / a=ice-pwd")
    fingerprints = tagged.fingerprints or offer.fingerprints
    if not fingerprints:
        raise NegotiationError(MISSING_FINGERPRINT, "the offer has no a=fingerprint")
    for m in offer.media:
        if m.mid in bundle and m.setup is not None and m.setup not in _DTLS_ROLE:
            raise NegotiationError(BAD_SETUP, f"a=setup:{m.setup[:20]} is not actpass, active or passive")
    setup = tagged.setup or offer.setup or "active"
    if setup not in _DTLS_ROLE:
        raise NegotiationError(BAD_SETUP, f"a=setup:{setup[:20]} is not actpass, active or passive")
    our_setup = _DTLS_ROLE[setup]
    for m in offer.media:
        if m.mid in bundle and m.kind in ("audio", "video") and not m.rtcp_mux:
            raise NegotiationError(RTCP_MUX_REQUIRED, f"m-line {m.mid!r} lacks a=rtcp-mux (RFC 8843 §9.1)")
    builder = _AnswerBuilder(offer, params, rng, our_setup, bundle)
    return builder.build(ufrag, pwd, fingerprints)


def _bundle(offer: SessionDescription) -> list[str]:
    """The mids we may carry: the offer's BUNDLE group, or its single live m-line (RFC 8843 §7.3)."""
    if not offer.media:
        raise NegotiationError(NO_MEDIA, "the offer has no m-lines")
    mids = [m.mid for m in offer.media]
    if any(mid is None for mid in mids):
        raise NegotiationError(MISSING_MID, "every m-line needs a=mid (unified plan, RFC 8829 §5.2.1)")
    if len(set(mids)) != len(mids):
        raise NegotiationError(DUPLICATE_MID, "two m-lines share one a=mid (RFC 5888 §4)")
    live = [m.mid for m in offer.media if m.mid is not None and (m.port != 0 or m.has("bundle-only"))]
    groups = [g for g in offer.groups if g.semantics == "BUNDLE"]
    if groups:
        bundle = [mid for mid in groups[0].mids if mid in live]
    elif len(live) == 1:
        bundle = live
    else:
        bundle = []
    if not bundle:
        raise NegotiationError(NO_BUNDLE, "no m-line can share one transport (a=group:BUNDLE, RFC 8843)")
    return bundle


class _AnswerBuilder:
    """Builds the answer's m-lines in offer order, collecting what the media plane needs."""

    def __init__(
        self, offer: SessionDescription, params: AnswerParams, rng: random.Random, setup: str, bundle: list[str]
    ) -> None:
        self.offer = offer
        self.params = params
        self.rng = rng
        self.setup = setup
        self.bundle = bundle
        self.used_ssrcs = {s for m in offer.media for s in m.ssrcs()}
        self.used_ssrcs.update(s for pair in params.send_ssrcs.values() for s in pair if s is not None)
        host, port = params.candidates[0] if params.candidates else ("0.0.0.0", 9)
        self.port = port
        self.connection = f"IN {'IP6' if ':' in host else 'IP4'} {host}"
        self.codec_rejected = False
        self.data: MediaDescription | None = None
        self.negotiated: list[NegotiatedMedia] = []

    def build(self, ufrag: str, pwd: str, fingerprints: list[tuple[str, str]]) -> NegotiatedAnswer:
        answered = [self._answer(m) for m in self.offer.media]
        accepted = [mid for mid in self.bundle if any(a.mid == mid and a.port != 0 for a in answered)]
        if not accepted:
            if self.codec_rejected:
                raise NegotiationError(NO_ACCEPTABLE_MEDIA, "no m-line offers a codec this server forwards")
            raise NegotiationError(NO_BUNDLE, "no offered m-line is one this server accepts")
        answered = [self._with_candidates(a) if a.mid == accepted[0] else a for a in answered]
        attrs: list[Attribute] = []
        if self.offer.groups:
            attrs.append(("group", "BUNDLE " + " ".join(accepted)))
        if self.params.ice_lite:
            attrs.append(("ice-lite", None))
        if self.offer.extmap_allow_mixed:
            attrs.append(("extmap-allow-mixed", None))
        attrs.append(("msid-semantic", " WMS *"))
        answer = SessionDescription(
            origin=f"- {self.rng.randint(1, 2**62)} 2 IN IP4 127.0.0.1",
            attributes=tuple(attrs),
            media=tuple(answered),
        )
        data = self.data
        return NegotiatedAnswer(
            answer=answer,
            media=tuple(self.negotiated),
            remote_ice_ufrag=ufrag,
            remote_ice_pwd=pwd,
            remote_fingerprints=tuple(fingerprints),
            dtls_role="server" if self.setup == "passive" else "client",
            data_mid=data.mid if data is not None else None,
            max_message_size=data.max_message_size if data is not None else None,
            remote_sctp_port=data.sctp_port if data is not None else None,
            local_sctp_port=self.params.sctp_port if data is not None else None,
            bundle_mids=tuple(accepted),
        )

    def _transport(self, mid: str) -> list[Attribute]:
        return [
            ("ice-ufrag", self.params.ice_ufrag),
            ("ice-pwd", self.params.ice_pwd),
            ("fingerprint", f"sha-256 {self.params.fingerprint}"),
            ("setup", self.setup),
            ("mid", mid),
        ]

    def _with_candidates(self, m: MediaDescription) -> MediaDescription:
        """Candidates go in the answerer-tagged m-line only (RFC 8843 §7.3.1, RFC 8829 §5.3.1)."""
        lines: list[Attribute] = []
        for i, (host, port) in enumerate(self.params.candidates):
            priority = (126 << 24) | ((65535 - i) << 8) | 255  # RFC 8445 §5.1.2.1, host, component 1
            lines.append(("candidate", f"{i + 1} 1 udp {priority} {host} {port} typ host generation 0"))
        first = len(self.params.candidates) + 1
        for i, (host, port) in enumerate(self.params.tcp_candidates):
            # RFC 6544 §4.2: local preference = 2^13 * direction-pref (4: passive host) + other-pref, below
            # every UDP candidate's 65535, so a client that can use UDP does
            local = (4 << 13) | (8191 - i)
            priority = (126 << 24) | (local << 8) | 255
            value = f"{first + i} 1 tcp {priority} {host} {port} typ host tcptype passive generation 0"
            lines.append(("candidate", value))
        lines.append(("end-of-candidates", None))
        return MediaDescription(m.kind, m.port, m.proto, m.fmts, m.connection, (*m.attributes, *lines))

    def _rejected(self, m: MediaDescription) -> MediaDescription:
        """Port 0, keeping the mid so the m-line can still be matched up (RFC 8829 §5.3.1), with the
        transport attributes of every m-line (ICE credentials, fingerprint, setup), as browsers write
        theirs: GStreamer's webrtcbin refuses an answer in which any m-line lacks them ("No fingerprint
        lines in sdp for media 0", "media 0 is missing ... 'ice-ufrag'") and then never connects."""
        attrs = self._transport(m.mid) if m.mid is not None else []
        attrs.append(("inactive", None))
        return MediaDescription(m.kind, 0, m.proto, m.fmts[:1] or ("0",), "IN IP4 0.0.0.0", tuple(attrs))

    def _answer(self, m: MediaDescription) -> MediaDescription:
        if m.mid not in self.bundle:
            return self._rejected(m)
        if m.kind == "application":
            return self._answer_data(m)
        if m.kind not in ("audio", "video") or m.proto.upper() not in _RTP_PROTOS:
            return self._rejected(m)
        return self._answer_rtp(m)

    def _answer_data(self, m: MediaDescription) -> MediaDescription:
        """SCTP over DTLS (RFC 8841 §4): our sctp-port and the largest message we take."""
        if (
            not self.params.data_channels
            or self.data is not None
            or not m.proto.upper().endswith("DTLS/SCTP")
            or "webrtc-datachannel" not in m.fmts
        ):
            return self._rejected(m)
        self.data = m
        attrs = self._transport(m.mid or "")
        attrs += [("sctp-port", str(self.params.sctp_port)), ("max-message-size", str(self.params.max_message_size))]
        return MediaDescription("application", self.port, m.proto, m.fmts, self.connection, tuple(attrs))

    def _answer_rtp(self, m: MediaDescription) -> MediaDescription:
        params, mid = self.params, m.mid or ""
        direction = self._direction(m)
        codecs, rtx = select_codecs(m, params.codecs, receive_only=direction == "recvonly")
        if not codecs:
            self.codec_rejected = True
            return self._rejected(m)
        sending = direction in ("sendrecv", "sendonly")
        receiving = direction in ("sendrecv", "recvonly")
        fixed = params.send_ssrcs.get(mid)
        send_ssrc: int | None = None
        send_rtx: int | None = None
        if sending:
            send_ssrc = fixed[0] if fixed else self._fresh_ssrc()
            if rtx:
                send_rtx = fixed[1] if fixed and fixed[1] else self._fresh_ssrc()
        extensions = select_extensions(m, params.codecs)
        track = params.send_tracks.get(mid) or SendTrack("roomcast-echo", f"echo-{mid}")
        attrs = self._transport(mid)
        attrs += [extmap_attribute(ext) for ext in extensions]
        attrs.append((direction, None))
        if sending:
            attrs.append(("msid", f"{track.stream_id} {track.track_id}"))
        attrs.append(("rtcp-mux", None))
        if m.rtcp_rsize:
            attrs.append(("rtcp-rsize", None))
        fmts: list[str] = []
        for codec in codecs:
            rtx_codec = rtx.get(codec.payload_type)
            fmts.append(str(codec.payload_type))
            if rtx_codec is not None:
                fmts.append(str(rtx_codec.payload_type))
            attrs += codec_attributes(codec, rtx_codec, params.codecs)
        send_rids = [rid for rid in m.rids() if rid.direction == "send"]
        layers: tuple[tuple[str, ...], ...] = ()
        if receiving and send_rids and m.simulcast is not None and m.simulcast.send:
            # RFC 8853 §5.3: accept the offered layers by mirroring them as recv.
            attrs += [("rid", f"{rid.id} recv") for rid in send_rids]
            streams = ";".join(",".join(alts) for alts in m.simulcast.send)
            attrs.append(("simulcast", f"recv {streams}"))
            layers = _layer_order(m.simulcast.send, send_rids)
        if send_ssrc is not None:
            if send_rtx is not None:
                attrs.append(("ssrc-group", f"FID {send_ssrc} {send_rtx}"))
            for ssrc in (send_ssrc, send_rtx):
                if ssrc is not None:
                    attrs.append(("ssrc", f"{ssrc} cname:{params.cname}"))
                    attrs.append(("ssrc", f"{ssrc} msid:{track.stream_id} {track.track_id}"))
        remote_ssrcs, remote_rtx = _remote_ssrcs(m)
        self.negotiated.append(
            NegotiatedMedia(
                mid=mid,
                kind=m.kind,
                direction=direction,
                codecs=tuple(codecs),
                rtx={pt: c.payload_type for pt, c in rtx.items()},
                extensions={ext.uri: ext.id for ext in extensions},
                remote_ssrcs=remote_ssrcs,
                remote_rtx=remote_rtx,
                rids=tuple(rid.id for rid in send_rids),
                send_ssrc=send_ssrc,
                send_rtx_ssrc=send_rtx,
                track_id=track.track_id if sending else None,
                remote_track_id=_msid_track(m),
                layers=layers,
                simulcast_ssrcs=_sim_ssrcs(m) if receiving else (),
            )
        )
        proto = "UDP/TLS/RTP/SAVPF"
        return MediaDescription(m.kind, self.port, proto, tuple(fmts), self.connection, tuple(attrs))

    def _direction(self, m: MediaDescription) -> str:
        """Ours, within what the offer allows (RFC 8829 §5.3.1, RFC 3264 §6.1)."""
        remote_sends = m.direction in ("sendrecv", "sendonly")
        remote_receives = m.direction in ("sendrecv", "recvonly")
        mode = self.params.mode
        if self.params.direction is not None:
            wanted = self.params.direction(m)
            send, recv = wanted in ("sendrecv", "sendonly"), wanted in ("sendrecv", "recvonly")
        elif mode == "echo":
            send, recv = remote_sends, True
        elif mode == "subscribe":
            send, recv = (m.mid or "") in self.params.send_tracks, False
        else:  # publish, recvonly
            send, recv = False, True
        send, recv = send and remote_receives, recv and remote_sends
        return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}.get(
            (send, recv), "inactive"
        )

    def _fresh_ssrc(self) -> int:
        while True:
            ssrc = self.rng.randint(1, 0xFFFFFFFF)
            if ssrc not in self.used_ssrcs:
                self.used_ssrcs.add(ssrc)
                return ssrc


def _remote_ssrcs(m: MediaDescription) -> tuple[tuple[int, ...], dict[int, int]]:
    """Primary SSRCs and primary → RTX pairs from ``a=ssrc-group:FID`` (RFC 5576 §4.2, RFC 4588 §8)."""
    rtx: dict[int, int] = {}
    for group in m.ssrc_groups():
        if group.semantics == "FID" and len(group.ssrcs) == 2:
            rtx[group.ssrcs[0]] = group.ssrcs[1]
    secondaries = set(rtx.values())
    return tuple(s for s in m.ssrcs() if s not in secondaries), rtx


def _layer_order(streams: tuple[tuple[str, ...], ...], rids: list[Rid]) -> tuple[tuple[str, ...], ...]:
    """Simulcast streams lowest resolution first. The a=simulcast order is a preference, not a size
    (RFC 8853 §5.1), so: rids named q/h/f (LiveKit's and our SDK's quarter/half/full) by name, else by
    ``max-width`` when every rid gives one (RFC 8851 §4), else as offered (Chrome lists its
    ``sendEncodings`` in order, lowest first by convention, as mediasoup also assumes)."""
    layers = [tuple(rid.lstrip("~") for rid in alts) for alts in streams]
    names = {alts[0] for alts in layers}
    rank = {"q": 0, "h": 1, "f": 2}
    if names and names <= rank.keys():
        return tuple(sorted(layers, key=lambda alts: rank[alts[0]]))
    widths = {rid.id: dict(rid.params).get("max-width", "") for rid in rids}
    if all(widths.get(alts[0], "").isdigit() for alts in layers):
        return tuple(sorted(layers, key=lambda alts: int(widths[alts[0]][:9])))
    return tuple(layers)


def _sim_ssrcs(m: MediaDescription) -> tuple[int, ...]:
    """``a=ssrc-group:SIM`` (the pre-rid way to signal simulcast), lowest resolution first."""
    return next((g.ssrcs for g in m.ssrc_groups() if g.semantics == "SIM" and len(g.ssrcs) > 1), ())


def _msid_track(m: MediaDescription) -> str | None:
    """The offerer's track id: ``a=msid`` (RFC 8830 §2), else the legacy ``a=ssrc … msid:``."""
    if m.msid:
        parts = m.msid.split()
        return parts[1] if len(parts) > 1 else None
    for attrs in m.ssrcs().values():
        parts = attrs.get("msid", "").split()
        if len(parts) > 1:
            return parts[1]
    return None
