"""One participant's recording file, written by FFmpeg's muxers through PyAV without decoding anything.

The frames arrive encoded (VP8, H.264 access units in Annex-B, Opus packets) and go into the container
as they are: VP8 (+ Opus) in WebM, H.264 (+ Opus) in Matroska, Opus alone in Ogg. What the container
header needs is read from the first keyframe: VP8's frame size from its key frame header (RFC 6386
§9.1), H.264's SPS/PPS (the CodecPrivate) by FFmpeg's own H.264 parser on that access unit. Opus's
header (RFC 7845 OpusHead) comes from a libopus context that is opened and never fed.
"""

from __future__ import annotations

import contextlib
import io
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from roomcast.errors import CodedError

VIDEO_TIME_BASE = Fraction(1, 90000)
AUDIO_TIME_BASE = Fraction(1, 48000)
NOMINAL_FPS = 60  # declared (Matroska DefaultDuration): players and ffmpeg's frame-rate guess use it; frames
# themselves keep their own timestamps (variable frame rate)
FORMATS = {"vp8": ("webm", ".webm"), "h264": ("matroska", ".mkv"), None: ("ogg", ".ogg")}


class RecordingError(CodedError):
    """A recording that cannot go on (the file cannot be written, the stream cannot be muxed)."""


def extension(video: str | None) -> str:
    return FORMATS[video][1]


def vp8_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) of a VP8 key frame (RFC 6386 §9.1: start code 9d 01 2a, then 14-bit sizes)."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width, height = struct.unpack_from("<HH", frame, 6)
    return width & 0x3FFF, height & 0x3FFF


class ContainerFile:
    """Open with :meth:`start` at the first video keyframe (or the first audio frame without video), then
    :meth:`write` frames with their pts in the stream's clock (90 kHz, 48 kHz); :meth:`close` writes the
    index. Every FFmpeg or OS failure surfaces as :class:`RecordingError` (``recording_write_failed``)."""

    def __init__(self, path: Path, video: str | None, audio: bool) -> None:
        self.path = path
        self.video = video
        self.audio = audio
        self.frames = 0
        self._out: Any = None
        self._streams: dict[str, Any] = {}

    @property
    def open(self) -> bool:
        return self._out is not None

    def start(self, keyframe: bytes | None) -> None:
        fmt = FORMATS[self.video][0]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            out = av.open(str(self.path), "w", format=fmt)
        except (OSError, av.FFmpegError) as exc:
            raise RecordingError("recording_write_failed", f"cannot create {self.path}: {exc}") from None
        try:
            if self.video == "vp8":
                size = vp8_size(keyframe or b"")
                if size is None:
                    raise RecordingError("recording_bad_stream", "the first VP8 frame is not a key frame")
                stream = out.add_mux_stream("vp8", rate=NOMINAL_FPS, width=size[0], height=size[1])
                stream.time_base = VIDEO_TIME_BASE
                self._streams["video"] = stream
            elif self.video == "h264":
                self._streams["video"] = self._h264_stream(out, keyframe or b"")
            if self.audio:
                stream = out.add_stream("libopus", rate=48000, layout="stereo")
                stream.time_base = AUDIO_TIME_BASE
                self._streams["audio"] = stream
        except BaseException:
            out.close()
            raise
        self._out = out

    @staticmethod
    def _h264_stream(out: Any, access_unit: bytes) -> Any:
        try:
            with av.open(io.BytesIO(access_unit), format="h264") as probe:
                template = probe.streams.video[0]
                if not template.codec_context.extradata or not template.codec_context.width:
                    raise RecordingError("recording_bad_stream", "the first H.264 keyframe carries no SPS/PPS")
                stream = out.add_stream_from_template(template)
                stream.codec_context.framerate = Fraction(NOMINAL_FPS)
        except av.FFmpegError as exc:
            raise RecordingError("recording_bad_stream", f"cannot read the H.264 keyframe: {exc}") from None
        stream.time_base = VIDEO_TIME_BASE
        return stream

    def write(self, kind: str, data: bytes, pts: int, keyframe: bool) -> None:
        stream = self._streams.get(kind)
        if stream is None or self._out is None:
            return
        packet = av.Packet(data)
        packet.stream = stream
        packet.pts = packet.dts = pts
        packet.time_base = VIDEO_TIME_BASE if kind == "video" else AUDIO_TIME_BASE
        packet.is_keyframe = keyframe
        try:
            self._out.mux(packet)
        except (OSError, av.FFmpegError) as exc:
            raise RecordingError("recording_write_failed", f"writing {self.path} failed: {exc}") from None
        self.frames += 1

    def close(self) -> None:
        out, self._out = self._out, None
        if out is None:
            return
        try:
            out.close()
        except (OSError, av.FFmpegError) as exc:
            raise RecordingError("recording_write_failed", f"finishing {self.path} failed: {exc}") from None

    def abort(self) -> None:
        """Close after a failure: whatever FFmpeg still says is the error already reported."""
        with contextlib.suppress(RecordingError):
            self.close()
