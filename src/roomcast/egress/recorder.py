"""One participant's tracks into one file, as a hidden subscriber of the room (egress as a client).

The recorder is an ordinary SDK participant over loopback: the SFU forwards to it as to any subscriber,
and nothing on the forwarding path knows recordings exist. It subscribes to the participant's first
video and first audio track, gets whole frames (``sdk.frames.FrameAssembler``: a frame that lost a
packet is never emitted) and the server's sender reports, and:

- waits until every track has a sender report (or ``READY_WAIT`` passed) so both can be aligned on the
  sender's clock (``egress.timeline``), then asks for a keyframe (PLI, RFC 4585 §6.3.1) and starts the
  file on the first one; audio from just before it is kept so both streams start together;
- after a video frame was lost (a gap in what was emitted), skips frames up to the next keyframe and
  asks for one: a delta frame whose reference is missing would decode into garbage;
- stops with an error (never raising into the SDK's packet path) when the file cannot be written.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from roomcast.egress.container import ContainerFile, RecordingError, extension
from roomcast.egress.timeline import Timeline, TrackClock
from roomcast.sdk.client import MediaConnection, Room
from roomcast.sdk.frames import Frame
from roomcast.sdk.offer import PAYLOAD_TYPES
from roomcast.wire import ParseError
from roomcast.wire.rtcp import Pli, SenderReport, parse_compound

log = logging.getLogger("roomcast.egress")
READY_WAIT = 1.0  # seconds of frames before starting without sender reports
KEYFRAME_RETRY = 0.5  # seconds between keyframe requests while one is awaited
AUDIO_LEAD = 100  # Opus frames (2 s) kept before the file starts
TRACKS_WAIT = 10.0  # seconds for the recorder's own participant to see the tracks it records
# Capture timestamps are irregular (a loaded sender stamps two frames 1 ms apart): a video frame closer than
# this to the previous one is moved to this distance (at most 25 ms), so that with the nominal rate the file
# declares (container.NOMINAL_FPS) no two frames fall into one frame slot of a tool that resamples to it
# (``ffmpeg -i file -f null -`` reports "non monotonically increasing dts" otherwise).
MIN_VIDEO_STEP = 90000 // 40
RATES = {"video": 90000, "audio": 48000}
MEDIA_PTS = frozenset(PAYLOAD_TYPES.values())
RECORDER_SSRC = 0x52454331  # "REC1": the sender SSRC of our feedback


class ParticipantRecorder:
    """Record ``tracks`` (the room's track dicts of one participant) into ``base`` + the codec's extension."""

    def __init__(
        self,
        participant: str,
        tracks: list[dict[str, Any]],
        base: Path,
        join: Callable[[], Awaitable[Room]],
        on_failed: Callable[[ParticipantRecorder], None],
    ) -> None:
        self.participant = participant
        self.kinds: dict[str, str] = {}  # track sid -> "audio" | "video" (the first of each kind)
        for track in tracks:
            if track["kind"] in RATES and track["kind"] not in self.kinds.values():
                self.kinds[track["sid"]] = track["kind"]
        self.base = base
        self._join = join
        self._on_failed = on_failed
        self.clocks = {kind: TrackClock(RATES[kind]) for kind in self.kinds.values()}
        self.timeline = Timeline(self.clocks, {"video": MIN_VIDEO_STEP})
        self.file: ContainerFile | None = None
        self.state = "starting"  # -> recording -> finished | failed
        self.error: str | None = None
        self.counters: collections.Counter[str] = collections.Counter()
        self.room: Room | None = None
        self._conn: MediaConnection | None = None
        self._ssrcs: dict[int, str] = {}  # media SSRC -> track sid (learned from the packets)
        self._video_ssrc = 0
        self._first_frame_at: float | None = None
        self._ready = False
        self._need_keyframe = True
        self._last_pli = float("-inf")
        self._dropped: dict[str, int] = {}
        self._audio_lead: collections.deque[tuple[int, Frame]] = collections.deque(maxlen=AUDIO_LEAD)
        self._ticker: asyncio.Task[None] | None = None

    @property
    def has_video(self) -> bool:
        return "video" in self.clocks

    @property
    def path(self) -> Path | None:
        return self.file.path if self.file is not None else None

    async def start(self) -> None:
        self.room = await self._join()
        async with asyncio.timeout(TRACKS_WAIT):  # the track list comes in its own message after the join
            while not set(self.kinds) <= set(self.room.tracks) and self.state == "starting":
                self.room.tracks_changed.clear()
                await self.room.tracks_changed.wait()
        if self.state == "starting":
            self._conn = await self.room.subscribe(
                self._on_packet, on_frame=self._on_frame, tracks=list(self.kinds), nack=True
            )
            self._conn.rtc.on_rtcp = self._on_rtcp
        if self.state != "starting":  # stopped while joining
            await self.room.close()
            self.room = None
            return
        self._ticker = asyncio.create_task(self._tick_loop(), name=f"recorder {self.participant}")

    # ------------------------------------------------------------------ input (never raises)

    def _on_packet(self, track_sid: str, packet: bytes) -> None:
        if len(packet) < 12 or packet[1] & 0x7F not in MEDIA_PTS:
            return
        ssrc = int.from_bytes(packet[8:12], "big")
        if ssrc not in self._ssrcs:
            self._ssrcs[ssrc] = track_sid
            if self.kinds.get(track_sid) == "video":
                self._video_ssrc = ssrc

    def _on_rtcp(self, data: bytes) -> None:
        try:
            packets = parse_compound(data)
        except ParseError:
            return
        for packet in packets:
            if isinstance(packet, SenderReport):
                kind = self.kinds.get(self._ssrcs.get(packet.ssrc, ""))
                if kind is not None:
                    self.clocks[kind].on_sender_report(packet.ntp_timestamp, packet.rtp_timestamp)
                    self.counters["sender_reports"] += 1

    def _on_frame(self, frame: Frame) -> None:
        if self.state not in ("starting", "recording"):
            return
        try:
            self._frame(frame, time.monotonic())
        except RecordingError as exc:
            self.fail(exc.message)
        except Exception as exc:  # a muxer surprise must not reach the SDK's datagram handler
            log.exception("recording %s: frame not written", self.base)
            self.fail(f"{type(exc).__name__}: {exc}")

    def _frame(self, frame: Frame, now: float) -> None:
        kind = self.kinds.get(frame.track_sid)
        if kind is None:
            return
        ext = self.clocks[kind].on_frame(frame.timestamp, now)
        if self._first_frame_at is None:
            self._first_frame_at = now
        if kind == "audio":
            if self.file is None:
                self._audio_lead.append((ext, frame))
                return
            self._write("audio", frame, ext)
            return
        assembler = self.room.frame_assemblers.get(frame.track_sid) if self.room is not None else None
        dropped = assembler.stats.dropped_frames if assembler is not None else 0
        if dropped > self._dropped.get(frame.track_sid, 0):
            self._dropped[frame.track_sid] = dropped
            if self.file is not None and not self._need_keyframe:
                self.counters["gaps"] += 1
                self._need_keyframe = True
                self._request_keyframe(now)
        if self._need_keyframe:
            if not frame.keyframe or (self.file is None and not self._ready):
                self.counters["video_skipped"] += 1
                return
            if self.file is None:
                self._begin(frame, ext)
            self._need_keyframe = False
        self._write("video", frame, ext)

    def _begin(self, first: Frame | None, ext: int) -> None:
        if not self.timeline.begin("video" if first is not None else "audio", ext):
            raise RecordingError("recording_bad_stream", "no timing for a track")
        video = first.codec if first is not None else None
        self.file = ContainerFile(self.base.with_suffix(extension(video)), video, "audio" in self.clocks)
        self.file.start(first.data if first is not None else None)
        self.state = "recording"
        log.info("recording %s started (%s clock)", self.file.path, "sender" if self.timeline.use_sr else "arrival")
        for lead_ext, frame in self._audio_lead:
            self._write("audio", frame, lead_ext)
        self._audio_lead.clear()

    def _write(self, kind: str, frame: Frame, ext: int) -> None:
        assert self.file is not None
        pts = self.timeline.pts(kind, ext)
        if pts is None:
            self.counters[f"{kind}_before_start"] += 1
            return
        self.file.write(kind, frame.data, pts, frame.keyframe)

    # ------------------------------------------------------------------ keyframes, start

    def _request_keyframe(self, now: float) -> None:
        if self._conn is None or not self._video_ssrc or now - self._last_pli < KEYFRAME_RETRY:
            return
        self._last_pli = now
        self._conn.send_rtcp(Pli(RECORDER_SSRC, self._video_ssrc).serialize())
        self.counters["keyframe_requests"] += 1

    async def _tick_loop(self) -> None:
        while self.state in ("starting", "recording"):
            self.tick(time.monotonic())
            await asyncio.sleep(0.1)  # the keyframe retry timer (a wait, not a stand-in for an event)

    def tick(self, now: float) -> None:
        try:
            if not self._ready and self._first_frame_at is not None:
                with_frames = [c for c in self.clocks.values() if c.has_frames]
                reports = len(with_frames) == len(self.clocks) and self.timeline.sender_reports_known()
                self._ready = reports or now - self._first_frame_at >= READY_WAIT
            if not self._ready:
                return
            if not self.has_video:
                if self.file is None and self._audio_lead:
                    self._begin(None, self._audio_lead[0][0])
                return
            if self._need_keyframe:
                self._request_keyframe(now)
        except RecordingError as exc:
            self.fail(exc.message)

    # ------------------------------------------------------------------ end

    def fail(self, message: str) -> None:
        if self.state in ("finished", "failed"):
            return
        self.state, self.error = "failed", message
        log.warning("recording %s failed: %s", self.base, message)
        if self.file is not None:
            self.file.abort()
        self._on_failed(self)

    async def stop(self) -> None:
        """Finish the file (its index) and leave the room."""
        if self.state in ("starting", "recording"):
            try:
                if self.file is not None:
                    self.file.close()
                self.state = "finished"
            except RecordingError as exc:
                self.fail(exc.message)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self.room is not None:
            with contextlib.suppress(Exception):
                await self.room.close()
            self.room = None

    def _counters(self) -> dict[str, int]:
        counters = dict(self.counters)
        counters["video_retimed"] = self.timeline.retimed
        recovery = self._conn.recovery if self._conn is not None else None
        if recovery is not None:
            counters["nacked"], counters["retransmitted"] = recovery.nacked, recovery.recovered
        if self.room is not None:
            for sid, assembler in self.room.frame_assemblers.items():
                kind = self.kinds.get(sid, "?")
                counters[f"{kind}_lost_packets"] = assembler.stats.lost_packets
                counters[f"{kind}_dropped_frames"] = assembler.stats.dropped_frames
        return counters

    def info(self) -> dict[str, Any]:
        size = 0
        path = self.path
        if path is not None:
            with contextlib.suppress(OSError):
                size = path.stat().st_size
        return {
            "participant": self.participant,
            "state": self.state,
            "path": str(path) if path is not None else None,
            "codecs": sorted({self.file.video or "", "opus" if self.file.audio else ""} - {""}) if self.file else [],
            "duration": round(self.timeline.duration(), 3),
            "size": size,
            "sender_clock": self.timeline.use_sr,
            "error": self.error,
            "counters": self._counters(),
        }
