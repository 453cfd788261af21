"""Scheduled time (issue 13 item 4): a router's periodic work runs when its ``poll_timeout()`` says, even when
no input arrives — a publisher that went quiet still gets its receiver reports on time."""

from __future__ import annotations

import asyncio
import itertools

from roomcast.rtc.schedule import RoomSchedule
from roomcast.sfu.router import REPORT_INTERVAL, SCHEDULED_TICK, Router
from roomcast.wire.rtcp import ReceiverReport, parse_compound
from roomcast.wire.rtp import RtpPacket
from tests.sfu.test_router_simnet import MEDIA_SSRC, PUB, SERVER_IN, FakeTransport, negotiated
from tests.support.simnet import SimNetwork


def _publisher(router: Router) -> tuple[FakeTransport, list[bytes]]:
    rtcp: list[bytes] = []
    transport = FakeTransport(SERVER_IN, PUB, SimNetwork(seed=1))
    transport.send_rtcp = lambda pkt: rtcp.append(bytes(pkt))  # type: ignore[method-assign]
    media = router.participant("a", "alice")
    router.attach_publisher(media, transport, negotiated("recvonly", remote=(MEDIA_SSRC,)), {})  # type: ignore[arg-type]
    return transport, rtcp


def _reports(rtcp: list[bytes]) -> int:
    return sum(1 for data in rtcp for p in parse_compound(data) if isinstance(p, ReceiverReport))


def test_a_router_without_media_has_no_deadline() -> None:
    assert Router("room").poll_timeout() is None


def test_receiver_reports_are_sent_on_time_with_no_input() -> None:
    """Fake clock: media until t = 0.5 s, then silence; stepping only by poll_timeout() still reports."""
    router = Router("room")
    transport, rtcp = _publisher(router)
    now = 0.0
    for seq in range(50):
        now = seq * 0.01
        transport.now = now
        transport.on_rtp(RtpPacket(96, seq, seq * 900, MEDIA_SSRC, b"x").serialize())  # type: ignore[operator]
        router.tick(now)
    before = _reports(rtcp)
    deadlines = []
    while now < 3.5:
        deadline = router.poll_timeout()
        assert deadline is not None
        deadlines.append(deadline)
        now = max(now, deadline)
        router.handle_timeout(now)
    assert _reports(rtcp) >= before + int(3.0 / REPORT_INTERVAL) - 1, "no receiver reports without input"
    gaps = [b - a for a, b in itertools.pairwise(deadlines)]
    assert gaps and max(gaps) <= SCHEDULED_TICK + 1e-9  # never waits longer than the scheduled tick


def test_room_schedule_fires_the_work_on_the_running_loop_and_stops_when_forgotten() -> None:
    router = Router("room")
    _publisher(router)
    fired: list[float] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        three = asyncio.Event()

        def work(r: Router, now: float) -> None:
            fired.append(now)
            r.tick(now)
            if len(fired) >= 3:
                three.set()

        schedule = RoomSchedule(work, loop.time)
        schedule.poke(router)
        assert len(schedule) == 1
        driver = schedule._drivers["room"]
        await asyncio.wait_for(three.wait(), 2.0)  # three timer firings with no input at all
        schedule.forget("room")
        assert len(schedule) == 0 and driver._handle is None, "a forgotten room's timer is still armed"

    asyncio.run(run())
    assert len(fired) >= 3 and fired == sorted(fired)


def test_without_a_running_loop_nothing_is_scheduled() -> None:
    schedule = RoomSchedule(lambda r, now: None, lambda: 0.0)
    schedule.poke(Router("room"))
    assert len(schedule) == 0
