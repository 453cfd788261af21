"""B2/B3/B6 from an authenticated peer: it completed ICE and DTLS and holds the SRTP keys, then misbehaves.

Each case runs against one real server while an SDK canary call plays in another room, and asserts:
its own drop counter grew by what was sent (a delta for this case: the kernel's receive-buffer drops
in this namespace are the only allowance), O3 the canary never stopped, O5 the server's CPU time per
bad packet (``/proc/<pid>/stat``, a generous sanity bound, not a benchmark), and O2 no log flood (the
server's own log lines per second of the case). The last test: with the attacker gone, the server's
resources are back to the baseline (O4). Figures print with ``-s``.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from roomcast.proto.sctp import ChannelOpened
from roomcast.proto.webrtc import MAX_INBOUND_SSRCS, RTCP_BURST, RTCP_RATE
from roomcast.wire import dcep
from roomcast.wire.rtcp import Pli, ReceiverReport
from tests.support.attacker import Attacker, Step, media_counters, paced, rtp_header
from tests.support.canary import Canaries, SdkCanary
from tests.support.resources import ResourceOracle
from tests.support.server import ServerProcess

CPU_PER_PACKET = 0.0005  # 500 µs: ten times what a Python parse, an HMAC and a counter cost here
CPU_TICKS = 0.02  # two clock ticks of /proc/<pid>/stat: its resolution
LOG_LINES_PER_SECOND = 2.0
SERVER_SSRC = 1
IDLE = {"rr_sent", "ice_checks", "sr_forwarded", "pli_sent"}  # counters an idle call moves by itself
KEYFRAME_INTERVAL = 0.5  # RELIABILITY B3: keyframe requests upstream at most one per 500 ms per track


@dataclass
class Scene:
    server: ServerProcess
    canary: SdkCanary
    attacker: Attacker
    oracle: ResourceOracle
    idle_cpu: float  # server CPU seconds per second with the calls running and nobody attacking


@pytest.fixture(scope="module")
def attack_server(artifacts: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(artifacts)
    yield proc
    assert proc.stop() == 0 and "Traceback" not in proc.log(), proc.log()[-3000:]


@pytest.fixture(scope="module")
async def scene(attack_server: ServerProcess) -> AsyncIterator[Scene]:
    canaries = Canaries()
    canary = await canaries.sdk(attack_server)
    oracle = ResourceOracle(attack_server)
    oracle.baseline()  # the canary alone
    attacker = await Attacker.open(attack_server)
    attacker.media(50)
    for _ in range(100):  # bounded: the honest path works before it is abused
        if attacker.received >= 40:
            break
        await asyncio.sleep(0.05)
    assert attacker.received >= 40 and attacker.consumer_ssrcs
    idle = Step(attack_server).start()
    for _ in range(4):  # what the canary, the idle attacker and our scrapes cost over about 1.5 s
        await settled(attack_server)
    idle.stop()
    yield Scene(attack_server, canary, attacker, oracle, idle.cpu / idle.seconds)
    await attacker.close()
    await canaries.close()


Send = Callable[[Attacker], Awaitable[int]]


async def settled(server: ServerProcess, timeout: float = 15.0) -> None:
    """Until the server has read what was sent: its counters stop changing between two scrapes 0.3 s
    apart (a server still busy with a backlog keeps counting; the step's CPU and canary include it)."""
    last = await asyncio.to_thread(media_counters, server)
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.3)  # the quiet interval that says the backlog is read
        now = await asyncio.to_thread(media_counters, server)
        if {k: v for k, v in now.items() if k not in IDLE} == {k: v for k, v in last.items() if k not in IDLE}:
            return
        last = now
    raise AssertionError(f"the server's counters still moving after {timeout}s")


async def run_case(scene: Scene, send: Send) -> tuple[Step, int]:
    """Run one attack step; its CPU is what the server spent beyond its idle rate."""
    step = Step(scene.server).start()
    since = scene.canary.mark()
    sent = await send(scene.attacker)
    await settled(scene.server)
    step.stop()
    step.cpu = max(0.0, step.cpu - scene.idle_cpu * step.seconds)
    print(f"\ncanary: longest gap {scene.canary.gaps(since):.2f}s; server CPU {step.cpu:.2f}s in {step.seconds:.2f}s")
    scene.canary.assert_flowed(since=since, max_gap=1.0)  # O3 during
    await scene.canary.assert_alive(10)  # O3 after
    assert scene.server.alive()
    return step, sent


def judge(step: Step, sent: int, counter: str, name: str, *, expect_all: bool = True) -> None:
    """``counter``: one name, or names joined by "+" (the first must grow; together they count all)."""
    names = counter.split("+")
    got = sum(step.delta.get(n, 0) for n in names)
    per_packet = step.cpu / max(sent, 1)
    print(
        f"\n{name}: sent {sent}, {counter} +{got:.0f} (kernel dropped {step.kernel_dropped}), "
        f"server CPU {step.cpu * 1000:.0f} ms = {per_packet * 1e6:.0f} µs per packet, "
        f"{len(step.new_log_lines)} log lines in {step.seconds:.1f}s; other deltas {step.delta}"
    )
    assert step.delta.get(names[0], 0) > 0, (names[0], step.delta)
    if expect_all:
        assert got >= sent - step.kernel_dropped, (counter, got, sent, step.delta)
    else:
        assert got > 0, (counter, step.delta)
    assert step.cpu <= sent * CPU_PER_PACKET + CPU_TICKS, per_packet  # O5 (/proc counts in 10 ms ticks)
    assert step.log_rate() <= LOG_LINES_PER_SECOND, step.new_log_lines[:20]  # O2


def flipped_tag(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


async def replayed_srtp(a: Attacker) -> int:
    """Packets the publisher really sent (the server accepted them once), sent again as they were."""
    assert len(a.sent) >= 40
    return await paced(a.raw(a.pub, [d]) for d in a.sent[:40] * 25)


async def bad_auth_tags(a: Attacker) -> int:
    srtp = a.pub.rtc.srtp
    assert srtp is not None
    def bad() -> bytes:
        return flipped_tag(srtp.protect(rtp_header(a.video_ssrc, a.next_seq()) + b"\x10" + bytes(100)))

    return await paced(a.raw(a.pub, [bad()]) for _ in range(1000))


async def bad_srtcp_tags(a: Attacker) -> int:
    srtp = a.pub.rtc.srtp
    assert srtp is not None
    rr = ReceiverReport(a.video_ssrc, ()).serialize()
    return await paced(a.raw(a.pub, [flipped_tag(srtp.protect_rtcp(rr))]) for _ in range(300))


async def lying_csrc_count(a: Attacker) -> int:
    """A real SRTP packet whose header then claims 15 CSRCs it does not have (the header is authenticated)."""
    srtp = a.pub.rtc.srtp
    assert srtp is not None

    def lie() -> bytes:
        data = bytearray(srtp.protect(rtp_header(a.video_ssrc, a.next_seq()) + b"\x10" + bytes(20)))
        data[0] |= 0x0F
        return bytes(data)

    return await paced(a.raw(a.pub, [lie()]) for _ in range(1000))


async def unknown_ssrcs(a: Attacker) -> int:
    """Valid SRTP on 100 SSRCs the offer never announced (known payload type, the track already bound)."""
    ssrcs = [int.from_bytes(os.urandom(4), "big") | 1 for _ in range(100)]
    return await paced(a.rtp([rtp_header(s, n) + b"\x10" + bytes(50)]) for n in range(1, 11) for s in ssrcs)


async def ssrc_flood(a: Attacker) -> int:
    """1,000 more new SSRCs: past MAX_INBOUND_SSRCS none gets a libsrtp stream (each would slow every
    packet of the transport: libsrtp finds streams by walking a list)."""
    ssrcs = [int.from_bytes(os.urandom(4), "big") | 1 for _ in range(1000)]
    return await paced(a.rtp([rtp_header(s, 1) + b"\x10" + bytes(50)]) for s in ssrcs)


async def padding_past_payload(a: Attacker) -> int:
    """Valid SRTP of RTP whose padding count (last byte, P bit set) is longer than the payload."""
    pkts = (rtp_header(a.video_ssrc, a.next_seq(), first=0xA0) + b"\x10" + bytes(10) + b"\xff" for _ in range(1000))
    return await paced(a.rtp([p]) for p in pkts)


def lying_rtcp(ssrc: int) -> bytes:
    """A receiver report from ``ssrc`` whose length field claims 200 words; 8 bytes follow."""
    return struct.pack("!BBHI", 0x81, 201, 200, ssrc) + bytes(4)


# RTCP volumes stay within the transports' RTCP byte budget (RTCP_BURST, RTCP_RATE in proto/webrtc.py):
# each case's own counter must see every packet. The storm test below goes past it on purpose.
async def publisher_lying_rtcp(a: Attacker) -> int:
    return await paced(a.rtcp(a.pub, [lying_rtcp(a.video_ssrc)]) for _ in range(300))


async def subscriber_lying_rtcp(a: Attacker) -> int:
    return await paced(a.rtcp(a.sub, [lying_rtcp(1)]) for _ in range(300))


def nack(media_ssrc: int, items: int) -> bytes:
    """A generic NACK (RFC 4585 §6.2.1) of ``items`` PID/BLP pairs, each asking 17 sequence numbers."""
    fci = b"".join(struct.pack("!HH", (i * 17) & 0xFFFF, 0xFFFF) for i in range(items))
    return struct.pack("!BBHII", 0x81, 205, 2 + items, 1, media_ssrc) + fci


async def nacks_past_the_cap(a: Attacker) -> int:
    ssrc = a.media_ssrc
    return await paced(a.rtcp(a.sub, [nack(ssrc, 300)]) for _ in range(20))


def twcc_claiming(count: int) -> bytes:
    """transport-cc feedback (FMT 15) claiming ``count`` packet statuses, with one run-length chunk."""
    body = struct.pack("!HHI", 0, count, 0) + struct.pack("!H", 0x2000 | (count & 0x1FFF))
    return struct.pack("!BBHII", 0x8F, 205, 2 + len(body) // 4, 1, 0) + body


async def twcc_past_the_cap(a: Attacker) -> int:
    return await paced(a.rtcp(a.sub, [twcc_claiming(65535)]) for _ in range(300))


CASES: dict[str, tuple[Send, str]] = {
    "B2 replayed SRTP": (replayed_srtp, "srtp_unprotect_failed"),
    "B2 bad SRTP auth tags": (bad_auth_tags, "srtp_unprotect_failed"),
    "B2 bad SRTCP auth tags": (bad_srtcp_tags, "srtp_unprotect_failed"),
    "B2 CSRC count past the end": (lying_csrc_count, "srtp_unprotect_failed"),
    "B2 unknown SSRCs": (unknown_ssrcs, "unknown_ssrc"),
    "B2 1,000 more SSRCs (libsrtp streams)": (ssrc_flood, "srtp_ssrc_limit+unknown_ssrc"),
    "B2 padding longer than the payload": (padding_past_payload, "rtp_malformed"),
    "B3 publisher RTCP length lies": (publisher_lying_rtcp, "rtcp_malformed"),
    "B3 subscriber RTCP length lies": (subscriber_lying_rtcp, "rtcp_malformed"),
    "B3 NACKs past the 256-item cap": (nacks_past_the_cap, "rtcp_malformed"),
    "B3 TWCC claiming 65,535 packets": (twcc_past_the_cap, "rtcp_malformed"),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_bad_media_after_srtp_is_dropped_and_counted(scene: Scene, name: str) -> None:
    send, counter = CASES[name]
    step, sent = await run_case(scene, send)
    judge(step, sent, counter, name)
    if send is ssrc_flood:  # at most MAX_INBOUND_SSRCS streams in all, whatever the attacker tries
        assert step.delta.get("srtp_ssrc_limit", 0) >= sent - MAX_INBOUND_SSRCS - step.kernel_dropped


async def test_nack_storm_within_the_cap_costs_a_bounded_share_of_the_server(scene: Scene) -> None:
    """2,000 NACKs of 256 items (4,352 sequence numbers each, 2 MB) as fast as the server reads them.
    Each costs the server about a millisecond; before the RTCP byte budget this storm took the event
    loop whole (the canary stopped). Now what passes the budget is parsed and counted (nack_received),
    the rest is dropped unread (rtcp_rate_limited), and the server spends at most a third of a core."""
    a = scene.attacker
    ssrc = a.media_ssrc
    storm = nack(ssrc, 256)
    step, sent = await run_case(scene, lambda a: paced(a.rtcp(a.sub, [storm]) for _ in range(2000)))
    judge(step, sent, "rtcp_rate_limited", "B3 NACK storm (256 items)", expect_all=False)
    handled = step.delta.get("nack_received", 0) + step.delta.get("rtcp_rate_limited", 0)
    assert handled >= sent - step.kernel_dropped, step.delta
    budget = (RTCP_BURST + RTCP_RATE * step.seconds) / len(storm)  # what the budget lets through
    assert step.delta.get("nack_received", 0) <= budget + 1, (step.delta, budget)
    assert step.cpu / step.seconds <= 0.34, (step.cpu, step.seconds)  # O5: a bounded share of one core


async def test_pli_storm_asks_the_publisher_for_at_most_one_keyframe_per_interval(scene: Scene) -> None:
    """B3: 1,000 PLIs from the subscriber in about 0.2 s; upstream at most one per KEYFRAME_INTERVAL."""
    a = scene.attacker
    ssrc = a.media_ssrc
    before = a.publication.keyframe_requests
    pli = Pli(SERVER_SSRC, ssrc).serialize()
    step, sent = await run_case(scene, lambda a: paced(a.rtcp(a.sub, [pli]) for _ in range(1000)))
    upstream = a.publication.keyframe_requests - before
    judge(step, sent, "pli_throttled", "B3 PLI storm", expect_all=False)
    allowed = step.seconds / KEYFRAME_INTERVAL + 2
    print(f"PLI storm: {upstream} keyframe requests reached the publisher in {step.seconds:.1f}s")
    assert upstream <= allowed, (upstream, allowed)
    assert step.delta.get("pli_throttled", 0) >= sent - step.kernel_dropped - allowed


async def test_sctp_and_dcep_abuse_is_refused_and_counted(scene: Scene) -> None:
    """B6 on the ``$data`` association: 200 DCEP OPENs (a stream flood), malformed DCEP, SCTP garbage."""
    a = scene.attacker
    await a.publisher.connect_data(lambda header, payload: None)
    conn = a.publisher._data  # type: ignore[attr-defined]
    sctp = conn.rtc.sctp
    assert sctp is not None
    opened: list[int] = []
    conn.on_sctp = lambda e: opened.append(e.stream_id) if isinstance(e, ChannelOpened) else None

    async def flood(a: Attacker) -> int:
        loop = asyncio.get_running_loop()

        def one(stream: int) -> None:
            sctp.open_channel(stream, "_roomcast", now=loop.time())
            conn.rtc._drain_sctp()
            conn._pump()

        return await paced((one(s) for s in range(4, 404, 2)), 10, 0.01)

    step, sent = await run_case(scene, flood)
    judge(step, sent, "sctp_channel_refused", "B6 DCEP OPEN flood (200 streams)")
    assert not opened  # none of them was acknowledged

    async def bad_dcep(a: Attacker) -> int:
        def one(stream: int) -> None:
            sctp._enqueue(stream, b"\x03" + bytes(3), dcep.PPID_DCEP, ordered=True, max_retransmits=None, lifetime=None)
            sctp._flush(asyncio.get_running_loop().time())
            conn.rtc._drain_sctp()
            conn._pump()

        return await paced((one(s) for s in range(500, 700, 2)), 10, 0.01)

    step, sent = await run_case(scene, bad_dcep)
    judge(step, sent, "sctp_bad_dcep", "B6 malformed DCEP OPENs", expect_all=False)

    async def garbage(a: Attacker) -> int:
        def one(i: int) -> None:
            conn.rtc.send_data(os.urandom(8) + bytes([i % 256]) * 40)  # DTLS application data, not SCTP
            conn._pump()

        return await paced((one(i) for i in range(500)), 10, 0.01)

    step, sent = await run_case(scene, garbage)
    judge(step, sent, "sctp_malformed+sctp_bad_vtag", "B6 SCTP garbage (random bytes as SCTP packets)")


async def test_after_the_attacks_resources_return_to_the_baseline(scene: Scene) -> None:
    """O4: the attacker leaves; tasks, fds, threads and the server's objects are back where the canary
    alone had them, and memory within 16 MiB of it."""
    await scene.attacker.close()
    after = await scene.oracle.assert_back_to_baseline(rss_growth_kib=16 * 1024)
    print(f"\nO4 after the attacks: {scene.oracle.report()}")
    assert after.fds == scene.oracle.samples[0][1].fds
    await scene.canary.assert_alive(10)
