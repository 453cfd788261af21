"""Media quality as a Chromium page decodes it (``getStats()``), over a measured window: the figures the
interop matrix asserts (docs/interop.md): decoded frames per second, ``totalFreezesDuration``, packets
lost, audio energy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from playwright.async_api import Page

WINDOW = 10.0
WARMUP = 2.0

INBOUND = """async () => {
  const out = {};
  for (const s of await window.room.getStats()) {
    if (s.type !== 'inbound-rtp') continue;
    out[s.kind] = {frames: s.framesDecoded || 0, freezes: s.totalFreezesDuration || 0, lost: s.packetsLost || 0,
                   received: s.packetsReceived || 0, energy: s.totalAudioEnergy || 0, t: s.timestamp / 1000,
                   width: s.frameWidth || 0, nacks: s.nackCount || 0, plis: s.pliCount || 0,
                   freezeCount: s.freezeCount || 0, dropped: s.framesDropped || 0, keyframes: s.keyFramesDecoded || 0};
  }
  return out;
}"""


async def inbound(page: Page) -> dict[str, dict[str, Any]]:
    return dict(await page.evaluate(INBOUND))


async def measure(
    page: Page, window: float = WINDOW, source_frames: Callable[[], int] | None = None
) -> dict[str, dict[str, float]]:
    """Per kind, what changed over ``window`` seconds: fps, freezes (s), packets lost, audio energy.

    The window starts ``WARMUP`` seconds after the first decoded frame: steady state is measured, not
    the start (first keyframe, jitter buffer fill); packets lost count from the very start.
    ``source_frames``: the sender's frame counter, sampled at both ends: ``out["source"]["fps"]``."""
    await asyncio.sleep(WARMUP)  # a fixed part of the measurement, not a wait for an event
    sent, started = source_frames() if source_frames else 0, time.monotonic()
    before = await inbound(page)
    await asyncio.sleep(window)  # the measurement window itself, not a wait for an event
    after = await inbound(page)
    out: dict[str, dict[str, float]] = {}
    out["window"] = {"start": started, "end": time.monotonic()}  # time.monotonic(), as a sender's reports
    if source_frames is not None:
        out["source"] = {"fps": (source_frames() - sent) / (out["window"]["end"] - started)}
    for kind, a in after.items():
        b = before.get(kind, {"frames": 0, "freezes": 0, "lost": 0, "received": 0, "energy": 0, "t": a["t"] - window})
        seconds = a["t"] - b["t"]
        out[kind] = {
            "fps": (a["frames"] - b["frames"]) / seconds,
            "freezes": a["freezes"] - b["freezes"],
            "lost": a["lost"],
            "received": a["received"] - b["received"],
            "energy": a["energy"] - b["energy"],
            "width": a["width"],
            **{k: a[k] - b.get(k, 0) for k in ("nacks", "plis", "freezeCount", "dropped", "keyframes")},
        }
    return out


OUTBOUND = """async () => {
  const out = {};
  for (const s of await window.room.getStats()) {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.entries = (out.entries || 0) + 1;
      if ((s.framesEncoded || 0) >= (out.frames || 0)) {
        out.frames = s.framesEncoded || 0; out.t = s.timestamp / 1000; out.fps = s.framesPerSecond; out.rid = s.rid;
      }
    }
  }
  return out;
}"""
"""The sending page's most advanced video encoding (the highest simulcast layer): framesEncoded and the
stats timestamp (s), so a receiver's frame rate is compared with the rate the source really encoded."""


class FreezeMeter:
    """Freezes as Chromium's ``totalFreezesDuration`` counts them (webrtc-stats): a gap between decoded
    frames longer than max(3 x mean, mean + 150 ms) of the last 30 gaps; for receivers that are not a
    browser (aiortc; tests/interop/gst_peer.py has the same rule)."""

    def __init__(self) -> None:
        self.frames = 0
        self.total = 0.0
        self._last = 0.0
        self._gaps: list[float] = []

    def frame(self, now: float) -> None:
        if self._last:
            gap = now - self._last
            if len(self._gaps) == 30:
                mean = sum(self._gaps) / 30
                if gap > max(3 * mean, mean + 0.150):
                    self.total += gap
                self._gaps.pop(0)
            self._gaps.append(gap)
        self._last = now
        self.frames += 1
