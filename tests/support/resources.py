"""RELIABILITY O4 as resources: what a ``roomcast serve`` process holds, sampled before, during and after.

From ``/proc/<pid>``: open file descriptors, threads, resident memory and CPU time; from the server's
``/metrics``: asyncio tasks and its own object counts (``roomcast_objects{kind=...}``,
``roomcast.app.object_metrics``). :meth:`ResourceOracle.assert_back_to_baseline` polls (with a bound) until
every count is back where it started and memory is within a bound of it, and fails naming what is not.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.server import ServerProcess

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Caches with a hard bound of their own (not leaks): judged against the bound, not the baseline.
BOUNDED = {"endpoint_rate_buckets": 10_001}  # STUN rate buckets per source IP, pruned past 10,000 (runtime/udp.py)


@dataclass(frozen=True)
class Sample:
    at: float
    fds: int
    threads: int
    rss_kib: int
    cpu_seconds: float  # user + system time of the process so far
    tasks: int
    objects: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Everything that must return exactly to its baseline (memory is judged with a bound instead)."""
        exact = {k: v for k, v in self.objects.items() if k not in BOUNDED}
        return {"fds": self.fds, "threads": self.threads, "tasks": self.tasks, **exact}


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from ``/proc/<pid>/stat`` (fields 14 and 15; the name may hold spaces)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _status(pid: int) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: v.strip() for k, v in pairs}


def parse_objects(metrics_text: str) -> tuple[int, dict[str, int]]:
    tasks = re.search(r"^roomcast_asyncio_tasks ([0-9.e+]+)", metrics_text, re.M)
    objects = {
        m.group(1): int(float(m.group(2)))
        for m in re.finditer(r'^roomcast_objects\{kind="([^"]+)"\} ([0-9.e+]+)', metrics_text, re.M)
    }
    if tasks is None or not objects:
        raise AssertionError("the server's /metrics has no roomcast_asyncio_tasks / roomcast_objects")
    return int(float(tasks.group(1))), objects


def sample(server: ServerProcess) -> Sample:
    """One sample (a blocking ``/metrics`` scrape of a few milliseconds)."""
    pid = server.proc.pid
    status = _status(pid)
    tasks, objects = parse_objects(httpx.get(server.base + "/metrics", timeout=10).text)
    return Sample(
        at=time.monotonic(),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(status["Threads"]),
        rss_kib=int(status["VmRSS"].split()[0]),
        cpu_seconds=cpu_seconds(pid),
        tasks=tasks,
        objects=objects,
    )


def differences(baseline: Sample, now: Sample) -> dict[str, tuple[int, int]]:
    """Counts above the baseline, and bounded caches over their bound: name -> (baseline, now). Below the
    baseline is no leak: something the baseline caught in passing ended (a browser's keep-alive socket)."""
    before, after = baseline.counts(), now.counts()
    diff = {k: (before.get(k, 0), after.get(k, 0)) for k in sorted(set(before) | set(after))}
    over = {k: (bound, now.objects[k]) for k, bound in BOUNDED.items() if now.objects.get(k, 0) > bound}
    return {k: v for k, v in diff.items() if v[1] > v[0]} | over


class ResourceOracle:
    """Samples one server process; ``baseline()`` first, ``during()`` at will, then assert the return."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.samples: list[tuple[str, Sample]] = []
        self._baseline: Sample | None = None

    def take(self, label: str) -> Sample:
        s = sample(self.server)
        self.samples.append((label, s))
        return s

    def baseline(self, timeout: float = 5.0) -> Sample:
        """The first of two consecutive samples 0.2 s apart that agree (a connection of the previous
        test may still be closing)."""
        deadline = time.monotonic() + timeout
        first = sample(self.server)
        while True:
            time.sleep(0.2)  # settling: sampling until two agree, bounded
            second = sample(self.server)
            if first.counts() == second.counts() or time.monotonic() > deadline:
                break
            first = second
        self._baseline = first
        self.samples.append(("before", first))
        return first

    def during(self) -> Sample:
        return self.take("during")

    def peak(self, what: str) -> int:
        values = [s.counts().get(what, 0) if what != "rss_kib" else s.rss_kib for _, s in self.samples]
        return max(values, default=0)

    async def assert_back_to_baseline(self, *, rss_growth_kib: int, timeout: float = 15.0) -> Sample:
        """Poll until fds, threads, tasks and every object count are at most the baseline and RSS at most
        ``rss_growth_kib`` above it (the allocator keeps some memory; a leak keeps growing past any bound)."""
        assert self._baseline is not None, "take a baseline first"
        base = self._baseline
        deadline = time.monotonic() + timeout
        while True:
            now = await asyncio.to_thread(sample, self.server)
            diff = differences(base, now)
            grown = now.rss_kib - base.rss_kib
            if not diff and grown <= rss_growth_kib:
                self.samples.append(("after", now))
                return now
            if time.monotonic() > deadline:
                self.samples.append(("after", now))
                raise AssertionError(
                    f"not back to baseline within {timeout}s: {diff} (baseline, now); "
                    f"RSS +{grown} KiB (bound {rss_growth_kib}); samples: {self.report()}"
                )
            await asyncio.sleep(0.2)  # polling the process's state with a deadline

    def report(self) -> str:
        """One line per sample: label, fds, threads, tasks, RSS and the non-zero object counts."""
        lines = []
        for label, s in self.samples:
            nonzero = {k: v for k, v in s.objects.items() if v}
            lines.append(f"{label}: fds {s.fds} threads {s.threads} tasks {s.tasks} rss {s.rss_kib} KiB {nonzero}")
        return "\n".join(lines)
