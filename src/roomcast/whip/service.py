"""WHIP/WHEP sessions without HTTP: who may create one, the participant it is, and its resource's life.

Every check is the room model's or the media service's own: the token is verified by ``rooms.tokens``, the
join (quotas, revocation, room limits, duplicate identities) is ``RoomManager.join``, the offer goes to
``MediaBackend.handle_offer`` as ``$publish`` (WHIP) or ``$subscribe`` (WHEP). What this module adds is
RFC 9725's resource: an unguessable id, an ETag per ICE session, PATCH for trickle and ICE restart, DELETE,
and the end of the session when its participant ends (kick, room deleted, token expired, ICE never
connected or consent lost). Refusals are :class:`WhipError` with the HTTP status the RFC gives them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from roomcast.errors import CODES
from roomcast.rooms.manager import RoomManager, client_key
from roomcast.rooms.model import Participant, PublishedTrack, Room, RoomError, RoomEvent, TracksEvent
from roomcast.rooms.tokens import AccessToken, TokenError, verify
from roomcast.rtc.api import MediaBackend, MediaError, OfferContext
from roomcast.whip.sdpfrag import SdpFrag, answer_sdpfrag
from roomcast.wire import ParseError
from roomcast.wire.sdp import SessionDescription

log = logging.getLogger("roomcast.whip")
Kind = Literal["whip", "whep"]
# (event name, the session) -> None: metrics and webhooks (whip_session_started, whip_session_ended, ...)
SessionHook = Callable[[str, "WhipResource"], None]

# RFC 9725 leaves most statuses to the server: the registry's (roomcast.errors), and 422 for an offer that
# parses but cannot be answered (no codec or m-line this SFU forwards)
def _status(code: str) -> int:
    return CODES[code][0] if code in CODES else 422


class WhipError(Exception):
    """A refused request: ``status`` per RFC 9725 §4.2/§4.4, ``code`` for the problem body and metrics."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class WhipLimits:
    """Per-client POST budget (token bucket) and how many sessions this node holds; a session whose ICE
    has not connected within ``connect_timeout`` is ended (an ICE-lite server never learns otherwise)."""

    posts_per_second: float = 5.0
    post_burst: float = 10.0
    max_sessions: int = 1000
    connect_timeout: float = 20.0
    max_clients_tracked: int = 10_000


@dataclass(eq=False)
class WhipResource:
    id: str
    kind: Kind
    room: Room
    participant: Participant
    token: AccessToken
    etag: str
    offer: str
    pinned: str | None = None  # WHEP: the publisher asked for in the URL
    source: str | None = None  # WHEP: the publisher served now
    subscriptions: dict[str, str] = field(default_factory=dict)  # WHEP: mid -> track sid
    mids: dict[str, str] = field(default_factory=dict)  # WHEP: kind -> the first mid receiving it
    connected: bool = False
    ended: bool = False
    timer: asyncio.TimerHandle | None = None

    @property
    def target(self) -> str:
        return "$publish" if self.kind == "whip" else "$subscribe"


@dataclass(frozen=True, slots=True)
class Created:
    resource: WhipResource
    answer: str


class _Sink:
    """The room's view of a WHIP/WHEP session: it has no socket, so events either steer the WHEP consumers
    (a new track list) or end the resource (closed by the room: kick, duplicate identity, room deleted)."""

    def __init__(self, service: WhipService) -> None:
        self.service = service
        self.resource: WhipResource | None = None

    def deliver(self, event: RoomEvent) -> None:
        resource = self.resource
        if resource is not None and resource.kind == "whep" and isinstance(event, TracksEvent):
            self.service.schedule_follow(resource, event.tracks)

    def close(self, code: str, reason: str) -> None:
        if self.resource is not None:
            self.service.end(self.resource, code, leave=False)


class WhipService:
    def __init__(
        self,
        manager: RoomManager,
        keys: Mapping[str, str],
        media: MediaBackend | None,
        *,
        clock: Callable[[], float],
        limits: WhipLimits | None = None,
        on_event: Callable[[str], None] | None = None,
        on_session: SessionHook | None = None,
    ) -> None:
        self.manager = manager
        self.keys = keys
        self._media = media  # set once the media plane is up (the app's lifespan)
        self.clock = clock
        self.limits = limits or WhipLimits()
        self.resources: dict[str, WhipResource] = {}
        self.by_owner: dict[str, WhipResource] = {}  # participant sid -> its resource
        self.counters: Counter[str] = Counter()
        self._count = on_event or (lambda name: None)
        self._on_session = on_session or (lambda name, resource: None)
        self._buckets: dict[str, tuple[float, float]] = {}  # client key -> (tokens, last refill)

    @property
    def media(self) -> MediaBackend:
        if self._media is None:
            raise WhipError(503, "media_unavailable", "the media plane is not running", retry_after=5)
        return self._media

    @media.setter
    def media(self, media: MediaBackend) -> None:
        self._media = media

    # ------------------------------------------------------------------ admission

    def admit(self, host: str) -> None:
        """Charge one POST to the client's bucket; 429 with Retry-After when it is empty or the node is full."""
        limits, now, key = self.limits, self.clock(), client_key(host)
        tokens, last = self._buckets.get(key, (limits.post_burst, now))
        tokens = min(limits.post_burst, tokens + (now - last) * limits.posts_per_second)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            self._count_refusal("post_rate_limited")
            raise WhipError(429, "rate_limited", "too many session requests; retry later", retry_after=1)
        if len(self._buckets) >= limits.max_clients_tracked and key not in self._buckets:
            self._forget_full_buckets(now)
        self._buckets[key] = (tokens - 1.0, now)
        if len(self.resources) >= limits.max_sessions:
            self._count_refusal("sessions_full")
            raise WhipError(429, "too_many_sessions", "this server holds its most WHIP/WHEP sessions", retry_after=5)

    def _forget_full_buckets(self, now: float) -> None:
        rate, burst = self.limits.posts_per_second, self.limits.post_burst
        for key, (tokens, last) in list(self._buckets.items()):
            if tokens + (now - last) * rate >= burst:
                del self._buckets[key]

    def authenticate(self, authorization: str) -> AccessToken:
        scheme, _, raw = authorization.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            self._count_refusal("token_missing")
            raise WhipError(401, "missing_token", "send Authorization: Bearer <Roomcast access token>")
        try:
            token = verify(raw.strip(), self.keys, now=self.clock())
        except TokenError as exc:
            self._count_refusal("token_refused")
            raise WhipError(401, exc.code, exc.message) from None
        if self.manager.is_revoked(token, self.clock()):
            self._count_refusal("token_refused")
            raise WhipError(401, "token_revoked", "this token was revoked when its participant was removed")
        return token

    # ------------------------------------------------------------------ POST

    def create(
        self, kind: Kind, authorization: str, room_name: str, sdp: str, host: str, pinned: str | None = None
    ) -> Created:
        """Join ``room_name`` as the token's identity and answer its offer (RFC 9725 §4.2)."""
        token = self.authenticate(authorization)
        if token.grants.room != room_name:
            self._count_refusal("wrong_room")
            message = f"token is for room {token.grants.room[:128]!r}, not {room_name[:128]!r}"
            raise WhipError(403, "wrong_room", message)
        if kind == "whip" and not token.grants.can_publish:
            self._count_refusal("permission_denied")
            raise WhipError(403, "permission_denied", "token lacks the canPublish grant")
        if kind == "whep" and not token.grants.can_subscribe:
            self._count_refusal("permission_denied")
            raise WhipError(403, "permission_denied", "token lacks the canSubscribe grant")
        mids = self._check_offer(kind, sdp)
        room = self.manager.rooms.get(room_name)
        if room is not None and room.mode != "sfu":
            self._count_refusal("wrong_mode")
            raise WhipError(409, "wrong_mode", f"room {room_name[:128]!r} is peer-to-peer; WHIP/WHEP need an SFU room")
        sink = _Sink(self)
        try:
            room, participant = self.manager.join(token, sink, self.clock(), client_key(host) if host else "")
        except RoomError as exc:
            self._count_refusal(exc.code)
            raise WhipError(_status(exc.code), exc.code, exc.message) from None
        resource = WhipResource(
            id=secrets.token_urlsafe(18),
            kind=kind,
            room=room,
            participant=participant,
            token=token,
            etag=_etag(),
            offer=sdp,
            pinned=pinned,
            mids=mids,
        )
        if room.mode != "sfu":
            self.manager.leave(room, participant, "refused")
            self._count_refusal("wrong_mode")
            raise WhipError(409, "wrong_mode", f"room {room_name[:128]!r} is peer-to-peer; WHIP/WHEP need an SFU room")
        if kind == "whep":
            self._choose_source(resource, self.media.room_tracks(room.name))
        try:
            answer = self.media.handle_offer(participant.sid, resource.target, sdp, self._context(resource))
        except MediaError as exc:
            self.media.close_owner(participant.sid)
            self.manager.leave(room, participant, "refused")
            self._count_refusal("media_" + exc.code)
            raise WhipError(_status(exc.code), exc.code, exc.message) from None
        sink.resource = resource
        self.resources[resource.id] = resource
        self.by_owner[participant.sid] = resource
        self._arm(resource, min(self.limits.connect_timeout, token.expires_at - self.clock()))
        self.counters[f"{kind}_created"] += 1
        self._count(f"{kind}_created")
        self._on_session(f"{kind}_session_started", resource)
        log.info("%s session %s: %s in %s", kind, resource.id[:8], participant.identity, room.name)
        return Created(resource, answer)

    def _check_offer(self, kind: Kind, sdp: str) -> dict[str, str]:
        """400 for what is not SDP, 422 for an offer this endpoint cannot serve; the receiving mids by kind."""
        try:
            offer = SessionDescription.parse(sdp)
        except ParseError as exc:
            self._count_refusal("invalid_sdp")
            raise WhipError(400, "invalid_sdp", f"cannot parse the offer: {exc}") from None
        wanted = ("sendonly", "sendrecv") if kind == "whip" else ("recvonly", "sendrecv")
        mids: dict[str, str] = {}
        for m in offer.media:
            if m.kind in ("audio", "video") and m.port and m.direction in wanted and m.mid is not None:
                mids.setdefault(m.kind, m.mid)
        if not mids:
            self._count_refusal("nothing_to_negotiate")
            verb = "sends" if kind == "whip" else "receives"
            raise WhipError(422, "no_media", f"the offer {verb} no audio or video")
        return mids

    # ------------------------------------------------------------------ PATCH, DELETE

    def find(self, resource_id: str, authorization: str, kind: Kind) -> WhipResource:
        """The resource, for its own participant only: 404 unknown, 401 bad token, 403 someone else's."""
        resource = self.resources.get(resource_id)
        if resource is None or resource.kind != kind:
            self._count_refusal("unknown_session")
            raise WhipError(404, "unknown_session", "no such session (it ended, or never existed)")
        token = self.authenticate(authorization)
        if token.identity != resource.participant.identity or token.grants.room != resource.room.name:
            self._count_refusal("not_your_session")
            raise WhipError(403, "not_your_session", "this session belongs to another participant")
        return resource

    def patch(self, resource: WhipResource, frag: SdpFrag, if_match: str | None) -> tuple[str, str] | None:
        """Trickle (None: 204, an ICE-lite server needs no candidates) or an ICE restart (RFC 9725 §4.3.2):
        the answer fragment and the new ETag."""
        if if_match is not None and if_match.strip() not in ("*", resource.etag):
            self._count_refusal("etag_mismatch")
            raise WhipError(412, "etag_mismatch", "If-Match does not match this session's ETag")
        current = _offer_ice(resource.offer)
        if frag.ice_ufrag is None or frag.ice_pwd is None or frag.ice_ufrag == current[0]:
            self.counters["trickle"] += 1
            return None
        offer = _with_ice(resource.offer, frag.ice_ufrag, frag.ice_pwd)
        try:
            answer = self.media.handle_offer(resource.participant.sid, resource.target, offer, self._context(resource))
        except MediaError as exc:
            raise WhipError(_status(exc.code), exc.code, exc.message) from None
        resource.offer = offer
        resource.etag = _etag()
        self.counters["ice_restarts"] += 1
        self._count("whip_ice_restart")
        ufrag, pwd, candidates, mid = _answer_ice(answer)
        return answer_sdpfrag(ufrag, pwd, candidates, mid), resource.etag

    def delete(self, resource: WhipResource) -> None:
        self.end(resource, "left")

    # ------------------------------------------------------------------ the session's end

    def end(self, resource: WhipResource, reason: str, *, leave: bool = True) -> None:
        """Release the media, forget the resource and (unless the room ended it) leave the room."""
        if resource.ended:
            return
        resource.ended = True
        if resource.timer is not None:
            resource.timer.cancel()
            resource.timer = None
        self.resources.pop(resource.id, None)
        self.by_owner.pop(resource.participant.sid, None)
        self.media.close_owner(resource.participant.sid)
        self.counters[f"{resource.kind}_ended"] += 1
        self._count(f"{resource.kind}_ended_{reason}")
        self._on_session(f"{resource.kind}_session_ended", resource)  # before the participant_left it causes
        if leave:
            self.manager.leave(resource.room, resource.participant, reason)
        log.info("%s session %s ended: %s", resource.kind, resource.id[:8], reason)

    def transport_event(self, owner: str, target: str, up: bool) -> None:
        """The media service's word on a transport: connected (the deadline becomes the token's expiry), or
        failed (ICE consent lost: a publisher that vanished without DELETE)."""
        resource = self.by_owner.get(owner)
        if resource is None or target != resource.target:
            return
        if not up:
            self.end(resource, "ice_failed")
            return
        if not resource.connected:
            resource.connected = True
            self._arm(resource, resource.token.expires_at - self.clock())
            self._on_session(f"{resource.kind}_session_connected", resource)

    def _arm(self, resource: WhipResource, delay: float) -> None:
        if resource.timer is not None:
            resource.timer.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # driven without a loop (unit tests): no deadline
        resource.timer = loop.call_later(max(0.0, delay), self._deadline, resource)

    def _deadline(self, resource: WhipResource) -> None:
        resource.timer = None
        expired = self.clock() >= resource.token.expires_at
        self.end(resource, "token_expired" if expired else "ice_timeout")

    def close(self) -> None:
        for resource in list(self.resources.values()):
            self.end(resource, "server_shutdown")

    # ------------------------------------------------------------------ WHEP: following the room's tracks

    def schedule_follow(self, resource: WhipResource, tracks: tuple[PublishedTrack, ...]) -> None:
        """Re-bind the consumers after the room's current delivery (never from inside the media service's
        own callback)."""
        try:
            asyncio.get_running_loop().call_soon(self.follow, resource, tracks)
        except RuntimeError:
            self.follow(resource, tracks)

    def follow(self, resource: WhipResource, tracks: tuple[PublishedTrack, ...] | list[PublishedTrack]) -> None:
        """Serve the (new) source in place: same m-lines, SSRCs and numbering, other producers behind them
        (WHEP has no server-initiated renegotiation: docs/whip.md)."""
        if resource.ended:
            return
        before = dict(resource.subscriptions)
        self._choose_source(resource, tracks)
        if resource.subscriptions == before:
            return
        try:
            self.media.handle_offer(resource.participant.sid, "$subscribe", resource.offer, self._context(resource))
        except MediaError as exc:
            log.info("whep session %s: cannot follow the tracks: %s", resource.id[:8], exc.message)
            return
        self.counters["whep_source_switched"] += 1

    def _choose_source(self, resource: WhipResource, tracks: tuple[PublishedTrack, ...] | list[PublishedTrack]) -> None:
        me = resource.participant.identity
        live = [t for t in tracks if t.participant != me]
        publishers = [t.participant for t in live]
        source = resource.pinned
        if source is None:
            if resource.source in publishers:
                source = resource.source
            else:
                with_video = [t.participant for t in live if t.kind == "video"]
                newest = with_video or publishers
                source = newest[-1] if newest else None
        resource.source = source
        subscriptions: dict[str, str] = {}
        for kind, mid in resource.mids.items():
            track = next((t for t in live if t.participant == source and t.kind == kind), None)
            if track is not None:
                subscriptions[mid] = track.sid
        resource.subscriptions = subscriptions

    def _context(self, resource: WhipResource) -> OfferContext:
        grants = resource.participant.grants
        return OfferContext(
            room=resource.room.name,
            identity=resource.participant.identity,
            subscriptions=dict(resource.subscriptions),
            can_publish_data=False,
            room_admin=grants.room_admin,
            can_subscribe=grants.can_subscribe,
            send_all=resource.kind == "whep",
        )

    def _count_refusal(self, reason: str) -> None:
        self.counters["refused_" + reason] += 1
        self._count("whip_refused_" + reason)


def _etag() -> str:
    return '"' + secrets.token_hex(8) + '"'


_ICE_UFRAG = re.compile(r"^a=ice-ufrag:([^\r\n]*)", re.M)
_ICE_PWD = re.compile(r"^a=ice-pwd:([^\r\n]*)", re.M)


def _offer_ice(sdp: str) -> tuple[str, str]:
    ufrag, pwd = _ICE_UFRAG.search(sdp), _ICE_PWD.search(sdp)
    return (ufrag.group(1).strip() if ufrag else "", pwd.group(1).strip() if pwd else "")


def _with_ice(sdp: str, ufrag: str, pwd: str) -> str:
    """The offer with new ICE credentials on every line that had them: what the client would have sent had
    it renegotiated (RFC 8839 §4.4.1.1.1), so the media service takes it as an ICE restart."""
    if not ufrag.isprintable() or not pwd.isprintable() or " " in ufrag or " " in pwd:
        raise WhipError(400, "invalid_sdpfrag", "bad a=ice-ufrag or a=ice-pwd")
    sdp = _ICE_UFRAG.sub(lambda _m: f"a=ice-ufrag:{ufrag}", sdp)
    return _ICE_PWD.sub(lambda _m: f"a=ice-pwd:{pwd}", sdp)


def _answer_ice(answer: str) -> tuple[str, str, list[str], str | None]:
    description = SessionDescription.parse(answer)
    ufrag, pwd = _offer_ice(answer)
    prefix = "a=candidate:"
    candidates = [line[len(prefix) :].strip() for line in answer.splitlines() if line.startswith(prefix)]
    mid = next((m.mid for m in description.media if m.port), None)
    return ufrag, pwd, candidates, mid
