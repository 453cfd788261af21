"""The media plane as signaling sees it: one UDP endpoint, one DTLS certificate, server endpoints.

Implements :class:`roomcast.rtc.api.MediaBackend`: ``$echo`` (the echo test), and for SFU
rooms ``$publish`` / ``$subscribe``, routed by one :class:`~roomcast.sfu.router.Router` per room.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from roomcast.proto.codecs import CodecPolicy
from roomcast.proto.dtls import DtlsCertificate
from roomcast.proto.jsep import AnswerParams, Mode, NegotiatedAnswer, NegotiationError, SendTrack, create_answer
from roomcast.proto.sctp import SctpAssociation
from roomcast.proto.webrtc import (
    TransportConnected,
    TransportFailed,
    TransportIceRestarted,
    TransportSctp,
    WebRtcTransport,
    new_ice_credentials,
)
from roomcast.rooms.model import PublishedTrack
from roomcast.rtc.api import MediaError, OfferContext, TrackSettings
from roomcast.rtc.dynacast import Dynacast
from roomcast.rtc.peer import peer_direction
from roomcast.rtc.preferences import wanted_layer
from roomcast.rtc.schedule import RoomSchedule
from roomcast.rtc.speakers import Speakers
from roomcast.runtime.tcp import MediaEndpoint, TcpEndpoint, TcpLimits
from roomcast.runtime.udp import UdpEndpoint
from roomcast.sfu.datachannels import CHANNEL_LIMITS, SEND_BUFFER, SEND_CHUNKS, DataRouter
from roomcast.sfu.echo import EchoSession
from roomcast.sfu.router import Router
from roomcast.wire import ParseError
from roomcast.wire.envelope import ENVELOPE, DataFraming
from roomcast.wire.sdp import SessionDescription

log = logging.getLogger("roomcast.media")

MAX_ENDPOINTS_PER_OWNER = 4
_MODES: dict[str, Mode] = {
    "$echo": "echo",
    "$publish": "publish",
    "$subscribe": "subscribe",
    "$data": "publish",
    "$peer": "publish",  # and subscribe, on the same transport (rtc/peer.py)
}
MAX_MESSAGE_SIZE = 262144


def candidate_addresses(bind_host: str, public_ip: str | None) -> list[str]:
    """The IPs put in our ICE candidates: the explicit public IP; else the bind address; else (bound to
    all interfaces) the default route's address and loopback. Browsers do not pair their LAN address
    with a 127.0.0.1 candidate, so a server on localhost must also offer its LAN address."""
    if public_ip:
        return [public_ip]
    if bind_host not in ("0.0.0.0", "", "::"):
        return [bind_host]
    addresses = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: connect() on UDP sends nothing
            addresses.append(str(probe.getsockname()[0]))
        except OSError:
            pass  # no route at all (e.g. a private network namespace): loopback only
    return [*addresses, "127.0.0.1"] if "127.0.0.1" not in addresses else addresses


def _same_dtls(transport: WebRtcTransport, negotiated: NegotiatedAnswer) -> bool:
    """An ICE restart keeps the DTLS association (RFC 8842 §4): only then may the transport carry on."""
    offered = {(a.lower(), v.strip().upper()) for a, v in negotiated.remote_fingerprints}
    return offered == set(transport.dtls.remote_fingerprints)


@dataclass(eq=False)
class _Owned:
    """One transport a participant holds, and what drives it."""

    transport: WebRtcTransport
    room: str
    echo: EchoSession | None = None
    connected: bool = False
    last_offer: tuple[str, OfferContext] | None = None  # an identical re-offer gets the same answer, no work
    last_answer: str = ""
    identity: str = ""

    def fields(self, sid: str, target: str, **more: object) -> dict[str, object]:
        """The fields of a log event about this transport (app/logs.py prints them)."""
        return {"room": self.room, "participant": self.identity, "sid": sid, "target": target, **more}


class Endpoint(Protocol):
    """What the service needs of the socket side (:class:`~roomcast.runtime.udp.UdpEndpoint`, or
    :class:`~roomcast.runtime.tcp.MediaEndpoint`: UDP plus the ICE-TCP listener): connections are registered
    by their ufrags, poked after commands, flushed and removed."""

    @property
    def local_address(self) -> tuple[str, int]: ...

    @property
    def drops(self) -> Counter[str]: ...
    @property
    def datagrams_in(self) -> int: ...
    @property
    def datagrams_out(self) -> int: ...

    def add(self, conn: WebRtcTransport, on_activity: Callable[[], None]) -> None: ...
    def add_ufrag(self, conn: WebRtcTransport, ufrag: str) -> None: ...
    def retire_ufrag(self, conn: WebRtcTransport, ufrag: str, keep: tuple[str, int] | None = None) -> None: ...
    def remove(self, conn: WebRtcTransport) -> None: ...
    def flush(self, conn: WebRtcTransport) -> None: ...
    def poke(self, conn: WebRtcTransport) -> None: ...
    def close(self) -> None: ...


@dataclass
class MediaService:
    endpoint: Endpoint
    certificate: DtlsCertificate
    candidate_ips: list[str]
    clock: Callable[[], float] = time.monotonic
    owners: dict[str, dict[str, _Owned]] = field(default_factory=dict)
    routers: dict[str, Router] = field(default_factory=dict)
    data_routers: dict[str, DataRouter] = field(default_factory=dict)
    wall_clock: Callable[[], float] = time.time
    retired: Counter[str] = field(default_factory=Counter)  # counters of closed connections
    on_tracks_changed: Callable[[str, list[PublishedTrack]], None] = lambda room, tracks: None
    # (owner, target, up): a transport connected (True) or failed (False); adapters without a socket of
    # their own (WHIP/WHEP) learn from it that their participant's media came up or went away
    on_transport: Callable[[str, str, bool], None] = lambda owner, target, up: None
    max_incoming_bitrate: int = 0
    max_publishers: int = 0  # per room; 0 = no limit
    max_tracks_per_participant: int = 8
    consent_timeout: float = 30.0  # RFC 7675 §5.1: a peer silent this long is gone (its tracks end)
    tracks_debounce: float = 0.05
    # The subscriber estimate comes from each subscriber's REMB (Chrome's receive-side estimate on the
    # forwarded abs-send-time) by default. ``transport_cc`` (ROOMCAST_TRANSPORT_CC) negotiates transport-cc on SFU
    # connections: we stamp and subscribers report (GCC estimates), publishers get our feedback. It is off:
    # with it, Chrome's own send estimate decays 20 %/s to its floor (docs/adaptive.md, not understood yet).
    transport_cc: bool = False

    @property
    def _codecs(self) -> CodecPolicy:
        return CodecPolicy(transport_cc=self.transport_cc)

    capture_heights: dict[str, int] = field(default_factory=dict)  # producer sid -> its capture height
    # (room, owner, track id, rids): tell a publisher which simulcast layers to keep encoding (dynacast)
    on_publisher_layers: Callable[[str, str, str, list[str]], None] = lambda room, owner, track, rids: None
    dynacast: Dynacast = field(init=False)
    # (room, [(identity, level 0..1)]): who speaks now, loudest first, announced when it changes
    on_speakers: Callable[[str, list[tuple[str, float]]], None] = lambda room, speakers: None
    speakers: Speakers = field(init=False)

    def __post_init__(self) -> None:
        self.dynacast = Dynacast(lambda room, owner, track, rids: self.on_publisher_layers(room, owner, track, rids))
        self.speakers = Speakers(lambda room, speakers: self.on_speakers(room, speakers))
        self.schedule = RoomSchedule(self._room_work, self.clock)

    _tracks_pending: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    tcp_port: int = 0  # the ICE-TCP port announced in passive candidates (0: none)
    tcp_listen_port: int = 0  # where the listener is bound (the same unless a port forward maps tcp_port)

    @property
    def _tcp_candidates(self) -> list[tuple[str, int]]:
        return [(ip, self.tcp_port) for ip in self.candidate_ips] if self.tcp_port else []

    @property
    def candidate_port(self) -> int:
        return self.endpoint.local_address[1]

    # ------------------------------------------------------------------ MediaBackend

    def handle_offer(self, owner: str, target: str, sdp: str, context: OfferContext) -> str:
        mode = _MODES.get(target)
        if mode is None:
            raise MediaError("unknown_endpoint", f"no server endpoint {target!r}")
        previous = self.owners.get(owner, {}).get(target)
        if previous is not None and not previous.transport.closed and previous.last_offer == (sdp, context):
            return previous.last_answer  # issue 12 H1: re-offering the same SDP costs a comparison, not a parse
        answer = self._handle_offer(owner, target, mode, sdp, context)
        current = self.owners.get(owner, {}).get(target)
        if current is not None:
            current.last_offer, current.last_answer = (sdp, context), answer
        return answer

    def _handle_offer(self, owner: str, target: str, mode: Mode, sdp: str, context: OfferContext) -> str:
        try:
            offer = SessionDescription.parse(sdp)
        except ParseError as exc:
            raise MediaError("invalid_sdp", f"cannot parse the offer: {exc}") from None
        existing = self.owners.get(owner, {}).get(target)
        remote_ufrag = (offer.media[0].ice_ufrag if offer.media else None) or offer.ice_ufrag
        live = existing is not None and not existing.transport.closed
        # same target, changed remote ufrag: an ICE restart (RFC 8839 §4.4.1.1.1) on the same transport
        restart = live and existing is not None and existing.transport.ice.remote_ufrag != remote_ufrag
        reuse = live and not restart
        if reuse:
            assert existing is not None
            ufrag, pwd = existing.transport.local_ufrag, existing.transport.local_pwd
        else:
            ufrag, pwd = new_ice_credentials()
        if target == "$data":
            return self._data_offer(owner, offer, ufrag, pwd, existing if live else None, context)
        router = self.routers.get(context.room) if mode != "echo" else None
        if mode != "echo" and router is None:
            router = self.routers[context.room] = Router(context.room, on_tracks_changed=self._tracks_changed)
            router.publisher_feedback = self.transport_cc
            if self.max_incoming_bitrate:  # the REMB publishers get with each receiver report (sfu/router.py)
                router.publisher_remb = self.max_incoming_bitrate
        if router is not None and mode == "publish":
            self._check_publish_limits(router, owner, offer)
        media = router.participant(owner, context.identity) if router is not None else None
        send_tracks: dict[str, SendTrack] = {}
        peer = target == "$peer"
        if router is not None and (mode == "subscribe" or peer) and context.can_subscribe:
            wanted: set[str] = set()
            for mid, sid in context.subscriptions.items():
                producer = router.producers.get(sid)
                # one consumer per producer: 64 m-lines naming one track get it once, the rest stay inactive
                if producer is not None and producer.owner != owner and sid not in wanted:
                    wanted.add(sid)
                    stream = context.stream_id.format(
                        identity=producer.identity, owner=producer.owner, track=producer.sid
                    )
                    send_tracks[mid] = SendTrack(stream, producer.sid)
        if mode == "subscribe" and context.send_all:
            send_tracks = {
                m.mid: SendTrack("roomcast", f"{m.kind}-{m.mid}")
                for m in offer.media
                if m.kind in ("audio", "video") and m.port and m.mid is not None
            }
        params = AnswerParams(
            ice_ufrag=ufrag,
            ice_pwd=pwd,
            fingerprint=self.certificate.fingerprint[1],
            candidates=[(ip, self.candidate_port) for ip in self.candidate_ips],
            tcp_candidates=self._tcp_candidates,
            mode=mode,
            send_tracks=send_tracks,
            send_ssrcs=dict(media.send_ssrcs) if media is not None else {},
            data_channels=peer,
            max_message_size=MAX_MESSAGE_SIZE,
            direction=peer_direction(send_tracks, context.can_publish) if peer else None,
            # transport-cc on SFU connections: the router answers publishers' packets with feedback and
            # estimates each subscriber's bandwidth from theirs (sfu/congestion.py)
            codecs=self._codecs if mode != "echo" else CodecPolicy(),
        )
        try:
            negotiated = create_answer(offer, params)
        except NegotiationError as exc:
            raise MediaError(exc.code, exc.message) from None
        if restart and existing is not None and not _same_dtls(existing.transport, negotiated):
            live = False  # a new certificate: a new peer connection on this target, not an ICE restart
        if live:
            assert existing is not None
            owned = existing
            if restart:
                self._restart_ice(owned, negotiated, ufrag, pwd)
        else:
            sctp = self._peer_association(context) if peer and negotiated.data_mid is not None else None
            owned = self._new_transport(owner, target, context.room, negotiated, ufrag, pwd, sctp=sctp)
            owned.identity = context.identity
        if mode == "echo":
            owned.echo = EchoSession(owned.transport, negotiated)
        elif router is not None and media is not None:
            for m in negotiated.media:
                if m.send_ssrc is not None:
                    media.send_ssrcs[m.mid] = (m.send_ssrc, m.send_rtx_ssrc)
            if mode == "publish":
                router.attach_publisher(media, owned.transport, negotiated, context.tracks, context.track_sids)
                self._remember_sizes(router, owner, context)
            if mode == "subscribe" or peer:
                router.attach_subscriber(media, owned.transport, negotiated, context.subscriptions)
        if peer and owned.transport.sctp is not None and context.data_framing is not None:
            self._join_data(owner, context, owned.transport, context.data_framing)
        self.endpoint.poke(owned.transport)
        return negotiated.answer.serialize()

    def _data_offer(
        self,
        owner: str,
        offer: SessionDescription,
        ufrag: str,
        pwd: str,
        existing: _Owned | None,
        context: OfferContext,
    ) -> str:
        """``$data``: a connection carrying only the SCTP association for room data (RFC 8831). Without
        canSubscribe it only sends; with neither grant it has nothing to carry and is refused."""
        if not context.can_subscribe and not context.can_publish_data:
            raise MediaError("permission_denied", "token lacks the canSubscribe and canPublishData grants")
        params = AnswerParams(
            ice_ufrag=ufrag,
            ice_pwd=pwd,
            fingerprint=self.certificate.fingerprint[1],
            candidates=[(ip, self.candidate_port) for ip in self.candidate_ips],
            tcp_candidates=self._tcp_candidates,
            mode="publish",
            data_channels=True,
            max_message_size=MAX_MESSAGE_SIZE,
        )
        try:
            negotiated = create_answer(offer, params)
        except NegotiationError as exc:
            raise MediaError(exc.code, exc.message) from None
        if negotiated.data_mid is None:
            raise MediaError("no_data_channel", "the offer has no webrtc-datachannel m-line")
        restart = existing is not None and existing.transport.local_ufrag != ufrag
        if restart and existing is not None and not _same_dtls(existing.transport, negotiated):
            existing = None  # a new certificate: a new peer connection, not an ICE restart
        if existing is None:
            sctp = SctpAssociation(
                "server",
                max_message_size=MAX_MESSAGE_SIZE,
                max_buffered=SEND_BUFFER,
                max_chunks=SEND_CHUNKS,
                channel_limits=CHANNEL_LIMITS,
                max_channels=len(CHANNEL_LIMITS),
            )
            existing = self._new_transport(owner, "$data", context.room, negotiated, ufrag, pwd, sctp=sctp)
            existing.identity = context.identity
        elif restart:
            self._restart_ice(existing, negotiated, ufrag, pwd)
        self._join_data(owner, context, existing.transport, ENVELOPE)
        self.endpoint.poke(existing.transport)
        return negotiated.answer.serialize()

    def _join_data(self, owner: str, context: OfferContext, transport: WebRtcTransport, framing: DataFraming) -> None:
        """``owner``'s data channels on ``transport`` join its room's data router."""
        data = self.data_routers.get(context.room)
        if data is None:
            data = self.data_routers[context.room] = DataRouter(context.room, self.wall_clock)
            data.on_output = self.endpoint.poke
            if context.data_rules is not None:
                data.authorize = context.data_rules
        data.add(
            owner,
            context.identity,
            transport,
            context.can_publish_data,
            context.room_admin,
            context.can_subscribe,
            framing,
        )

    @staticmethod
    def _peer_association(context: OfferContext) -> SctpAssociation:
        """``$peer``'s data channels: the labels its adapter names, one of each."""
        limits = {label: 1 for label in context.data_labels}
        return SctpAssociation(
            "server",
            max_message_size=MAX_MESSAGE_SIZE,
            max_buffered=SEND_BUFFER,
            max_chunks=SEND_CHUNKS,
            channel_limits=limits,
            max_channels=len(limits),
        )

    def _check_publish_limits(self, router: Router, owner: str, offer: SessionDescription) -> None:
        sending = sum(
            1
            for m in offer.media
            if m.kind in ("audio", "video") and m.port and m.direction in ("sendonly", "sendrecv")
        )
        if sending > self.max_tracks_per_participant:
            raise MediaError("too_many_tracks", f"at most {self.max_tracks_per_participant} tracks per participant")
        existing = router.participants.get(owner)
        publishers = {p.owner for p in router.producers.values()}
        if (
            self.max_publishers
            and (existing is None or owner not in publishers)
            and len(publishers) >= self.max_publishers
        ):
            raise MediaError("too_many_publishers", f"room allows at most {self.max_publishers} publishers")

    def _new_transport(
        self,
        owner: str,
        target: str,
        room: str,
        negotiated: NegotiatedAnswer,
        ufrag: str,
        pwd: str,
        sctp: SctpAssociation | None = None,
    ) -> _Owned:
        self.close_endpoint(owner, target)
        endpoints = self.owners.setdefault(owner, {})
        if len(endpoints) >= MAX_ENDPOINTS_PER_OWNER:
            raise MediaError("too_many_transports", "too many media connections for one participant")
        transport = WebRtcTransport(
            self.certificate,
            remote_ufrag=negotiated.remote_ice_ufrag,
            remote_pwd=negotiated.remote_ice_pwd,
            remote_fingerprints=list(negotiated.remote_fingerprints),
            dtls_role=negotiated.dtls_role,
            local_ufrag=ufrag,
            local_pwd=pwd,
            consent_timeout=self.consent_timeout,
            sctp=sctp,
        )
        owned = _Owned(transport, room)
        endpoints[target] = owned
        self.endpoint.add(transport, lambda: self._on_activity(owner, target, owned))
        return owned

    def _restart_ice(self, owned: _Owned, negotiated: NegotiatedAnswer, ufrag: str, pwd: str) -> None:
        """New ICE credentials on the same transport; the endpoint routes both ufrags until it completes."""
        transport = owned.transport
        dropped = transport.restart_ice(ufrag, pwd, negotiated.remote_ice_ufrag, negotiated.remote_ice_pwd)
        self.endpoint.add_ufrag(transport, ufrag)
        if dropped is not None:
            self.endpoint.retire_ufrag(transport, dropped)
        log.info("media %s: ICE restart, local ufrag now %s", owned.room, ufrag, extra={"room": owned.room})

    def room_tracks(self, room: str) -> list[PublishedTrack]:
        router = self.routers.get(room)
        if router is None:
            return []
        return [
            PublishedTrack(p.sid, p.identity, p.kind, p.source, p.name, p.muted, p.track_id) for p in router.tracks()
        ]

    def room_speakers(self, room: str) -> list[tuple[str, float]]:
        return self.speakers.current(room)

    def set_muted(self, room: str, owner: str, track_sid: str, muted: bool) -> bool:
        router = self.routers.get(room)
        return router is not None and router.set_muted(owner, track_sid, muted)

    def set_video_layer(self, room: str, owner: str, track_sid: str, spatial: int, temporal: int | None = None) -> bool:
        """Which simulcast layer ``owner`` receives of ``track_sid`` (0 = lowest; temporal None = every TID);
        False when it does not receive that track as simulcast (see ``Router.set_target_layer``)."""
        router = self.routers.get(room)
        return router is not None and router.pin_layer(owner, track_sid, spatial, temporal)

    def set_track_settings(self, room: str, owner: str, settings: TrackSettings) -> bool:
        """Adaptive stream: forward the layer the subscriber asked for (or nothing while it hides the track)."""
        router = self.routers.get(room)
        media = router.participants.get(owner) if router is not None else None
        if router is None or media is None:
            return False
        found = [(c, p) for c, p in media.consumers.values() if p.sid == settings.track_sid]
        if not found:
            return False
        consumer, producer = found[0]
        if not settings.enabled:
            consumer.pause()
            return True
        if consumer.paused and not producer.muted:
            consumer.resume()
            router.request_keyframe(producer.sid)
        height = self.capture_heights.get(producer.sid)
        router.set_max_layer(owner, producer.sid, wanted_layer(settings, len(producer.layers), height))
        return True

    def mute_owner(self, room: str, owner: str, muted: bool) -> int:
        router = self.routers.get(room)
        return router.mute_owner(owner, muted) if router is not None else 0

    def stop_publishing(self, owner: str) -> None:
        peer = self.owners.get(owner, {}).get("$peer")
        if peer is not None:  # one connection both ways: its tracks end, it keeps subscribing
            router = self.routers.get(peer.room)
            if router is not None:
                router.remove_publisher(owner)
                self._announce_now(peer.room)
            return
        owned = self.owners.get(owner, {}).get("$publish")
        if owned is None:
            return
        router = self.routers.get(owned.room)
        if router is not None:
            router.remove_publisher(owner)
            self._announce_now(owned.room)
        self.close_endpoint(owner, "$publish")

    def close_owner(self, owner: str) -> None:
        rooms = {owned.room for owned in self.owners.get(owner, {}).values()}
        for target in list(self.owners.get(owner, {})):
            self.close_endpoint(owner, target)
        self.owners.pop(owner, None)
        for room in rooms:
            data = self.data_routers.get(room)
            if data is not None:
                data.remove(owner)
                if not data.participants:
                    self.retired.update(data.counters)
                    del self.data_routers[room]
            router = self.routers.get(room)
            if router is not None:
                router.remove_participant(owner)
                self._announce_now(room)
                if not router.participants:
                    self.dynacast.forget_room(room)
                    self.speakers.forget_room(room)
                    self.schedule.forget(room)
                    self.retired.update(router.counters)
                    del self.routers[room]

    def room_stats(self, room: str) -> dict[str, object] | None:
        router = self.routers.get(room)
        data = self.data_routers.get(room)
        if router is None and data is None:
            return None
        empty: dict[str, object] = {"room": room, "tracks": [], "participants": {}, "counters": {}}
        stats: dict[str, object] = router.stats() if router is not None else empty
        stats["data"] = dict(data.counters) if data is not None else {}
        stats["data_buffers"] = data.buffers() if data is not None else {}
        return stats

    # ------------------------------------------------------------------ internals

    def _tracks_changed(self, router: Router) -> None:
        """Tell the room its tracks changed, at most once per ``tracks_debounce`` seconds: a burst of publishes
        (a join storm, or one client looping publish/leave) becomes one full list, not one list per change."""
        room = router.room
        if room in self._tracks_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.on_tracks_changed(room, self.room_tracks(room))
            return
        self._tracks_pending[room] = loop.call_later(self.tracks_debounce, self._announce_tracks, room)

    def _remember_sizes(self, router: Router, owner: str, context: OfferContext) -> None:
        for producer in router.producers.values():
            if producer.owner == owner and producer.track_id in context.track_sizes:
                self.capture_heights[producer.sid] = context.track_sizes[producer.track_id][1]
        live = {sid for r in self.routers.values() for sid in r.producers}  # this router is one of them
        for sid in [sid for sid in self.capture_heights if sid not in live]:
            del self.capture_heights[sid]

    def _announce_tracks(self, room: str) -> None:
        self._tracks_pending.pop(room, None)
        self.on_tracks_changed(room, self.room_tracks(room))

    def _announce_now(self, room: str) -> None:
        """Tracks that ended are announced at once, before the room announces the participant's departure
        (clients end the tracks from the list; the order is the one they have always seen)."""
        pending = self._tracks_pending.pop(room, None)
        if pending is not None:
            pending.cancel()
            self.on_tracks_changed(room, self.room_tracks(room))

    def close_endpoint(self, owner: str, target: str) -> None:
        owned = self.owners.get(owner, {}).pop(target, None)
        if owned is None:
            return
        owned.transport.close()
        self.endpoint.flush(owned.transport)
        self.endpoint.remove(owned.transport)
        self.retired.update(self._counters_of(owned))

    def _on_activity(self, owner: str, target: str, owned: _Owned) -> None:
        transport = owned.transport
        while (event := transport.poll_event()) is not None:
            if isinstance(event, TransportConnected):
                owned.connected = True
                self.on_transport(owner, target, True)
                log.info(
                    "media %s/%s connected from %s (%s)",
                    owner,
                    target,
                    event.remote,
                    event.srtp_profile,
                    extra=owned.fields(owner, target, remote=f"{event.remote[0]}:{event.remote[1]}"),
                )
            elif isinstance(event, TransportIceRestarted):
                self.endpoint.retire_ufrag(transport, event.retired_ufrag, keep=event.remote)
                log.info(
                    "media %s/%s: ICE restart completed on %s",
                    owner,
                    target,
                    event.remote,
                    extra=owned.fields(owner, target, remote=f"{event.remote[0]}:{event.remote[1]}"),
                )
            elif isinstance(event, TransportSctp):
                data = self.data_routers.get(owned.room)
                if data is not None:
                    data.on_event(owner, event.event, self.clock())
            elif isinstance(event, TransportFailed):
                log.info(
                    "media %s/%s failed: %s",
                    owner,
                    target,
                    event.reason,
                    extra=owned.fields(owner, target, reason=event.reason),
                )
                if target in ("$publish", "$subscribe", "$peer"):
                    # close_owner finds the rooms through the owner's endpoints: this one must still be
                    # listed, or its router would keep the dead producers (docs/faults.md F1)
                    self.close_owner(owner)
                else:
                    self.close_endpoint(owner, target)
                self.on_transport(owner, target, False)
                return
        router = self.routers.get(owned.room)
        if router is not None:
            self._room_work(router, self.clock())
            self.schedule.poke(router)

    def _room_work(self, router: Router, now: float) -> None:
        """A room's periodic work: after input, and when its timer fires with no input (rtc/schedule.py)."""
        router.tick(now)
        self.dynacast.tick(router, now)
        self.speakers.tick(router, now)

    @staticmethod
    def _counters_of(owned: _Owned) -> Counter[str]:
        total: Counter[str] = Counter()
        total.update(owned.transport.counters)
        total.update({"ice_" + k: v for k, v in owned.transport.ice.counters.items()})
        if owned.transport.sctp is not None:
            total.update({"sctp_" + k: v for k, v in owned.transport.sctp.counters.items()})
        if owned.echo is not None:
            total.update(owned.echo.counters)
        return total

    def counters(self) -> Counter[str]:
        """Everything counted by live and closed connections, plus the socket's own drops."""
        total = Counter(self.retired)
        for endpoints in self.owners.values():
            for owned in endpoints.values():
                total.update(self._counters_of(owned))
        for data in self.data_routers.values():
            total.update(data.counters)
        for router in self.routers.values():
            total.update(router.counters)
            packets, octets = router.live_forwarded()
            total["forwarded"] += packets
            total["forwarded_bytes"] += octets
        total.update({"socket_" + k: v for k, v in self.endpoint.drops.items()})
        return total

    def transports(self) -> int:
        return sum(len(v) for v in self.owners.values())

    def close(self) -> None:
        for handle in self._tracks_pending.values():
            handle.cancel()
        self._tracks_pending.clear()
        for owner in list(self.owners):
            self.close_owner(owner)
        self.endpoint.close()


async def start_media(
    host: str,
    port: int,
    public_ip: str | None,
    tcp_port: int = 0,
    tcp_limits: TcpLimits | None = None,
    tcp_public_port: int = 0,
) -> MediaService:
    """The UDP socket on ``port`` and, unless ``tcp_port`` is 0, the ICE-TCP listener on it (RFC 6544),
    announced on ``tcp_public_port`` when a port forward maps another one to it (e.g. 443)."""
    udp = await UdpEndpoint.bind(host, port)
    if not tcp_port:
        return MediaService(udp, DtlsCertificate.generate(), candidate_addresses(host, public_ip))
    tcp = TcpEndpoint(udp, tcp_limits)
    try:
        await tcp.listen(host, tcp_port)
    except OSError:
        udp.close()
        raise
    media = MediaService(MediaEndpoint(udp, tcp), DtlsCertificate.generate(), candidate_addresses(host, public_ip))
    media.tcp_port = tcp_public_port or tcp.port
    media.tcp_listen_port = tcp.port
    return media
