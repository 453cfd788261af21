"""L5 + L7 in CI: three minutes of steady calls with 20 join/leave rounds of 50 participants (with media)
spread over them (``bench/soak.py``, which runs 30 minutes by hand), against one real server.

Oracles: every one of the 1,000 joins succeeds and its subscribers receive video (join latency
p50/p95/p99 printed); a canary call in another room never stops (O3); at the end fds, threads, asyncio
tasks and every object the server counts are back to the baseline, and memory is flat over the second
half of the run: its highest RSS at most 4 MiB over the first half's (the allocator's warm-up is in the
first: by hand, 8 minutes and 2,500 joins reached 87 MiB in 95 s and stayed within 88-90 MiB; a leak of
8 KB per join adds 4 MiB over the second half's 500 joins) (O4, L7).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.soak import soak

from tests.support.canary import Canaries
from tests.support.server import ServerProcess

MINUTES, ROUNDS, ROUND_SIZE = 3.0, 20, 50
MAX_RISE_KIB = 4 * 1024


@pytest.mark.timeout(600)  # three minutes by design; the rounds may run late on a loaded machine
async def test_three_minute_soak_with_churn_is_flat_and_leaks_nothing(artifacts: Path, canaries: Canaries) -> None:
    server = ServerProcess(artifacts)
    try:
        canary = await canaries.sdk(server)
        start = canary.mark()
        result = await soak(server, minutes=MINUTES, calls=2, rounds=ROUNDS, round_size=ROUND_SIZE, every=5.0)
        gap = canary.assert_flowed(since=start, max_gap=1.5)
        await canary.assert_alive()
        first, last = result.samples[0], result.samples[-1]
        print(
            f"\nL5/L7: {result.joins} joins in {last['t']:.0f}s, {result.join_failures} failed; join latency p50 "
            f"{result.percentile(0.5) * 1000:.0f} ms, p95 {result.percentile(0.95) * 1000:.0f} ms, p99 "
            f"{result.percentile(0.99) * 1000:.0f} ms; RSS {first['rss_kib']:.0f} -> {last['rss_kib']:.0f} KiB, "
            f"second-half slope {result.rss_slope_kib_per_min:.0f} KiB/min, peak {result.second_half_rise_kib:+d} KiB "
            f"over the first half's; fds {first['fds']:.0f} -> "
            f"{last['fds']:.0f}, tasks {first['tasks']:.0f} -> {last['tasks']:.0f}; worst loop lag "
            f"{max(s['lag'] for s in result.samples) * 1000:.0f} ms; canary's longest gap {gap:.2f}s"
        )
        assert result.joins == ROUNDS * ROUND_SIZE and result.join_failures == 0, result.failures
        assert result.steady_packets > 0
        assert result.back_to_baseline == {}, result.back_to_baseline  # O4: fds, tasks, objects exact once all left
        assert result.second_half_rise_kib <= MAX_RISE_KIB, result.samples
        await canary.close()
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log(), server.log()[-3000:]
