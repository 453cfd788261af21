"""Publish pre-encoded media files in real time: Opus from Ogg (RFC 7845/7587), H.264 from Annex-B (RFC 6184).

Nothing is decoded or re-encoded: packets are framed for RTP and paced against the wall clock so a
receiver's jitter buffer sees a live source. The RTP timestamp follows the media (each Opus packet's
own duration, ``fps`` for H.264) and keeps increasing across loops.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from roomcast.sdk.client import Publication, RoomcastError
from roomcast.wire import ParseError, h264, ogg, opus


async def stream_ogg(publication: Publication, path: str, *, loop: bool = True) -> int:
    """Publish the Opus packets of an Ogg Opus file on the audio track; returns packets sent (``loop=False``)."""
    if "audio" not in publication.tracks:
        raise RoomcastError("no_track", "the publication has no audio track")
    try:
        _, packets = ogg.read_ogg_opus(await asyncio.to_thread(Path(path).read_bytes))
        durations = [opus.packet_samples(p.data) for p in packets]
    except ParseError as exc:
        raise RoomcastError("bad_source", f"{path}: {exc}") from exc
    if not packets:
        raise RoomcastError("bad_source", f"{path} holds no Opus audio")
    sent = 0
    rtp_ts = 0
    start = time.monotonic()
    while True:
        for packet, samples in zip(packets, durations, strict=True):
            publication.send("audio", opus.packetize(packet.data), rtp_ts)
            publication.conn._pump()
            rtp_ts += samples
            sent += 1
            await asyncio.sleep(max(0.0, start + rtp_ts / opus.CLOCK_RATE - time.monotonic()))  # real-time pacing
        if not loop:
            return sent


async def stream_h264(
    publication: Publication, path: str, *, fps: float = 30, loop: bool = True, mtu: int = 1100
) -> int:
    """Publish an H.264 Annex-B file (``ffmpeg ... -f h264``) at ``fps`` access units per second on a
    publication made with ``video_codec="h264"``; returns access units sent (``loop=False``)."""
    if publication.video_codec != "h264" or "video" not in publication.tracks:
        raise RoomcastError("unsupported_codec", "publish(['video'], video_codec='h264') first")
    try:
        units = h264.read_annexb(await asyncio.to_thread(Path(path).read_bytes))
    except ParseError as exc:
        raise RoomcastError("bad_source", f"{path}: {exc}") from exc
    if not any(unit.keyframe for unit in units):
        raise RoomcastError("bad_source", f"{path} holds no IDR access unit to start decoding from")
    interval = 1 / fps
    sent = 0
    start = time.monotonic()
    while True:
        for unit in units:
            rtp_ts = round(sent * h264.CLOCK_RATE / fps)
            for payload, marker in h264.packetize(unit.nals, mtu):
                publication.send("video", payload, rtp_ts, marker=marker)
            publication.conn._pump()
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * interval - time.monotonic()))  # real-time pacing
        if not loop:
            return sent
