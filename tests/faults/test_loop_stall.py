"""F13: the server's event loop stalls for 200 ms; it recovers, and the stall shows on ``/metrics``.

The stall is made from outside, without any debug hook in the server: SIGSTOP freezes the whole process
(its loop included) and SIGCONT lets it go 200 ms later, exactly what a handler hogging the CPU does to
the timers and sockets. The loop-lag probe (``roomcast.app.asgi.Metrics.measure_loop_lag``) must see it.
"""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from pathlib import Path

import httpx

from tests.faults.bots import counting_subscriber, metric, publisher, send_video, until
from tests.support.canary import Canaries
from tests.support.server import ServerProcess

STALL = 0.2
LAG = r"^roomcast_event_loop_lag_seconds ([0-9.e+-]+)"


def late_probes(server: ServerProcess) -> float:
    """Loop-lag probes that fired more than 150 ms late, from one scrape of the histogram."""
    text = httpx.get(server.base + "/metrics").text
    within = re.search(r'^roomcast_event_loop_delay_seconds_bucket\{le="0.15"\} ([0-9.e+]+)', text, re.M)
    total = re.search(r"^roomcast_event_loop_delay_seconds_count ([0-9.e+]+)", text, re.M)
    assert within and total, text
    return float(total.group(1)) - float(within.group(1))


async def test_stalled_loop_recovers_and_the_lag_is_exported(artifacts: Path, canaries: Canaries) -> None:
    server = ServerProcess(artifacts)
    try:
        canary = await canaries.sdk(server)  # O3: a call in another room, frozen with the rest
        room = "f13-" + uuid.uuid4().hex[:6]
        camera, publication = await publisher(server, room)
        viewer, counts = await counting_subscriber(server, room, "viewer")
        await send_video(publication, 20, 200)
        await until(lambda: sum(counts.values()) >= 18, 5, "media before the stall")
        await until(lambda: metric(server, LAG) < 0.05, 5, "a quiet loop before the stall")
        slow_before = late_probes(server)

        stalled_at = canary.mark()
        server.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(STALL)  # the fault itself: the process stays frozen this long
        server.proc.send_signal(signal.SIGCONT)

        await until(lambda: metric(server, LAG) >= STALL * 0.75, 3, "the stall on roomcast_event_loop_lag_seconds")
        lag, seen = metric(server, LAG), late_probes(server)
        assert seen > slow_before  # the histogram keeps it: a probe later than 150 ms
        print(f"\nF13: {STALL}s stall measured as {lag:.3f}s loop lag; probes later than 150 ms: {seen:.0f}")
        before = sum(counts.values())
        await send_video(publication, 20, 200, start=20)
        await until(lambda: sum(counts.values()) >= before + 18, 5, "media after the stall")
        assert httpx.get(server.base + "/healthz").status_code == 200
        await until(lambda: metric(server, LAG) < 0.05, 5, "the loop lag back to normal")
        canary.assert_flowed(since=stalled_at, max_gap=1.0)  # a 0.2 s stall, then the backlog flows
        await canary.assert_alive()
        for client in (camera, viewer):
            await client.close()
        await canary.close()
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log(), server.log()[-3000:]
