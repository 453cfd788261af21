"""One LiveKit client's signal connection: protobuf requests in, responses out, over the room model.

The same rooms/ and rtc/ calls the JSON adapter makes (token verification, joins, leaves, data rules, offers
to the media service, mutes, layer preferences), spoken in LiveKit's protocol. The client has one peer
connection (``$peer``) and offers every negotiation itself; to send it a new track the server asks for a
re-offer (``MediaSectionsRequirement``) and puts the track on a receive-only m-line of the answer, naming it
in ``mid_to_track_id`` and in the msid (``<participant sid>|<track sid>``, what LiveKit clients read).
It never touches the socket (``livekit/ws.py`` does).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from livekit.protocol import models, rtc

from roomcast.livekit import convert
from roomcast.livekit.data import LIVEKIT_FRAMING
from roomcast.livekit.frames import FrameError, decode_request, encode
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
    SpeakersEvent,
    TracksEvent,
)
from roomcast.rooms.rate import MessageBudget
from roomcast.rooms.tokens import AccessToken, TokenError, verify
from roomcast.rtc.api import MediaBackend, MediaError, OfferContext, TrackSettings
from roomcast.rtc.peer import assign_tracks
from roomcast.signaling.outbox import CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, Outbox

log = logging.getLogger("roomcast.livekit")

DATA_LABELS = ("_reliable", "_lossy", "_data_track")  # the channels livekit-client opens on its connection
MAX_TRACKS = 16  # AddTrackRequests one participant may hold
MAX_SDP = 64 * 1024  # as the JSON protocol's cap: an offer costs a parse and a negotiation
_QUALITY = {models.VideoQuality.LOW: "low", models.VideoQuality.MEDIUM: "medium", models.VideoQuality.HIGH: "high"}
_RID_QUALITY = {"q": models.VideoQuality.LOW, "h": models.VideoQuality.MEDIUM, "f": models.VideoQuality.HIGH}
# requests this adapter does not carry out: answered with RequestResponse(UNSUPPORTED_TYPE), counted
_UNSUPPORTED = frozenset(
    {
        "update_layers",
        "subscription_permission",
        "sync_state",
        "simulate",
        "update_metadata",
        "update_audio_track",
        "update_video_track",
        "publish_data_track_request",
        "unpublish_data_track_request",
        "update_data_subscription",
        "store_data_blob_request",
        "get_data_blob_request",
    }
)


@dataclass(slots=True)
class _Announced:
    """A track the client announced with AddTrackRequest; ``cid`` is its msid track id in the offer."""

    cid: str
    info: models.TrackInfo
    shape: convert.TrackShape
    codec: str = "vp8"  # what the client publishes it with (its SubscribedQualityUpdates name it)


@dataclass
class _Sink:
    """The room's view of this connection."""

    session: LiveKitSession

    def deliver(self, event: RoomEvent) -> None:
        self.session.deliver(event)

    def close(self, code: str, reason: str) -> None:
        self.session.end(code, reason)


@dataclass(eq=False)
class LiveKitSession:
    manager: RoomManager
    keys: Mapping[str, str]
    clock: Callable[[], float]
    media: MediaBackend | None = None
    ice_servers: Callable[[str], list[rtc.ICEServer]] = lambda identity: []
    client_host: str = ""
    on_event: Callable[[str], None] = lambda name: None
    outbox: Outbox = field(default_factory=lambda: Outbox(512))
    budget: MessageBudget = field(default_factory=lambda: MessageBudget(50.0, 100.0, 50))
    token: AccessToken | None = None
    room: Room | None = None
    participant: Participant | None = None
    auto_subscribe: bool = True
    announced: dict[str, _Announced] = field(default_factory=dict)  # by cid
    subscriptions: dict[str, str] = field(default_factory=dict)  # mid -> track sid, as last answered
    unsubscribed: set[str] = field(default_factory=set)  # tracks the client turned off (UpdateSubscription)
    last_offer: str = ""
    _reoffer_asked: bool = False
    _sent: dict[str, tuple[object, ...]] = field(default_factory=dict)  # identity -> tracks last announced
    _sids: dict[str, str] = field(default_factory=dict)  # identity -> participant sid, for departures
    _left: bool = False
    _speaking: set[str] = field(default_factory=set)  # identities last announced as speaking

    def _count(self, name: str) -> None:
        self.on_event("livekit_" + name)

    # ------------------------------------------------------------------ lifecycle (driven by livekit/ws.py)

    def authenticate(self, raw_token: str) -> TokenError | None:
        """Check the token before the upgrade: a refused one never gets a socket (HTTP 403, then 401 at validate)."""
        try:
            self.token = verify(raw_token, self.keys, now=self.clock())
        except TokenError as exc:
            self._count("token_refused")
            return exc
        return None

    def start(self, join: rtc.JoinRequest) -> bool:
        """Join the room (LiveKit joins on connect) and send the JoinResponse; False if refused (a Leave is queued)."""
        token = self.token
        assert token is not None
        if join.reconnect:  # a resume: not kept here, so ask for a full reconnect (a new join) at once
            self._count("resume_refused")
            self._send(convert.leave("resume_unsupported", can_reconnect=True))
            self.outbox.close(CLOSE_NORMAL, "resume_unsupported")
            return False
        try:
            room, participant = self.manager.join(token, _Sink(self), self.clock(), client_key(self.client_host))
        except RoomError as exc:
            self._count("join_refused")
            self._send(rtc.SignalResponse(leave=rtc.LeaveRequest(reason=models.DisconnectReason.JOIN_FAILURE)))
            self.outbox.close(CLOSE_POLICY, f"{exc.code}: {exc.message}"[:120])
            return False
        if room.mode != "sfu" or self.media is None:
            self.manager.leave(room, participant, "left")
            self._count("join_refused")
            self._send(rtc.SignalResponse(leave=rtc.LeaveRequest(reason=models.DisconnectReason.JOIN_FAILURE)))
            self.outbox.close(CLOSE_POLICY, "wrong_mode: LiveKit clients join SFU rooms only")
            return False
        self.room, self.participant = room, participant
        if join.metadata:
            participant.metadata = join.metadata[:4096]
        self.auto_subscribe = not join.HasField("connection_settings") or join.connection_settings.auto_subscribe
        tracks = self.media.room_tracks(room.name)
        others = [p for p in room.visible() if p is not participant]
        for other in others:
            self._sids[other.identity] = other.sid
            self._sent[other.identity] = _signature(_of(tracks, other.identity))
        response = rtc.JoinResponse(
            room=convert.room_info(room, len({t.participant for t in tracks})),
            participant=convert.participant_info(participant),
            other_participants=[convert.participant_info(p, _of(tracks, p.identity)) for p in others],
            server_version=convert.COMPATIBLE_VERSION,
            ice_servers=self.ice_servers(participant.identity),
            subscriber_primary=False,
            ping_timeout=convert.PING_TIMEOUT,
            ping_interval=convert.PING_INTERVAL,
            server_info=convert.server_info(),
        )
        self._send(rtc.SignalResponse(join=response))
        self._count("joined")
        self._speakers(room, SpeakersEvent(tuple(self.media.room_speakers(room.name))))  # already speaking
        for add in join.add_track_requests:
            self._add_track(add)
        if join.HasField("publisher_offer") and join.publisher_offer.sdp:
            self._offer(join.publisher_offer)
        return True

    def deadline(self) -> float:
        """A session ends with its token (as JSON sessions do)."""
        return self.token.expires_at if self.token is not None else self.clock()

    def handle_deadline(self) -> None:
        self._count("token_expired")
        self.end("token_expired", "access token expired; reconnect with a new token")

    def finish(self) -> None:
        """The socket is done: leave the room (no resume for LiveKit clients yet)."""
        self._leave("disconnected")
        self.outbox.close(CLOSE_NORMAL, "bye")

    def end(self, code: str, reason: str) -> None:
        """The room closes this participant (kick, duplicate identity, room deleted) or the server does."""
        self._send(convert.leave(code))
        self.outbox.close(CLOSE_NORMAL, code)

    def notify_shutdown(self, grace: float) -> None:
        """The server drains; LiveKit has no notice short of a leave, which comes at the end of the grace."""

    def close_for_shutdown(self) -> None:
        self._leave("server_shutdown")
        self.end("server_shutdown", "the server is shutting down")

    # ------------------------------------------------------------------ requests

    def handle_bytes(self, data: bytes) -> None:
        verdict = self.budget.take(self.clock())
        if verdict != "ok":
            self._count("rate_limited")
            if verdict == "close":
                self._send(convert.leave("rate_limited"))
                self.outbox.close(CLOSE_POLICY, "rate_limited")
            elif verdict == "tell":
                reason = rtc.RequestResponse.Reason.LIMIT_EXCEEDED
                self._refuse("rate_limited", f"over {self.budget.rate:g} messages/s; message dropped", reason)
            return
        try:
            request = decode_request(data)
        except FrameError as exc:
            self._count("bad_frame")
            self._send(convert.leave(exc.code))
            self.outbox.close(CLOSE_TOO_BIG if exc.code == "message_too_large" else CLOSE_POLICY, exc.code)
            return
        kind = request.WhichOneof("message")
        try:
            self._dispatch(request, kind)
        except RoomError as exc:
            self._count("room_error")
            self._refuse(exc.code, exc.message, rtc.RequestResponse.Reason.NOT_ALLOWED)

    def handle_text(self) -> None:
        self._count("bad_frame")
        self._send(convert.leave("invalid_message"))
        self.outbox.close(CLOSE_POLICY, "invalid_message: LiveKit signal frames are binary protobuf")

    def _dispatch(self, request: rtc.SignalRequest, kind: str | None) -> None:
        room, participant, media = self.room, self.participant, self.media
        assert room is not None and participant is not None and media is not None
        if kind == "ping":
            self._send(rtc.SignalResponse(pong=request.ping))
            return
        if kind == "ping_req":
            pong = rtc.Pong(last_ping_timestamp=request.ping_req.timestamp, timestamp=int(self.clock() * 1000))
            self._send(rtc.SignalResponse(pong_resp=pong))
            return
        if not self.manager.is_current(room, participant):
            self.end("not_in_room", "no longer a participant of this room")
            return
        if kind == "offer":
            self._offer(request.offer)
        elif kind == "add_track":
            self._add_track(request.add_track)
        elif kind == "mute":
            self._mute(request.mute.sid, request.mute.muted)
        elif kind == "track_setting":
            self._track_settings(request.track_setting)
        elif kind == "subscription":
            sids = set(request.subscription.track_sids)
            for tracks in request.subscription.participant_tracks:
                sids.update(tracks.track_sids)
            self.unsubscribed = self.unsubscribed - sids if request.subscription.subscribe else self.unsubscribed | sids
            self._check_subscriptions(media.room_tracks(room.name))
        elif kind == "leave":
            self._leave("left")
            self.outbox.close(CLOSE_NORMAL, "left")
        elif kind in ("trickle", "answer"):
            self._count(kind)  # ICE-lite: our answer carries our candidates, we need none of the client's
        elif kind in _UNSUPPORTED:
            self._count("unsupported")
            request_id = getattr(getattr(request, kind), "request_id", 0)  # its promise in the client rejects
            message = f"{kind} is not supported by this server"
            self._refuse("unsupported_request", message, _UNSUPPORTED_TYPE, request_id)
        else:
            self._count("unknown_message")
            self._refuse("unknown_message", "empty or unknown SignalRequest", _UNSUPPORTED_TYPE)

    def _add_track(self, add: rtc.AddTrackRequest) -> None:
        participant = self.participant
        assert participant is not None
        if not participant.grants.can_publish:
            raise RoomError("permission_denied", "token lacks the canPublish grant")
        known = self.announced.get(add.cid)
        if known is None:
            if len(self.announced) >= MAX_TRACKS or not add.cid:
                self._refuse(
                    "too_many_tracks", f"at most {MAX_TRACKS} tracks", rtc.RequestResponse.Reason.LIMIT_EXCEEDED
                )
                return
            kind = "audio" if add.type == models.TrackType.AUDIO else "video"
            source = convert.SOURCE_NAMES.get(add.source, "microphone" if kind == "audio" else "camera")
            shape = convert.TrackShape(add.width, add.height, tuple(add.layers))
            track = PublishedTrack(
                "TR_" + secrets.token_hex(6), participant.identity, kind, source, add.name, add.muted
            )
            codec = next((c.codec.lower() for c in add.simulcast_codecs if c.codec), "vp8")
            known = self.announced[add.cid] = _Announced(add.cid, convert.track_info(track, shape), shape, codec)
        self._send(rtc.SignalResponse(track_published=rtc.TrackPublishedResponse(cid=add.cid, track=known.info)))

    def _offer(self, offer: rtc.SessionDescription) -> None:
        room, participant, media = self.room, self.participant, self.media
        assert room is not None and participant is not None and media is not None
        self._reoffer_asked = False
        if len(offer.sdp) > MAX_SDP:
            self._count("media_refused")
            reason = rtc.RequestResponse.Reason.LIMIT_EXCEEDED
            self._refuse("sdp_too_large", f"offers are at most {MAX_SDP} bytes", reason, offer.id)
            return
        wanted = self._wanted(media.room_tracks(room.name))
        assignment = assign_tracks(offer.sdp, wanted, self.subscriptions)
        grants = participant.grants
        context = OfferContext(
            room=room.name,
            identity=participant.identity,
            tracks={a.cid: (convert.SOURCE_NAMES.get(a.info.source, ""), a.info.name) for a in self.announced.values()},
            track_sizes={a.cid: (a.shape.width, a.shape.height) for a in self.announced.values() if a.shape.height},
            subscriptions=assignment.subscriptions,
            can_publish_data=grants.can_publish_data,
            room_admin=grants.room_admin,
            can_subscribe=grants.can_subscribe,
            data_rules=room.data_rules,
            can_publish=grants.can_publish,
            track_sids={a.cid: a.info.sid for a in self.announced.values()},
            stream_id="{owner}|{track}",
            data_labels=DATA_LABELS,
            data_framing=LIVEKIT_FRAMING,
        )
        try:
            answer = media.handle_offer(participant.sid, "$peer", offer.sdp, context)
        except MediaError as exc:
            self._count("media_refused")
            self._refuse(exc.code, exc.message, rtc.RequestResponse.Reason.INVALID_REQUEST, offer.id)
            return
        self.subscriptions, self.last_offer = dict(assignment.subscriptions), offer.sdp
        reply = rtc.SessionDescription(type="answer", sdp=answer, id=offer.id, mid_to_track_id=self.subscriptions)
        self._send(rtc.SignalResponse(answer=reply))
        for announced in self.announced.values():
            if announced.info.muted:
                media.set_muted(room.name, participant.sid, announced.info.sid, True)
        if set(wanted) != set(self.subscriptions.values()):
            self._ask_reoffer(assignment.missing)

    def _mute(self, sid: str, muted: bool) -> None:
        room, participant, media = self.room, self.participant, self.media
        assert room is not None and participant is not None and media is not None
        announced = next((a for a in self.announced.values() if a.info.sid == sid), None)
        if announced is not None:
            announced.info.muted = muted  # also applied once the track arrives, if it has not yet
        if not media.set_muted(room.name, participant.sid, sid, muted) and announced is None:
            raise RoomError("unknown_track", f"you have no published track {sid[:64]!r}")

    def _track_settings(self, update: rtc.UpdateTrackSettings) -> None:
        """Adaptive stream: a size (when given) or a quality, or off, for each named remote track."""
        room, participant, media = self.room, self.participant, self.media
        assert room is not None and participant is not None and media is not None
        off = update.disabled or update.quality == models.VideoQuality.OFF
        for sid in update.track_sids:
            if update.width and update.height:
                settings = TrackSettings(sid, None, update.width, update.height, not off)
            else:
                settings = TrackSettings(sid, _QUALITY.get(update.quality), enabled=not off)
            media.set_track_settings(room.name, participant.sid, settings)  # an audio track has no layers

    # ------------------------------------------------------------------ room events

    def deliver(self, event: RoomEvent) -> None:
        room, media = self.room, self.media
        if room is None or media is None:
            return
        if isinstance(event, ParticipantJoinedEvent):
            p = event.participant
            self._sids[p.identity] = p.sid
            self._sent[p.identity] = ()
            self._update([convert.participant_info(p)])
        elif isinstance(event, ParticipantLeftEvent):
            sid = self._sids.pop(event.identity, "")
            self._sent.pop(event.identity, None)
            self._update([convert.departed_info(event.identity, sid)])
        elif isinstance(event, TracksEvent):
            self._tracks_changed(list(event.tracks))
        elif isinstance(event, PermissionsEvent):
            p = event.participant
            self._update([convert.participant_info(p, _of(media.room_tracks(room.name), p.identity))])
        elif isinstance(event, PublisherLayersEvent):
            self._publisher_layers(event)
        elif isinstance(event, SpeakersEvent):
            self._speakers(room, event)
        elif isinstance(event, DataEvent):
            self._count("data_not_bridged")

    def _tracks_changed(self, tracks: list[PublishedTrack]) -> None:
        room, participant = self.room, self.participant
        assert room is not None and participant is not None
        changed = []
        for other in room.visible():
            if other is participant:
                continue
            mine = _of(tracks, other.identity)
            signature = _signature(mine)
            if self._sent.get(other.identity) != signature:
                self._sent[other.identity] = signature
                changed.append(convert.participant_info(other, mine))
        if changed:
            self._update(changed)
        for track in _of(tracks, participant.identity):  # muted by the server (moderation, RoomService)
            announced = next((a for a in self.announced.values() if a.info.sid == track.sid), None)
            if announced is not None and announced.info.muted != track.muted:
                announced.info.muted = track.muted
                self._send(rtc.SignalResponse(mute=rtc.MuteTrackRequest(sid=track.sid, muted=track.muted)))
        self._check_subscriptions(tracks)

    def _speakers(self, room: Room, event: SpeakersEvent) -> None:
        """LiveKit's SpeakersChanged is a change: who started speaking (active), who stopped (not)."""
        sids = {p.identity: p.sid for p in room.participants.values()}
        now = {identity: level for identity, level in event.speakers if identity in sids}
        infos = [models.SpeakerInfo(sid=sids[i], level=level, active=True) for i, level in now.items()]
        infos += [models.SpeakerInfo(sid=sids[i], active=False) for i in self._speaking - now.keys() if i in sids]
        self._speaking = set(now)
        if infos:
            self._send(rtc.SignalResponse(speakers_changed=rtc.SpeakersChanged(speakers=infos)))

    def _publisher_layers(self, event: PublisherLayersEvent) -> None:
        """Dynacast: the layers of our track someone receives, as LiveKit's SubscribedQualityUpdate."""
        announced = self.announced.get(event.track_id)
        if announced is None:
            return
        qualities = [
            rtc.SubscribedQuality(quality=quality, enabled=rid in event.active) for rid, quality in _RID_QUALITY.items()
        ]
        update = rtc.SubscribedQualityUpdate(
            track_sid=announced.info.sid,
            subscribed_qualities=qualities,
            subscribed_codecs=[rtc.SubscribedCodec(codec=announced.codec, qualities=qualities)],  # what 2.x reads
        )
        self._send(rtc.SignalResponse(subscribed_quality_update=update))

    # ------------------------------------------------------------------ helpers

    def _wanted(self, tracks: list[PublishedTrack]) -> dict[str, str]:
        """Remote tracks this participant receives: every other participant's (auto subscribe) or none, less
        the ones it unsubscribed; track sid -> kind."""
        participant = self.participant
        assert participant is not None
        if not participant.grants.can_subscribe or not self.auto_subscribe:
            return {}
        return {
            t.sid: t.kind for t in tracks if t.participant != participant.identity and t.sid not in self.unsubscribed
        }

    def _check_subscriptions(self, tracks: list[PublishedTrack]) -> None:
        wanted = self._wanted(tracks)
        if set(wanted) == set(self.subscriptions.values()) or not self.last_offer:
            return
        self._ask_reoffer(assign_tracks(self.last_offer, wanted, self.subscriptions).missing)

    def _ask_reoffer(self, missing: Mapping[str, int]) -> None:
        """The client offers again on MediaSectionsRequirement, adding the receive-only m-lines it names."""
        if self._reoffer_asked and not missing:
            return
        self._reoffer_asked = True
        requirement = rtc.MediaSectionsRequirement(
            num_audios=missing.get("audio", 0), num_videos=missing.get("video", 0)
        )
        self._send(rtc.SignalResponse(media_sections_requirement=requirement))

    def _update(self, infos: list[models.ParticipantInfo]) -> None:
        self._send(rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=infos)))

    def _refuse(self, code: str, message: str, reason: int, request_id: int = 0) -> None:
        """A refused request: LiveKit's RequestResponse, ``message`` starting with our error code."""
        response = rtc.RequestResponse(request_id=request_id, reason=reason, message=f"{code}: {message}"[:512])  # type: ignore[arg-type]
        self._send(rtc.SignalResponse(request_response=response))

    def _send(self, response: rtc.SignalResponse) -> None:
        self.outbox.push(encode(response))

    def _leave(self, reason: str) -> None:
        if self._left:
            return
        self._left = True
        if self.media is not None and self.participant is not None:
            self.media.close_owner(self.participant.sid)
        if self.room is not None and self.participant is not None:
            self.manager.leave(self.room, self.participant, reason)


_UNSUPPORTED_TYPE = rtc.RequestResponse.Reason.UNSUPPORTED_TYPE


def _of(tracks: list[PublishedTrack], identity: str) -> list[PublishedTrack]:
    return [t for t in tracks if t.participant == identity]


def _signature(tracks: list[PublishedTrack]) -> tuple[object, ...]:
    return tuple((t.sid, t.muted, t.name) for t in tracks)
