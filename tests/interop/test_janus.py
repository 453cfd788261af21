"""Our client stack against an independent SFU: Janus VideoRoom (libnice ICE-lite, its own DTLS/SRTP).

The benchmark peer (bench/versus_janus.py) driven by the benchmark's own load for one second: our
publisher's packets must reach two subscribers through Janus, one of which decrypts and matches each
video payload's send counter. Janus needs a non-loopback interface for ICE, so the test adds ``jlo0``
(127.0.0.2) to its private namespace, as TESTING.md describes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.fanout import measure
from bench.versus_janus import JanusTarget

pytestmark = pytest.mark.skipif(shutil.which("janus") is None, reason="janus is not installed")


@pytest.fixture
def janus(jlo0: None, tmp_path: Path) -> Iterator[JanusTarget]:
    target = JanusTarget("janus", tmp_path, 0, (41000, 41999))
    try:
        target.janus.wait_ready()
        yield target
    finally:
        target.stop()


async def test_media_flows_from_our_publisher_through_janus_to_our_subscribers(janus: JanusTarget) -> None:
    result = await measure(janus, 2, 1.0)
    assert result.error == ""
    assert result.delivered_pps > 150  # ≈200 packets/s per subscriber are sent
    assert result.loss_pct < 5.0
    assert result.latency_p50_ms == result.latency_p50_ms  # not NaN: decrypted payloads matched sent ones
