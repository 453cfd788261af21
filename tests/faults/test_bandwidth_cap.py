"""F7: one subscriber's downlink is capped far below the stream (500 kbit/s for a 2 Mbit/s publisher).

The SFU sends each packet as it arrives (no per-subscriber queue of its own: a full path drops in the
kernel's bottleneck), so what must hold is: nothing queues up in the server (its memory stays flat, its
UDP socket's send queue stays empty), the capped subscriber gets about what its cap lets through, a
second, uncapped subscriber of the same track gets everything, and a canary call in another room never
notices. The layer drop under a cap, with simulcast and a browser's estimate, is F14
(``tests/e2e/test_adaptive.py``).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.bots import counting_subscriber, publisher, send_video, until
from tests.support.bandwidth_cap import BandwidthCap
from tests.support.canary import Canaries
from tests.support.resources import ResourceOracle
from tests.support.server import ServerProcess

CAP_KBIT, RATE, PACKETS = 500, 250.0, 2000  # 2 Mbit/s of 1,000-byte packets for 8 s
SIOCOUTQ = 0x5411


@pytest.fixture
def bandwidth_cap() -> Iterator[BandwidthCap]:
    cap = BandwidthCap()
    try:
        yield cap
    finally:
        cap.lift()


def send_buffered(server: ServerProcess) -> int:
    """What the server's media socket holds in user space because the kernel would not take it."""
    text = httpx.get(server.base + "/metrics").text
    found = re.search(r"^roomcast_media_send_buffered_bytes ([0-9.e+]+)", text, re.M)
    assert found is not None
    return int(float(found.group(1)))


def udp_send_queue(pid: int, port: int) -> int:
    """Bytes waiting in the send queue of the server's UDP socket on ``port`` (from /proc/net/udp)."""
    for line in Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            return int(fields[4].split(":")[0], 16)
    raise AssertionError(f"no UDP socket on port {port}")


async def test_a_capped_subscriber_builds_no_queue_in_the_server(
    server: ServerProcess, canaries: Canaries, bandwidth_cap: BandwidthCap
) -> None:
    canary = await canaries.sdk(server)
    oracle = ResourceOracle(server)
    oracle.baseline()  # the canary alone
    room = "f7-" + uuid.uuid4().hex[:6]
    camera, publication = await publisher(server, room)
    capped, capped_counts = await counting_subscriber(server, room, "capped")
    free, free_counts = await counting_subscriber(server, room, "free")
    await send_video(publication, 20, RATE)
    await until(lambda: sum(capped_counts.values()) >= 18 and sum(free_counts.values()) >= 18, 5, "both receiving")
    conn = capped.connections[-1]
    assert conn.udp is not None
    port = conn.udp.get_extra_info("sockname")[1]
    before = oracle.during()
    start_capped, start_free = sum(capped_counts.values()), sum(free_counts.values())
    bandwidth_cap.cap(port, CAP_KBIT)
    capped_from = canary.mark()
    queue_peak = buffered_peak = 0

    async def watch_queue() -> None:
        nonlocal queue_peak, buffered_peak
        while True:
            queue_peak = max(queue_peak, udp_send_queue(server.proc.pid, server.media_port))
            buffered_peak = max(buffered_peak, await asyncio.to_thread(send_buffered, server))
            await asyncio.sleep(0.1)  # sampling period

    watcher = asyncio.create_task(watch_queue())
    began = time.monotonic()
    try:
        await send_video(publication, PACKETS, RATE, start=20)
        seconds = time.monotonic() - began
        oracle.during()
        await until(lambda: sum(free_counts.values()) - start_free >= PACKETS, 5, "the free subscriber getting all")
    finally:
        watcher.cancel()
    dropped, crossed = bandwidth_cap.dropped(), bandwidth_cap.sent_bytes()
    bandwidth_cap.lift()
    got_capped = sum(capped_counts.values()) - start_capped
    got_free = sum(free_counts.values()) - start_free
    fits = CAP_KBIT * 1000 / 8 * seconds / (1000 + 28 + 16 + 12)  # packets the cap lets through (IP/UDP/SRTP)
    during = oracle.samples[-1][1]
    grown = during.rss_kib - before.rss_kib
    print(
        f"\nF7: cap {CAP_KBIT} kbit/s under 2 Mbit/s: capped got {got_capped} of {PACKETS} (the cap fits ~{fits:.0f}), "
        f"free got {got_free}; bottleneck dropped {dropped}, passed {crossed} bytes; server send queue peak "
        f"{queue_peak} bytes in the kernel, {buffered_peak} in user space; RSS +{grown} KiB over the overload"
    )
    assert got_free >= PACKETS  # the other subscriber of the same track is unaffected
    assert dropped > 0 and got_capped < 0.8 * got_free  # the cap was real
    assert got_capped >= 0.7 * fits  # the capped path is used up to its capacity, not starved
    # nothing waits in the server for the slow path: the kernel's queue for the socket is the bottleneck's
    # own (its packets are charged to the socket until sent), and nothing was left to buffer in user space
    assert buffered_peak == 0 and queue_peak <= 256 * 1024, (buffered_peak, queue_peak)
    assert grown <= 8 * 1024  # no runaway memory
    canary.assert_flowed(since=capped_from, max_gap=1.0)
    await canary.assert_alive()
    for client in (camera, capped, free):
        await client.close()
    await oracle.assert_back_to_baseline(rss_growth_kib=8 * 1024)
