"""The JSON WebSocket adapter (``WS /rtc``): one :class:`SignalingSession` per socket.

It authenticates the token, turns client messages into room-manager calls and room events into server
messages. Every refusal is a typed ``error`` message; the socket is closed only where it must be
(1008 policy, 1009 too big). Outgoing messages go through a bounded queue so a slow client is dropped
instead of slowing its room.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from roomcast.rooms.manager import RoomManager, client_key
from roomcast.rooms.model import (
    DataEvent,
    Participant,
    ParticipantJoinedEvent,
    ParticipantLeftEvent,
    PermissionsEvent,
    PublishedTrack,
    PublisherLayersEvent,
    Room,
    RoomError,
    RoomEvent,
    SignalEvent,
    SpeakersEvent,
    TracksEvent,
)
from roomcast.rooms.rate import MessageBudget
from roomcast.rooms.resume import ResumeRegistry
from roomcast.rooms.tokens import AccessToken, TokenError, verify
from roomcast.rtc.api import SERVER_TARGETS, MediaBackend, MediaError, OfferContext, TrackSettings
from roomcast.runtime.driver import TimerDriver
from roomcast.signaling import messages as m
from roomcast.signaling.outbox import CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, Outbox
from roomcast.signaling.relay import check_relay

log = logging.getLogger("roomcast.signaling")


@dataclass(frozen=True, slots=True)
class SessionLimits:
    join_timeout: float = 10.0
    messages_per_second: float = 50.0
    burst: float = 100.0
    max_rate_violations: int = 50
    outbox_size: int = 512
    # Offers to server endpoints cost CPU by their m-lines (SDP parse, negotiation, routing): a budget in
    # m-lines per second, with a burst; an offer over budget waits (at most ``offer_max_wait``) instead of
    # being refused, so a legitimate client re-offering during a join storm is only slowed down.
    offer_mlines_per_second: float = 100.0
    offer_burst: float = 400.0
    offer_base_cost: float = 4.0
    offer_max_wait: float = 3.0


def participant_info(p: Participant) -> m.ParticipantInfo:
    return m.ParticipantInfo(
        identity=p.identity,
        name=p.name,
        sid=p.sid,
        joined_at=p.joined_at,
        metadata=p.metadata,
        can_publish=p.grants.can_publish,
    )


def event_message(event: RoomEvent) -> m.Message:
    """Map a protocol-independent room event onto the JSON schema."""
    assert not isinstance(event, SpeakersEvent)  # not part of the JSON protocol (yet): the sink drops them
    if isinstance(event, ParticipantJoinedEvent):
        return m.ParticipantJoined(participant=participant_info(event.participant))
    if isinstance(event, ParticipantLeftEvent):
        return m.ParticipantLeft(identity=event.identity, reason=event.reason)
    if isinstance(event, TracksEvent):
        return tracks_message(list(event.tracks))
    if isinstance(event, PermissionsEvent):
        return m.ParticipantUpdated(participant=participant_info(event.participant))
    if isinstance(event, PublisherLayersEvent):
        return m.PublisherLayers(track_id=event.track_id, active=list(event.active))
    if isinstance(event, DataEvent):
        return m.DataReceived(
            payload=event.payload, sender=event.sender, topic=event.topic, binary=event.binary, ts=event.ts
        )
    if event.kind == "offer":
        return m.RelayedOffer(sdp=event.sdp or "", sender=event.sender)
    if event.kind == "answer":
        return m.RelayedAnswer(sdp=event.sdp or "", sender=event.sender)
    return m.RelayedIceCandidate(
        candidate=event.candidate,
        sdp_mid=event.sdp_mid,
        sdp_mline_index=event.sdp_mline_index,
        sender=event.sender,
    )


def tracks_message(tracks: list[PublishedTrack]) -> m.Tracks:
    return m.Tracks(
        tracks=[
            m.RemoteTrack(
                sid=t.sid, participant=t.participant, kind=t.kind, source=t.source, name=t.name, muted=t.muted
            )
            for t in tracks
        ]
    )


class _Sink:
    """The room's view of this socket."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.identity: str | None = None

    def deliver(self, event: RoomEvent) -> None:
        if isinstance(event, SpeakersEvent):
            return
        if isinstance(event, PermissionsEvent) and event.participant.identity == self.identity:
            grants = event.participant.grants
            self.outbox.push(m.encode_text(m.Permissions(can_publish=grants.can_publish, by=event.by)))
            return
        if isinstance(event, TracksEvent):
            self.outbox.push_latest("tracks", m.encode_text(event_message(event)))
            return
        self.outbox.push(m.encode_text(event_message(event)))

    def close(self, code: str, reason: str) -> None:
        self.outbox.push(m.encode_text(m.Error(code=code, message=reason, fatal=True)))
        self.outbox.close(CLOSE_NORMAL, code)


class SignalingSession:
    def __init__(
        self,
        manager: RoomManager,
        keys: Mapping[str, str],
        *,
        clock: Callable[[], float],
        client_host: str = "",
        limits: SessionLimits | None = None,
        on_event: Callable[[str], None] | None = None,
        media: MediaBackend | None = None,
        ice_servers: Callable[[str], list[m.IceServer]] | None = None,
        resume: ResumeRegistry | None = None,
        resume_timer: TimerDriver | None = None,
    ) -> None:
        self.resume = resume
        self.resume_timer = resume_timer  # drives the registry's expiry (required with ``resume``)
        self.resume_token = secrets.token_urlsafe(18)
        self._left = False
        self._leave_reason = "disconnected"
        self._disconnect_code = 1006
        self.media = media
        self.ice_servers = ice_servers or (lambda identity: [])
        self.client_host = client_host
        self.manager = manager
        self.keys = keys
        self.clock = clock
        self.limits = limits or SessionLimits()
        self.outbox = Outbox(self.limits.outbox_size)
        self._join_deadline = 0.0
        self.sink = _Sink(self.outbox)
        self.token: AccessToken | None = None
        self.room: Room | None = None
        self.participant: Participant | None = None
        self._budget = MessageBudget(
            self.limits.messages_per_second, self.limits.burst, self.limits.max_rate_violations
        )
        self._count = on_event or (lambda _name: None)
        self._offer_budget = self.limits.offer_burst
        self._offer_refill = 0.0
        self._waiting_offers: dict[str, asyncio.TimerHandle] = {}  # target -> an offer over budget, waiting

    # ------------------------------------------------------------------ lifecycle (driven by signaling/ws.py)

    def open(self, raw_token: str) -> bool:
        """Authenticate the socket's token; False (and a fatal error queued) if it is refused."""
        try:
            self.token = verify(raw_token, self.keys, now=self.clock())
        except TokenError as exc:
            self._count("token_refused")
            self._fatal(exc.code, exc.message, CLOSE_POLICY)
            return False
        self._join_deadline = self.clock() + self.limits.join_timeout
        return True

    def deadline(self) -> float:
        """When the session must hear from the client: the join timeout before the join, the token's expiry
        after it (a session ends with its token)."""
        assert self.token is not None
        return self._join_deadline if self.participant is None else self.token.expires_at

    def handle_deadline(self) -> None:
        if self.participant is None:
            self._fatal("join_timeout", "no join message within the handshake timeout", CLOSE_POLICY)
        else:
            self._count("token_expired")
            self._fatal("token_expired", "access token expired; reconnect with a new token", CLOSE_POLICY)

    def disconnected(self, code: int) -> None:
        """The client's side closed (``code`` from its close frame, 1006 without one)."""
        self._disconnect_code = code

    def handle_binary(self) -> None:
        self._error("invalid_message", "binary frames are not part of the protocol")

    def finish(self) -> None:
        """The socket is done: park the participant for a resume, or leave; nothing more will be sent."""
        for waiting in self._waiting_offers.values():
            waiting.cancel()
        self._waiting_offers.clear()
        if not self._park():
            self._leave(self._leave_reason)
        self.outbox.close(CLOSE_NORMAL, "bye")

    # ------------------------------------------------------------------ messages

    def handle_text(self, text: str) -> None:
        if not self._take_token():
            return
        try:
            message = m.decode_client(text)
        except m.SchemaError as exc:
            self._count("schema_error")
            if exc.code == "message_too_large":
                self._fatal(exc.code, exc.message, CLOSE_TOO_BIG)
            elif exc.code == "too_deep":
                self._fatal(exc.code, exc.message, CLOSE_POLICY)
            else:
                self._error(exc.code, exc.message)
            return
        try:
            self._dispatch(message)
        except RoomError as exc:
            self._count("room_error")
            self._error(exc.code, exc.message)

    def _dispatch(self, message: m.ClientMessage) -> None:
        now = self.clock()
        if isinstance(message, m.Ping):
            self._send(m.Pong(ts=message.ts, server_ts=now))
            return
        token = self.token
        assert token is not None
        if now > token.expires_at:
            self._fatal("token_expired", "access token expired; reconnect with a new token", CLOSE_POLICY)
            return
        if isinstance(message, m.Join):
            self._join(token, message, now)
            return
        room, participant = self.room, self.participant
        if room is None or participant is None:
            raise RoomError("not_joined", "send 'join' first")
        if not self.manager.is_current(room, participant):
            self._fatal("not_in_room", "no longer a participant of this room", CLOSE_POLICY)
            return
        if isinstance(message, m.Leave):
            self._leave("left")
            self.outbox.close(CLOSE_NORMAL, "left")
        elif isinstance(message, m.Offer) and message.to in SERVER_TARGETS:
            self._media_offer(room, participant, message)
        elif isinstance(message, m.Moderate):
            self._moderate(room, participant, message)
        elif isinstance(message, m.Mute):
            if self.media is None or not self.media.set_muted(
                room.name, participant.sid, message.track_sid, message.muted
            ):
                raise RoomError("unknown_track", f"you have no published track {message.track_sid[:64]!r}")
        elif isinstance(message, m.TrackSettings):
            settings = TrackSettings(message.track_sid, message.quality, message.width, message.height, message.enabled)
            if self.media is None or not self.media.set_track_settings(room.name, participant.sid, settings):
                raise RoomError("unknown_track", f"you receive no track {message.track_sid[:64]!r}")
        elif isinstance(message, m.IceCandidate) and message.to in SERVER_TARGETS:
            return  # the server is ICE-lite: its answer carries its candidates, it needs none of ours
        elif isinstance(message, m.Offer | m.Answer):
            check_relay(room.mode, participant.grants, message.sdp)
            kind: Literal["offer", "answer"] = "offer" if isinstance(message, m.Offer) else "answer"
            signal = SignalEvent(kind, participant.identity, sdp=message.sdp)
            self.manager.relay_signal(room, participant, message.to, signal)
        elif isinstance(message, m.IceCandidate):
            check_relay(room.mode, participant.grants, None)
            signal = SignalEvent(
                "ice_candidate",
                participant.identity,
                candidate=message.candidate,
                sdp_mid=message.sdp_mid,
                sdp_mline_index=message.sdp_mline_index,
            )
            self.manager.relay_signal(room, participant, message.to, signal)
        elif isinstance(message, m.SendData):
            data = DataEvent(participant.identity, message.payload, message.topic, message.binary, now)
            self.manager.send_data(room, participant, message.to, data)  # the room's data rules apply

    def _moderate(self, room: Room, moderator: Participant, message: m.Moderate) -> None:
        """Room-admin actions, all checked on the server (classroom, live stage): never trusted from a client."""
        if not moderator.grants.room_admin:
            raise RoomError("permission_denied", "only a room admin can moderate other participants")
        target = room.participants.get(message.identity)
        if target is None:
            raise RoomError("unknown_participant", f"no participant {message.identity[:128]!r} in this room")
        action = message.action
        if action in ("allow_publish", "deny_publish"):
            self.manager.set_can_publish(room, moderator, target.identity, action == "allow_publish")
            if action == "deny_publish" and self.media is not None:
                self.media.stop_publishing(target.sid)
        elif action in ("mute", "unmute"):
            if self.media is None or self.media.mute_owner(room.name, target.sid, action == "mute") == 0:
                raise RoomError("nothing_to_mute", f"{target.identity!r} publishes no tracks")
        else:
            self.manager.moderate_remove(room, moderator, target.identity, self.clock())
        self._count("moderation")

    def _media_offer(self, room: Room, participant: Participant, offer: m.Offer) -> None:
        """Charge the offer budget (m-lines per second), then negotiate now or once the budget allows."""
        target = offer.to or ""
        if target in self._waiting_offers:
            self._count("offer_rate_limited")
            self._send(m.Error(code="rate_limited", message="an offer to this endpoint is already waiting", ref=target))
            return
        delay = self._charge_offer(offer.sdp)
        if delay is None:
            self._count("offer_rate_limited")
            self._send(
                m.Error(code="rate_limited", message="too many or too large offers; wait and offer again", ref=target)
            )
            return
        if delay <= 0:
            self._negotiate(room, participant, offer)
            return
        self._count("offer_delayed")
        self._waiting_offers[target] = asyncio.get_running_loop().call_later(
            delay, self._negotiate_later, room, participant, offer
        )

    def _charge_offer(self, sdp: str) -> float | None:
        """Take an offer's cost from the budget: seconds to wait before negotiating, or None if over budget
        for longer than ``offer_max_wait`` (then nothing is charged)."""
        limits = self.limits
        now = self.clock()
        rate = limits.offer_mlines_per_second
        self._offer_budget = min(limits.offer_burst, self._offer_budget + (now - self._offer_refill) * rate)
        self._offer_refill = now
        cost = limits.offer_base_cost + sdp.count("\nm=")
        if self._offer_budget - cost < -rate * limits.offer_max_wait:
            return None
        self._offer_budget -= cost
        return -self._offer_budget / rate if self._offer_budget < 0 else 0.0

    def _negotiate_later(self, room: Room, participant: Participant, offer: m.Offer) -> None:
        self._waiting_offers.pop(offer.to or "", None)
        if self.outbox.close_with is not None or not self.manager.is_current(room, participant):
            return
        try:
            self._negotiate(room, participant, offer)
        except RoomError as exc:
            self._count("room_error")
            self._send(m.Error(code=exc.code, message=exc.message, ref=offer.to))

    def _negotiate(self, room: Room, participant: Participant, offer: m.Offer) -> None:
        target = offer.to or ""
        if self.media is None:
            self._send(m.Error(code="media_unavailable", message="this server has no media endpoint", ref=target))
            return
        if target in ("$publish", "$echo") and not participant.grants.can_publish:
            raise RoomError("permission_denied", "token lacks the canPublish grant")
        if target == "$subscribe" and not participant.grants.can_subscribe:
            raise RoomError("permission_denied", "token lacks the canSubscribe grant")
        if target in ("$publish", "$subscribe", "$data") and room.mode != "sfu":
            raise RoomError("wrong_mode", f"room {room.name!r} is peer-to-peer: offer to a participant instead")
        context = OfferContext(
            room=room.name,
            identity=participant.identity,
            tracks={t.track_id: (t.source, t.name) for t in offer.tracks or ()},
            track_sizes={t.track_id: (t.width, t.height) for t in offer.tracks or () if t.width and t.height},
            subscriptions=dict(offer.subscriptions or {}),
            can_publish_data=participant.grants.can_publish_data,
            room_admin=participant.grants.room_admin,
            can_subscribe=participant.grants.can_subscribe,
            data_rules=room.data_rules,
        )
        try:
            answer = self.media.handle_offer(participant.sid, target, offer.sdp, context)
        except MediaError as exc:
            self._count("media_refused")
            self._send(m.Error(code=exc.code, message=exc.message, ref=target))
            return
        self._send(m.RelayedAnswer(sdp=answer, sender=target))

    def _join(self, token: AccessToken, message: m.Join, now: float) -> None:
        if self.participant is not None:
            raise RoomError("already_joined", "this socket already joined a room")
        if message.room is not None and message.room != token.grants.room:
            self._count("join_refused")
            self._fatal(
                "wrong_room",
                f"token is for room {token.grants.room!r}, not {message.room[:128]!r}",
                CLOSE_POLICY,
            )
            return
        parked = self.resume.take(message.resume, token, now) if self.resume and message.resume else None
        if message.resume and parked is None:
            self._count("resume_refused")
            self._fatal("resume_failed", "nothing to resume (window over or wrong token): join again", CLOSE_POLICY)
            return
        try:
            if parked is not None:
                room, participant = parked.room, parked.participant
                participant.sink = self.sink
            else:
                client = client_key(self.client_host) if self.client_host else ""
                room, participant = self.manager.join(token, self.sink, now, client)
        except RoomError as exc:
            self._count("join_refused")
            self._fatal(exc.code, exc.message, CLOSE_POLICY)
            return
        if message.metadata is not None:
            participant.metadata = message.metadata[:4096]
        self.room, self.participant = room, participant
        self.sink.identity = participant.identity
        others = [participant_info(p) for p in room.visible() if p is not participant]
        self._send(
            m.Joined(
                room=room.name,
                sid=room.sid,
                participant=participant_info(participant),
                participants=others,
                ice_servers=self.ice_servers(participant.identity),
                mode=room.mode,
                resume_token=self.resume_token,
                resumed=parked is not None,
            )
        )
        if room.mode == "sfu" and self.media is not None and participant.grants.can_subscribe:
            self._send(tracks_message(self.media.room_tracks(room.name)))
        self._count("joined")
        log.info(
            "%s %s room %s",
            participant.identity,
            "resumed in" if parked is not None else "joined",
            room.name,
            extra={"room": room.name, "participant": participant.identity, "sid": participant.sid},
        )

    def _park(self) -> bool:
        """The socket dropped without a leave (and was not closed by us): keep the participant a while."""
        room, participant = self.room, self.participant
        if self.resume is None or room is None or participant is None or self._left:
            return False
        if self._disconnect_code in (1000, 1001):
            return False  # the client closed on purpose (or the tab went away): that is a leave
        if self.outbox.close_with is not None and self.outbox.close_with[1] not in ("gone",):
            return False  # we closed it (kick, policy, fatal error): no resume
        if not self.manager.is_current(room, participant):
            return False
        media, sid = self.media, participant.sid
        release = (lambda: media.close_owner(sid)) if media is not None else (lambda: None)
        self.resume.park(self.resume_token, room, participant, release, self.clock())
        if self.resume_timer is not None:
            self.resume_timer.poke()
        self._count("parked")
        return True

    def _leave(self, reason: str) -> None:
        self._left = True
        if self.room is not None and self.participant is not None:
            who = {"room": self.room.name, "participant": self.participant.identity, "sid": self.participant.sid}
            log.info("%s left room %s (%s)", who["participant"], who["room"], reason, extra={**who, "reason": reason})
        if self.media is not None and self.participant is not None:
            self.media.close_owner(self.participant.sid)
        if self.room is not None and self.participant is not None:
            self.manager.leave(self.room, self.participant, reason)

    # ------------------------------------------------------------------ shutdown (docs/faults.md F11)

    def notify_shutdown(self, grace: float) -> None:
        """The server drains: say so, and how long this socket may stay; the room keeps running meanwhile."""
        self._send(m.ServerShutdown(reason="draining", grace=grace))

    def close_for_shutdown(self) -> None:
        """The drain is over: a typed fatal error, then a normal close (no resume: this node is going)."""
        self._leave_reason = "server_shutdown"
        self._fatal("server_shutdown", "the server is shutting down; join again on another node", CLOSE_NORMAL)

    # ------------------------------------------------------------------ helpers

    def _take_token(self) -> bool:
        """The message budget (rooms/rate.py): refuse messages above the per-socket rate; close on sustained abuse."""
        verdict = self._budget.take(self.clock())
        if verdict == "ok":
            return True
        self._count("rate_limited")
        if verdict == "close":
            self._fatal("rate_limited", "too many messages; closing", CLOSE_POLICY)
        elif verdict == "tell":
            self._error("rate_limited", f"over {self.limits.messages_per_second:g} messages/s; message dropped")
        return False

    def _send(self, message: m.Message) -> None:
        self.outbox.push(m.encode_text(message))

    def _error(self, code: str, message: str) -> None:
        self._send(m.Error(code=code, message=message))

    def _fatal(self, code: str, message: str, close_code: int) -> None:
        self._send(m.Error(code=code, message=message, fatal=True))
        self.outbox.close(close_code, code)
