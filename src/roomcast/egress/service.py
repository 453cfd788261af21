"""Recordings of rooms: start, stop, list; one file per publishing participant (docs/whip.md, Recording).

A recording is a hidden watcher participant in the room (the SDK over loopback) that follows the room's
track list and runs a :class:`~roomcast.egress.recorder.ParticipantRecorder` per participant publishing
(its own hidden participant subscribed to that participant's tracks). A participant whose tracks change
gets a new file (a new segment); one whose tracks end has its file finished. The recording ends when
stopped, when the room empties, or when the watcher is disconnected (the room was deleted, the server
stops); a file that cannot be written fails the whole recording (``error`` says why), never the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roomcast.egress.recorder import ParticipantRecorder
from roomcast.errors import CodedError
from roomcast.sdk.client import Room, RoomcastError, connect

log = logging.getLogger("roomcast.egress")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
MAX_FINISHED = 100  # finished recordings remembered per room for GET

# (event, recording info): "recording_started", "recording_finished"
EventSink = Callable[[str, dict[str, Any]], None]
TokenMinter = Callable[[str, str], str]  # (room, identity) -> a hidden subscribe-only token


class RecordingNotFound(CodedError):
    def __init__(self, room: str, recording_id: str) -> None:
        super().__init__("recording_not_found", f"no recording {recording_id[:64]!r} in room {room!r}")


@dataclass(eq=False)
class Recording:
    id: str
    room: str
    started_at: float
    state: str = "starting"  # -> recording -> stopping -> finished | failed
    ended_at: float | None = None
    error: str | None = None
    reason: str | None = None
    segments: list[ParticipantRecorder] = field(default_factory=list)
    active: dict[str, ParticipantRecorder] = field(default_factory=dict)  # participant -> current segment
    watcher: Room | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def info(self, now: float) -> dict[str, Any]:
        files = [s.info() for s in self.segments if s.path is not None]
        end = self.ended_at if self.ended_at is not None else now
        return {
            "id": self.id,
            "room": self.room,
            "state": self.state,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration": round(max((f["duration"] for f in files), default=0.0), 3),
            "elapsed": round(end - self.started_at, 3),
            "size": sum(f["size"] for f in files),
            "path": files[0]["path"] if files else None,
            "files": files,
            "error": self.error,
            "reason": self.reason,
        }


class RecordingService:
    def __init__(
        self,
        directory: Path,
        url: str,
        mint: TokenMinter,
        *,
        clock: Callable[[], float] = time.time,
        on_event: EventSink | None = None,
    ) -> None:
        self.directory = directory
        self.url = url
        self.mint = mint
        self.clock = clock
        self.on_event: EventSink = on_event or (lambda name, info: None)
        self.recordings: dict[str, dict[str, Recording]] = {}  # room -> id -> recording
        self.auto: set[str] = set()  # rooms created with record: true
        self._auto_tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ API

    async def start(self, room: str) -> Recording:
        rec = Recording("RC_" + secrets.token_hex(6), room, self.clock())
        try:
            rec.watcher = await connect(self.url, self.mint(room, f"rec-{rec.id}"))
        except (RoomcastError, OSError) as exc:
            raise CodedError("recording_failed", f"the recorder could not join {room!r}: {exc}") from None
        self.recordings.setdefault(room, {})[rec.id] = rec
        self._forget_old(room)
        rec.state = "recording"
        watcher = rec.watcher
        watcher.on("tracks", lambda msg: self._sync(rec))
        watcher.on("participant_left", lambda msg: self._maybe_empty(rec))
        watcher.on("disconnected", lambda msg: self._spawn(rec, self._finish(rec, "disconnected")))
        self._sync(rec)
        self.on_event("recording_started", rec.info(self.clock()))
        return rec

    def get(self, room: str, recording_id: str) -> Recording:
        rec = self.recordings.get(room, {}).get(recording_id)
        if rec is None:
            raise RecordingNotFound(room, recording_id)
        return rec

    def of_room(self, room: str) -> list[Recording]:
        return list(self.recordings.get(room, {}).values())

    async def stop(self, room: str, recording_id: str) -> Recording:
        rec = self.get(room, recording_id)
        await self._finish(rec, "stopped")
        return rec

    async def close(self) -> None:
        """Server shutdown: finish every file."""
        for recs in list(self.recordings.values()):
            for rec in list(recs.values()):
                await self._finish(rec, "server_stopped")

    # ------------------------------------------------------------------ record: true

    def tracks_changed(self, room: str, publishing: bool) -> None:
        """A room option ``record: true`` room has tracks: record it unless a recording is already running."""
        if room not in self.auto or not publishing:
            return
        if any(r.state in ("starting", "recording") for r in self.of_room(room)):
            return
        placeholder = Recording("RC_pending", room, self.clock())  # no second start while this one joins
        self.recordings.setdefault(room, {})[placeholder.id] = placeholder

        async def run() -> None:
            try:
                await self.start(room)
            except CodedError as exc:
                log.warning("record: true room %s not recorded: %s", room, exc.message)
            finally:
                self.recordings.get(room, {}).pop(placeholder.id, None)

        task = asyncio.get_running_loop().create_task(run())
        self._auto_tasks.add(task)
        task.add_done_callback(self._auto_tasks.discard)

    def room_finished(self, room: str) -> None:
        self.auto.discard(room)

    # ------------------------------------------------------------------ following the room

    def _spawn(self, rec: Recording, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        rec.tasks.add(task)
        task.add_done_callback(rec.tasks.discard)

    def _sync(self, rec: Recording) -> None:
        """The room's tracks changed: start, end or re-segment participants' files."""
        if rec.state != "recording" or rec.watcher is None:
            return
        by_owner: dict[str, list[dict[str, Any]]] = {}
        for track in rec.watcher.tracks.values():
            if not str(track.get("participant", "")).startswith("rec-RC_"):
                by_owner.setdefault(track["participant"], []).append(track)
        for participant, segment in list(rec.active.items()):
            tracks = by_owner.get(participant, [])
            if {t["sid"] for t in tracks} != set(segment.kinds):
                del rec.active[participant]
                self._spawn(rec, segment.stop())
        for participant, tracks in by_owner.items():
            if participant not in rec.active and any(t["kind"] in ("audio", "video") for t in tracks):
                self._start_segment(rec, participant, tracks)

    def _start_segment(self, rec: Recording, participant: str, tracks: list[dict[str, Any]]) -> None:
        number = sum(s.participant == participant for s in rec.segments) + 1
        name = _UNSAFE.sub("_", participant)[:64] + ("" if number == 1 else f"-{number}")
        base = self.directory / _UNSAFE.sub("_", rec.room) / f"{rec.id}-{name}"
        identity = f"rec-{rec.id}-{len(rec.segments) + 1}"

        async def join() -> Room:
            return await connect(self.url, self.mint(rec.room, identity))

        segment = ParticipantRecorder(participant, tracks, base, join, lambda s: self._failed(rec, s))
        rec.segments.append(segment)
        rec.active[participant] = segment

        async def run() -> None:
            try:
                await segment.start()
            except (RoomcastError, OSError, TimeoutError) as exc:
                segment.fail(f"the recorder could not subscribe: {exc}")

        self._spawn(rec, run())

    def _maybe_empty(self, rec: Recording) -> None:
        if rec.watcher is not None and not rec.watcher.participants and rec.state == "recording":
            self._spawn(rec, self._finish(rec, "room_empty"))

    def _failed(self, rec: Recording, segment: ParticipantRecorder) -> None:
        if rec.state != "recording":
            return
        rec.error = f"{segment.participant}: {segment.error}"
        self._spawn(rec, self._finish(rec, "error"))

    async def _finish(self, rec: Recording, reason: str) -> None:
        if rec.state not in ("recording", "starting"):
            await rec.done.wait()
            return
        rec.state = "stopping"
        rec.reason = reason
        for segment in rec.segments:
            await segment.stop()
        rec.active.clear()
        if rec.watcher is not None:
            with contextlib.suppress(Exception):
                await rec.watcher.close()
        rec.state = "failed" if rec.error else "finished"
        rec.ended_at = self.clock()
        rec.done.set()
        info = rec.info(self.clock())
        log.info("recording %s of %s %s (%s): %s", rec.id, rec.room, rec.state, reason, info["path"])
        self.on_event("recording_finished", info)

    def _forget_old(self, room: str) -> None:
        recs = self.recordings[room]
        ended = [r for r in recs.values() if r.state in ("finished", "failed")]
        for rec in ended[: max(0, len(ended) - MAX_FINISHED)]:
            del recs[rec.id]
