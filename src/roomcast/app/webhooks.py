"""Signed webhooks (``--webhook-url``, several allowed): room, participant, track and WHIP/WHEP events POSTed as
JSON to the operator's backend, like LiveKit's.

Each body carries an ``id`` (unique per event: the receiver's replay and duplicate check) and ``createdAt``;
``Authorization`` is an HS256 JWT from the API key pair whose ``sha256`` claim is the base64 SHA-256 of the
exact body (``iss`` = API key, short ``exp``), so a receiver verifies both who sent it and that it was not
altered. One FIFO queue per URL, delivered one event at a time: a receiver sees every room's events in the
order they happened, and an event that fails is retried (exponential backoff) before anything after it,
until ``give_up_after``. Queues are bounded (the oldest event goes, counted); nothing here blocks the room.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from roomcast.rooms.model import Participant, PublishedTrack, Room

log = logging.getLogger("roomcast.webhooks")
CONTENT_TYPE = "application/webhook+json"
_RETRY_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class WebhookLimits:
    queue_size: int = 1000  # events waiting per URL
    first_retry: float = 0.5
    max_backoff: float = 4.0  # a receiver back from an outage gets its events within this
    give_up_after: float = 300.0  # an event older than this is dropped (counted) instead of retried again
    timeout: float = 5.0  # per attempt
    token_ttl: float = 300.0


@dataclass(frozen=True, slots=True)
class _Event:
    id: str
    name: str
    created: float  # monotonic, for give_up_after
    body: bytes


@dataclass(eq=False)
class _Target:
    url: str
    queue: deque[_Event] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    empty: asyncio.Event = field(default_factory=asyncio.Event)  # set while nothing waits (shutdown's flush)
    task: asyncio.Task[None] | None = None


def sign(body: bytes, api_key: str, api_secret: str, now: float, ttl: float) -> str:
    """The ``Authorization`` token of one body: HS256 over ``iss``, ``sha256`` (base64 of the body's SHA-256)."""
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    claims = {"iss": api_key, "sha256": digest, "iat": int(now), "nbf": int(now) - 5, "exp": int(now + ttl)}
    return jwt.encode(claims, api_secret, algorithm="HS256")


def room_json(room: Room) -> dict[str, Any]:
    return {
        "name": room.name,
        "sid": room.sid,
        "createdAt": room.created_at,
        "maxParticipants": room.max_participants,
        "numParticipants": len(room.participants),
        "mode": room.mode,
    }


def participant_json(participant: Participant) -> dict[str, Any]:
    return {
        "identity": participant.identity,
        "sid": participant.sid,
        "name": participant.name,
        "joinedAt": participant.joined_at,
        "metadata": participant.metadata,
        "hidden": participant.grants.hidden,
        "canPublish": participant.grants.can_publish,
    }


def track_json(track: PublishedTrack) -> dict[str, Any]:
    return {
        "sid": track.sid,
        "kind": track.kind,
        "source": track.source,
        "name": track.name,
        "muted": track.muted,
        "participant": track.participant,
    }


class Webhooks:
    def __init__(
        self,
        urls: Iterable[str],
        api_key: str,
        api_secret: str,
        *,
        clock: Callable[[], float] = time.time,
        limits: WebhookLimits | None = None,
    ) -> None:
        self.targets = [_Target(url) for url in urls]
        self.api_key, self.api_secret = api_key, api_secret
        self.clock = clock
        self.limits = limits or WebhookLimits()
        self.counters: Counter[str] = Counter()
        self._tracks: dict[str, dict[str, PublishedTrack]] = {}  # room -> the tracks last announced
        self._client: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------ events in (never block)

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        if not self.targets:
            return
        event_id = "EV_" + secrets.token_hex(8)
        body = json.dumps({"id": event_id, "event": name, "createdAt": self.clock(), **payload}).encode()
        event = _Event(event_id, name, time.monotonic(), body)
        for target in self.targets:
            if len(target.queue) >= self.limits.queue_size:
                target.queue.popleft()
                self.counters["dropped_queue_full"] += 1
            target.queue.append(event)
            target.empty.clear()
            target.wake.set()

    def lifecycle(self, name: str, room: Room, participant: Participant | None, reason: str) -> None:
        """``RoomManager.on_lifecycle``: room_started/finished, participant_joined/left."""
        payload: dict[str, Any] = {"room": room_json(room)}
        if participant is not None:
            payload["participant"] = participant_json(participant)
        if reason:
            payload["reason"] = reason
        if name == "room_finished":
            self._tracks.pop(room.name, None)
        self.emit(name, payload)

    def tracks_changed(self, room: Room | None, room_name: str, tracks: list[PublishedTrack]) -> None:
        """The media service's full track list of a room → track_published / track_unpublished for the changes."""
        before = self._tracks.get(room_name, {})
        now = {t.sid: t for t in tracks}
        info = room_json(room) if room is not None else {"name": room_name}
        for sid, track in before.items():
            if sid not in now:
                self.emit("track_unpublished", {"room": info, "track": track_json(track)})
        for sid, track in now.items():
            if sid not in before:
                self.emit("track_published", {"room": info, "track": track_json(track)})
        if now:
            self._tracks[room_name] = now
        else:
            self._tracks.pop(room_name, None)

    def session(self, name: str, room: Room, participant: Participant, session_id: str, kind: str) -> None:
        """WHIP/WHEP sessions: ``whip_session_started`` / ``_connected`` / ``_ended`` (and ``whep_``)."""
        self.emit(
            name,
            {
                "room": room_json(room),
                "participant": participant_json(participant),
                "session": {"id": session_id, "kind": kind},
            },
        )

    def recording(self, name: str, info: dict[str, Any]) -> None:
        """``recording_started`` / ``recording_finished`` (with the files' paths; egress/service.py)."""
        self.emit(name, {"room": {"name": info["room"]}, "recording": info})

    # ------------------------------------------------------------------ delivery

    def start(self) -> None:
        if not self.targets:
            return
        self._client = httpx.AsyncClient(timeout=self.limits.timeout, follow_redirects=False)
        for target in self.targets:
            target.task = asyncio.create_task(self._deliver(target), name=f"webhooks {target.url}")

    async def flush(self, timeout: float) -> None:
        """At shutdown: give the queues ``timeout`` seconds to empty (the last participant_left, room_finished)."""
        waits = [t.empty.wait() for t in self.targets if t.queue and t.task is not None]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), timeout)

    async def close(self) -> None:
        for target in self.targets:
            if target.task is not None:
                target.task.cancel()
        for target in self.targets:
            if target.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await target.task
                target.task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _deliver(self, target: _Target) -> None:
        backoff = self.limits.first_retry
        while True:
            if not target.queue:
                target.empty.set()
                target.wake.clear()
                await target.wake.wait()
                continue
            event = target.queue[0]
            outcome = await self._post(target.url, event)
            if outcome in ("delivered", "rejected"):
                target.queue.popleft()
                self.counters[outcome] += 1
                backoff = self.limits.first_retry
                continue
            self.counters["failed_attempts"] += 1
            if time.monotonic() - event.created > self.limits.give_up_after:
                target.queue.popleft()
                self.counters["given_up"] += 1
                log.warning("webhook %s to %s given up after %.0fs", event.name, target.url, self.limits.give_up_after)
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.limits.max_backoff)

    async def _post(self, url: str, event: _Event) -> str:
        """One attempt: "delivered" (2xx), "rejected" (a 4xx other than 408/425/429: retrying cannot help),
        else "retry" (connection refused, timeout, 5xx)."""
        assert self._client is not None
        token = sign(event.body, self.api_key, self.api_secret, self.clock(), self.limits.token_ttl)
        headers = {"content-type": CONTENT_TYPE, "authorization": token}
        try:
            res = await self._client.post(url, content=event.body, headers=headers)
        except httpx.HTTPError:
            return "retry"
        if 200 <= res.status_code < 300:
            return "delivered"
        if 400 <= res.status_code < 500 and res.status_code not in _RETRY_STATUS:
            log.warning("webhook %s refused by %s: %d", event.name, url, res.status_code)
            return "rejected"
        return "retry"

    def queued(self) -> int:
        return sum(len(t.queue) for t in self.targets)


class WebhookCollector(Collector):
    """``roomcast_webhook_deliveries{result}`` and the events waiting, for /metrics."""

    def __init__(self, webhooks: Webhooks) -> None:
        self.webhooks = webhooks

    def collect(self) -> Iterator[Metric]:
        deliveries = CounterMetricFamily(
            "roomcast_webhook_deliveries",
            "Webhook outcomes: delivered, rejected (4xx), failed_attempts (retried), given_up, dropped_queue_full",
            labels=["result"],
        )
        for result in ("delivered", "rejected", "failed_attempts", "given_up", "dropped_queue_full"):
            deliveries.add_metric([result], self.webhooks.counters.get(result, 0))
        yield deliveries
        yield GaugeMetricFamily("roomcast_webhook_queued", "Webhook events waiting", value=self.webhooks.queued())
