"""L7 soak (and L5 churn inside it): a real server under steady calls and join/leave rounds for N minutes.

    python bench/soak.py --minutes 30                  # RELIABILITY L7; writes soak.json and soak.html
    python bench/soak.py --minutes 3 --rounds 20       # what tests/faults/test_soak.py runs in CI

Steady load: ``--calls`` rooms with one SDK publisher (30 frames/s) and two counting subscribers for the
whole run. Churn: ``--rounds`` rounds spread over the run, each a join storm of ``--round-size``
participants (rooms of one publisher and four subscribers that must all receive video, then leave).
Every ``--every`` seconds the server is sampled (``tests/support/resources.py``): RSS, fds, threads,
asyncio tasks, its object counts, CPU and loop lag from ``/metrics``. Reported: the RSS slope (least
squares over the second half of the run, KiB/min), fd and task growth, join latency percentiles and
the return to baseline once everyone left. Runs inside a private network namespace (loopback only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.signaling.wsclient import dev_token
from tests.support.resources import ResourceOracle, Sample
from tests.support.server import ServerProcess

from roomcast.sdk import connect
from roomcast.sdk.client import Room
from roomcast.tools.load_report import line_chart

SUBSCRIBERS_PER_ROOM = 4


@dataclass
class SoakResult:
    minutes: float
    samples: list[dict[str, float]] = field(default_factory=list)  # t, rss_kib, fds, tasks, threads, lag, cpu
    joins: int = 0
    join_failures: int = 0
    failures: list[str] = field(default_factory=list)  # why, per failed room
    latencies: list[float] = field(default_factory=list)
    steady_packets: int = 0
    rss_slope_kib_per_min: float = 0.0
    second_half_rise_kib: int = 0  # the second half's highest RSS above the first half's (warm-up excluded)
    fd_growth: int = 0
    task_growth: int = 0
    back_to_baseline: dict[str, tuple[int, int]] = field(default_factory=dict)  # what differs at the end

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    if len(points) < 2:
        return 0.0
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def loop_lag(server: ServerProcess) -> float:
    found = re.search(r"^roomcast_event_loop_lag_seconds ([0-9.e+-]+)", httpx.get(server.base + "/metrics").text, re.M)
    return float(found.group(1)) if found else float("nan")


async def steady_call(server: ServerProcess, room: str, counts: list[int], stop: asyncio.Event) -> list[Room]:
    camera = await connect(server.ws_base, dev_token(room, "camera"))
    publication = await camera.publish(["video"])
    viewers = []
    for i in range(2):
        viewer = await connect(server.ws_base, dev_token(room, f"viewer{i}", can_publish=False))
        deadline = time.monotonic() + 10
        while not viewer.tracks:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{room}: the steady call's track never announced")
            await asyncio.sleep(0.05)  # polling the track list with a deadline

        def on_packet(track_sid: str, pkt: bytes) -> None:
            counts[0] += 1

        await viewer.subscribe(on_packet, decrypt=False)
        viewers.append(viewer)

    async def send() -> None:
        seq, start = 0, time.monotonic()
        while not stop.is_set():
            publication.send("video", b"\x10" + bytes(300), seq * 3000, marker=True)
            seq += 1
            await asyncio.sleep(max(0.0, start + seq / 30 - time.monotonic()))  # 30 fps pacing

    asyncio.get_running_loop().create_task(send())
    return [camera, *viewers]


async def churn_room(server: ServerProcess, room: str, result: SoakResult) -> list[Room]:
    """One publisher and its subscribers join; returned once every subscriber received video. On a
    failure every client that did join leaves (the soak must not leak what the server is judged on)."""
    joined: list[Room] = []
    try:
        return await _churn_room(server, room, result, joined)
    except BaseException:
        for client in joined:
            with contextlib.suppress(Exception):
                await client.close()
        raise


async def _churn_room(server: ServerProcess, room: str, result: SoakResult, joined: list[Room]) -> list[Room]:
    begun = time.monotonic()
    camera = await connect(server.ws_base, dev_token(room, "camera"))
    joined.append(camera)
    publication = await camera.publish(["video"])
    result.latencies.append(time.monotonic() - begun)
    counts = [0] * SUBSCRIBERS_PER_ROOM

    async def subscriber(i: int) -> Room:
        start = time.monotonic()
        client = await connect(server.ws_base, dev_token(room, f"viewer{i}", can_publish=False))
        joined.append(client)
        await asyncio.wait_for(client.tracks_changed.wait(), 10)  # the publisher's track announced

        def on_packet(track_sid: str, pkt: bytes) -> None:
            counts[i] += 1

        await client.subscribe(on_packet, decrypt=False)
        result.latencies.append(time.monotonic() - start)
        return client

    viewers = await asyncio.wait_for(asyncio.gather(*(subscriber(i) for i in range(SUBSCRIBERS_PER_ROOM))), 30)
    seq, deadline = 0, time.monotonic() + 10
    while not all(counts):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{room}: subscribers got {counts}")
        publication.send("video", b"\x10" + bytes(200), seq * 3000, marker=True)
        seq += 1
        await asyncio.sleep(1 / 30)  # a 30 fps source's pacing
    return [camera, *viewers]


async def churn_round(server: ServerProcess, n: int, size: int, result: SoakResult) -> None:
    rooms = size // (SUBSCRIBERS_PER_ROOM + 1)
    tag = uuid.uuid4().hex[:4]
    outcomes = await asyncio.gather(
        *(churn_room(server, f"soak{n}-{tag}-{r}", result) for r in range(rooms)), return_exceptions=True
    )
    for outcome in outcomes:
        result.joins += SUBSCRIBERS_PER_ROOM + 1
        if isinstance(outcome, BaseException):
            result.join_failures += SUBSCRIBERS_PER_ROOM + 1
            result.failures.append(f"round {n}: {type(outcome).__name__}: {outcome}"[:300])
            continue
        for client in outcome:
            await client.close()


def record(result: SoakResult, start: float, s: Sample, lag: float) -> None:
    result.samples.append(
        {
            "t": s.at - start,
            "rss_kib": s.rss_kib,
            "fds": s.fds,
            "threads": s.threads,
            "tasks": s.tasks,
            "cpu": s.cpu_seconds,
            "lag": lag,
            "participants": s.objects.get("participants", 0),
        }
    )


async def soak(
    server: ServerProcess, *, minutes: float, calls: int, rounds: int, round_size: int, every: float
) -> SoakResult:
    """Run the soak against ``server``; returns the samples and figures (asserts nothing)."""
    result = SoakResult(minutes)
    oracle = ResourceOracle(server)
    oracle.baseline()
    stop = asyncio.Event()
    steady_counts = [0]
    steady = [
        await steady_call(server, f"steady-{i}-{uuid.uuid4().hex[:4]}", steady_counts, stop) for i in range(calls)
    ]
    start = time.monotonic()
    end = start + minutes * 60
    next_sample = start
    done_rounds = 0
    while time.monotonic() < end or done_rounds < rounds:
        now = time.monotonic()
        if now >= next_sample:
            record(result, start, await asyncio.to_thread(oracle.during), await asyncio.to_thread(loop_lag, server))
            next_sample = now + every
        due = done_rounds < rounds and now - start >= done_rounds * (minutes * 60 / max(rounds, 1))
        if due:
            await churn_round(server, done_rounds, round_size, result)
            done_rounds += 1
            print(f"round {done_rounds}/{rounds} at {time.monotonic() - start:.0f}s", file=sys.stderr, flush=True)
        else:
            await asyncio.sleep(min(1.0, max(0.05, next_sample - time.monotonic())))  # waiting for the next tick
    steady_participants = result.samples[0]["participants"]
    deadline = time.monotonic() + 15
    while True:  # the last round's departures processed: compare like with like
        last = await asyncio.to_thread(oracle.during)
        if last.objects.get("participants") == steady_participants or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)  # polling the server's participant count with a deadline
    record(result, start, last, await asyncio.to_thread(loop_lag, server))
    result.steady_packets = steady_counts[0]
    stop.set()
    for clients in steady:
        for client in clients:
            await client.close()
    second_half = [(s["t"] / 60, s["rss_kib"]) for s in result.samples if s["t"] >= result.samples[-1]["t"] / 2]
    result.rss_slope_kib_per_min = slope(second_half)
    middle = result.samples[-1]["t"] / 2
    first_peak = max(s["rss_kib"] for s in result.samples if s["t"] < middle)
    result.second_half_rise_kib = int(max(s["rss_kib"] for s in result.samples if s["t"] >= middle) - first_peak)
    first, last = result.samples[0], result.samples[-1]
    result.fd_growth, result.task_growth = int(last["fds"] - first["fds"]), int(last["tasks"] - first["tasks"])
    try:
        await oracle.assert_back_to_baseline(rss_growth_kib=1 << 30)  # counts only; memory is judged by the slope
    except AssertionError:
        from tests.support.resources import differences, sample

        result.back_to_baseline = differences(oracle.samples[0][1], sample(server))
    return result


def write_html(result: SoakResult, path: Path) -> None:
    ts = [s["t"] / 60 for s in result.samples]
    charts = [
        line_chart("Server RSS", ts, [s["rss_kib"] / 1024 for s in result.samples], "minutes", "MiB"),
        line_chart("Open file descriptors", ts, [s["fds"] for s in result.samples], "minutes", "fds"),
        line_chart("asyncio tasks", ts, [s["tasks"] for s in result.samples], "minutes", "tasks"),
        line_chart("Event-loop lag", ts, [s["lag"] * 1000 for s in result.samples], "minutes", "ms"),
    ]
    path.write_text(f"<!doctype html><meta charset=utf-8><title>Roomcast soak</title>{''.join(charts)}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--calls", type=int, default=4, help="steady rooms (1 publisher, 2 subscribers each)")
    parser.add_argument("--rounds", type=int, default=60, help="join/leave rounds spread over the run")
    parser.add_argument("--round-size", type=int, default=50, help="participants per round")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=Path("soak"), help="writes OUT.json and OUT.html")
    args = parser.parse_args()
    server = ServerProcess(Path(tempfile.mkdtemp(prefix="roomcast-soak-")))
    try:
        result = await soak(
            server,
            minutes=args.minutes,
            calls=args.calls,
            rounds=args.rounds,
            round_size=args.round_size,
            every=args.every,
        )
    finally:
        server.stop()
    args.out.with_suffix(".json").write_text(json.dumps(asdict(result), indent=1))
    write_html(result, args.out.with_suffix(".html"))
    first, last = result.samples[0], result.samples[-1]
    print(
        f"soak {result.minutes:g} min: {result.joins} joins ({result.join_failures} failed), join latency p50 "
        f"{result.percentile(0.5) * 1000:.0f} ms p95 {result.percentile(0.95) * 1000:.0f} ms p99 "
        f"{result.percentile(0.99) * 1000:.0f} ms; RSS {first['rss_kib'] / 1024:.1f} -> "
        f"{last['rss_kib'] / 1024:.1f} MiB, "
        f"slope over the second half {result.rss_slope_kib_per_min:.0f} KiB/min, its peak "
        f"{result.second_half_rise_kib:+d} KiB over the first half's; fds {first['fds']:.0f} -> "
        f"{last['fds']:.0f}, tasks {first['tasks']:.0f} -> {last['tasks']:.0f}; worst loop lag "
        f"{max(s['lag'] for s in result.samples) * 1000:.0f} ms; steady calls received {result.steady_packets} "
        f"packets; not back to baseline: {result.back_to_baseline or 'nothing'}"
    )
    for failure in result.failures:
        print(failure)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
