"""``roomcast load``: real bots (our SDK: ICE, DTLS, SRTP) against a running server, with a report.

    roomcast load --url http://127.0.0.1:7880 --rooms 2 --video-publishers 1 --subscribers 5 --duration 20
    roomcast load --preset L4 --subscribers 100

Publishers send synthetic RTP at the chosen resolution's bitrate; subscribers count packets from the
clear RTP header (no decryption, no decoding), so one bot process can play many participants. Measured:
join success and latency, join → first video packet ("first frame"), loss, freezes (no video for
> 500 ms), added latency (a video packet's send time at its publisher bot to its arrival at each
subscriber bot, one clock: a fresh subscription keeps the publisher's sequence numbers), forwarded
packets/s and server CPU/memory from ``/metrics``. Output: a table, ``report.json``
and ``report.html`` (plots as inline SVG). Loopback or namespace addresses only: the URL is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import os
import re
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from roomcast.sdk import RoomcastError, connect
from roomcast.tools.load_report import write_report

BITRATES = {"360p": 600_000, "720p": 1_500_000, "1080p": 3_000_000}
PRESETS: dict[str, dict[str, Any]] = {
    "L1": {"rooms": 100, "video_publishers": 1, "audio_publishers": 0, "subscribers": 1, "help": "many small rooms"},
    "L2": {"rooms": 1, "video_publishers": 10, "audio_publishers": 0, "subscribers": 10, "help": "video conference"},
    "L3": {"rooms": 1, "video_publishers": 0, "audio_publishers": 50, "subscribers": 200, "help": "audio only"},
    "L4": {"rooms": 1, "video_publishers": 1, "audio_publishers": 1, "subscribers": 100, "help": "livestream"},
    "L5": {"rooms": 10, "video_publishers": 1, "audio_publishers": 0, "subscribers": 10, "help": "join storm"},
    "L6": {"rooms": 1, "video_publishers": 1, "audio_publishers": 0, "subscribers": 60, "help": "over capacity"},
}
FREEZE = 0.5
MAX_LATENCY_SAMPLES = 50_000


@dataclass
class SubscriberStats:
    room: str
    identity: str
    join_ms: float | None = None
    first_frame_ms: float | None = None
    packets: int = 0
    video_packets: int = 0
    freezes: int = 0
    freeze_times: list[float] = field(default_factory=list)
    last_video: float | None = None
    error: str | None = None


@dataclass
class LoadResult:
    config: dict[str, Any]
    subscribers: list[SubscriberStats]
    publishers_sent: dict[str, int]
    samples: list[dict[str, float]]
    refused: dict[str, int]
    duration: float
    latency_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        joined = [s for s in self.subscribers if s.join_ms is not None]
        joins = sorted(s.join_ms for s in joined if s.join_ms is not None)
        ttff = sorted(s.first_frame_ms for s in joined if s.first_frame_ms is not None)
        expected = sum(self.publishers_sent.get(s.room, 0) for s in joined)
        received = sum(s.packets for s in joined)
        pps = [x["forwarded_pps"] for x in self.samples if "forwarded_pps" in x]
        cpu = [x["server_cpu_pct"] for x in self.samples if "server_cpu_pct" in x]
        mem = [x["server_rss_mb"] for x in self.samples if "server_rss_mb" in x]
        return {
            "participants_attempted": len(self.subscribers),
            "join_success_rate": len(joined) / len(self.subscribers) if self.subscribers else 1.0,
            "join_ms": _percentiles(joins),
            "first_frame_ms": _percentiles(ttff),
            "added_latency_ms": _percentiles(sorted(self.latency_ms)),
            "loss_pct": 100 * max(0, expected - received) / expected if expected else 0.0,
            "freezes": sum(s.freezes for s in joined),
            "forwarded_pps_mean": sum(pps) / len(pps) if pps else 0.0,
            "server_cpu_pct_mean": sum(cpu) / len(cpu) if cpu else None,
            "server_rss_mb_max": max(mem) if mem else None,
            "refused": dict(self.refused),
        }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}

    def pick(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}


def check_local(url: str) -> None:
    """The network rule: load goes to loopback or private (namespace) addresses only."""
    host = urllib.parse.urlparse(url).hostname or ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"refusing to load {host!r}: give a loopback or private IP address") from None
        return
    if not (ip.is_loopback or ip.is_private):
        raise ValueError(f"refusing to load {host}: only loopback or private (namespace) addresses")


async def mint(client: httpx.AsyncClient, room: str, identity: str, publish: bool) -> str:
    res = await client.post("/api/tokens", json={"room": room, "identity": identity, "can_publish": publish})
    res.raise_for_status()
    return str(res.json()["token"])


async def scrape(client: httpx.AsyncClient) -> dict[str, float]:
    """The server's counters, summed over every node of its cluster (``/api/nodes``, then each node's
    ``/metrics?node=``: workers share a port), or its one ``/metrics``."""
    try:
        nodes = [str(n["id"]) for n in (await client.get("/api/nodes")).json()["nodes"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        nodes = []
    texts = [(await client.get("/metrics", params={"node": n})).text for n in nodes] or [
        (await client.get("/metrics")).text
    ]
    out: dict[str, float] = {}
    for text in texts:
        for name in (
            "roomcast_media_forwarded_packets_total",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
        ):
            match = re.search(rf"^{name} ([0-9.e+]+)", text, re.M)
            if match:
                out[name] = out.get(name, 0.0) + float(match.group(1))
    return out


async def run_load(args: argparse.Namespace, console: Console) -> LoadResult:
    urls: list[str] = args.url if isinstance(args.url, list) else [args.url]
    for url in urls:
        check_local(url)
    ws_urls = [url.replace("http", "ws", 1) for url in urls]
    joins = itertools.count()

    def ws_url() -> str:
        """Bots join through each URL in turn (the nodes of a cluster: rooms are relayed to their node)."""
        return ws_urls[next(joins) % len(ws_urls)]

    bitrate = BITRATES[args.video_resolution]
    video_pps = max(1, bitrate // (8 * 1200))
    auth = (args.api_key, args.api_secret)
    client = httpx.AsyncClient(base_url=urls[0], auth=auth, timeout=10)
    rooms = [f"load-{os.getpid()}-{i}" for i in range(args.rooms)]
    publishers: list[tuple[str, Any, Any, str]] = []
    sent_at: dict[tuple[str, str, int], float] = {}  # (room, publisher, RTP sequence number) -> send time
    latency_ms: list[float] = []
    sent: dict[str, int] = {r: 0 for r in rooms}
    stats: list[SubscriberStats] = []
    refused: dict[str, int] = {}
    bots: list[Any] = []
    total = args.rooms * (args.video_publishers + args.audio_publishers + args.subscribers)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        joining = progress.add_task("joining", total=total)
        for room in rooms:
            for kind, count in (("video", args.video_publishers), ("audio", args.audio_publishers)):
                for i in range(count):
                    identity = f"{kind}-pub-{i}"
                    bot = await connect(ws_url(), await mint(client, room, identity, True))
                    publication = await bot.publish([kind])
                    publishers.append((room, publication, kind, identity))
                    bots.append(bot)
                    progress.advance(joining)

        async def pump() -> None:
            """Publishers send from the start, so joiners measure their real time to first video."""
            tick, begin = 0, time.monotonic()
            while True:
                now = time.monotonic()
                for room, publication, kind, identity in publishers:
                    if kind == "video":
                        for _ in range(max(1, video_pps // 50)):
                            seq = publication.send("video", b"\x00" * 1188, tick * 1800)
                            sent_at[(room, identity, seq)] = now
                            sent[room] += 1
                    else:
                        publication.send("audio", b"\x00" * 160, tick * 960)
                        sent[room] += 1
                tick += 1
                await asyncio.sleep(max(0.0, begin + tick * 0.02 - time.monotonic()))  # 50 Hz media pacing

        pumping = asyncio.create_task(pump())

        async def subscriber(room: str, index: int) -> None:
            s = SubscriberStats(room, f"sub-{index}")
            stats.append(s)
            start = time.monotonic()
            try:
                bot = await connect(ws_url(), await mint(client, room, s.identity, False))
                bots.append(bot)
                while len(bot.tracks) < args.video_publishers + args.audio_publishers:
                    bot.tracks_changed.clear()
                    await asyncio.wait_for(bot.tracks_changed.wait(), 10)

                def on_packet(track_sid: str, pkt: bytes) -> None:
                    now = time.monotonic()
                    s.packets += 1
                    if pkt[1] & 0x7F == 96:
                        s.video_packets += 1
                        track = bot.tracks.get(track_sid)
                        if track is not None and len(latency_ms) < MAX_LATENCY_SAMPLES:
                            sent_time = sent_at.get((room, track["participant"], (pkt[2] << 8) | pkt[3]))
                            if sent_time is not None:
                                latency_ms.append(1000 * (now - sent_time))
                        if s.first_frame_ms is None:
                            s.first_frame_ms = 1000 * (now - start)
                        if s.last_video is not None and now - s.last_video > FREEZE:
                            s.freezes += 1
                            s.freeze_times.append(now)
                        s.last_video = now

                await bot.subscribe(on_packet, decrypt=False)
                s.join_ms = 1000 * (time.monotonic() - start)
            except (RoomcastError, TimeoutError, OSError) as exc:
                s.error = getattr(exc, "code", type(exc).__name__)
                refused[s.error] = refused.get(s.error, 0) + 1
            progress.advance(joining)

        storm = args.preset == "L5"
        tasks: list[asyncio.Task[None]] = []
        index = 0
        for room in rooms:
            for _ in range(args.subscribers):
                if storm:  # L5: everyone at once
                    tasks.append(asyncio.create_task(subscriber(room, index)))
                else:
                    await subscriber(room, index)
                index += 1
        await asyncio.gather(*tasks)
        for s in stats:
            s.packets = s.video_packets = 0
            s.last_video = None
        for room in rooms:
            sent[room] = 0
        latency_ms.clear()
        measuring = progress.add_task("measuring", total=int(args.duration))
        samples: list[dict[str, float]] = []
        start = time.monotonic()
        previous = await scrape(client)
        while time.monotonic() - start < args.duration:
            await asyncio.sleep(1.0)  # one metrics sample per second
            now = time.monotonic()
            current = await scrape(client)
            sample = {"t": now - start, "freezes": float(sum(s.freezes for s in stats))}
            fwd, cpu = "roomcast_media_forwarded_packets_total", "process_cpu_seconds_total"
            if fwd in current and fwd in previous:
                sample["forwarded_pps"] = current[fwd] - previous[fwd]
            if cpu in current and cpu in previous:
                sample["server_cpu_pct"] = 100 * (current[cpu] - previous[cpu])
            if "process_resident_memory_bytes" in current:
                sample["server_rss_mb"] = current["process_resident_memory_bytes"] / 2**20
            samples.append(sample)
            previous = current
            progress.update(measuring, completed=min(int(now - start), int(args.duration)))
        pumping.cancel()
        await asyncio.sleep(0.5)
    for bot in bots:
        await bot.close()
    await client.aclose()
    config = {k: v for k, v in vars(args).items() if k not in ("api_secret",)}
    return LoadResult(config, stats, sent, samples, refused, args.duration, latency_ms)


def print_summary(result: LoadResult, console: Console) -> None:
    summary = result.summary()
    table = Table(title="roomcast load")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("participants attempted", str(summary["participants_attempted"]))
    table.add_row("join success", f"{summary['join_success_rate']:.1%}")
    for key in ("join_ms", "first_frame_ms", "added_latency_ms"):
        p = summary[key]
        digits = 1 if key == "added_latency_ms" else 0
        table.add_row(
            key.replace("_", " ") + " p50/p95/p99",
            "/".join("-" if v is None else f"{v:.{digits}f}" for v in (p["p50"], p["p95"], p["p99"])),
        )
    table.add_row("packet loss", f"{summary['loss_pct']:.2f}%")
    table.add_row("freezes (>500 ms)", str(summary["freezes"]))
    table.add_row("forwarded packets/s", f"{summary['forwarded_pps_mean']:,.0f}")
    if summary["server_cpu_pct_mean"] is not None:
        table.add_row("server CPU", f"{summary['server_cpu_pct_mean']:.0f}%")
    if summary["server_rss_mb_max"] is not None:
        table.add_row("server RSS max", f"{summary['server_rss_mb_max']:.0f} MB")
    for code, count in summary["refused"].items():
        table.add_row(f"refused: {code}", str(count))
    console.print(table)


def load_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="roomcast load", description="load-test a Roomcast server with real bots")
    p.add_argument(
        "--url",
        action="append",
        help="server URL (default http://127.0.0.1:7880); repeat it for the nodes of a cluster: bots join "
        "through each in turn, the figures are the whole cluster's",
    )
    p.add_argument("--api-key", default=os.environ.get("ROOMCAST_API_KEY", "devkey"))
    p.add_argument("--api-secret", default=os.environ.get("ROOMCAST_API_SECRET", "devsecret"))
    p.add_argument("--preset", choices=sorted(PRESETS), help="; ".join(f"{k}: {v['help']}" for k, v in PRESETS.items()))
    p.add_argument("--rooms", type=int)
    p.add_argument("--video-publishers", type=int)
    p.add_argument("--audio-publishers", type=int)
    p.add_argument("--subscribers", type=int, help="per room")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--video-resolution", choices=sorted(BITRATES), default="720p")
    p.add_argument("--output", default="report", help="directory for report.json and report.html")
    args = p.parse_args(argv)
    args.url = args.url or ["http://127.0.0.1:7880"]
    preset = PRESETS.get(
        args.preset or "", {"rooms": 1, "video_publishers": 1, "audio_publishers": 0, "subscribers": 5}
    )
    for key in ("rooms", "video_publishers", "audio_publishers", "subscribers"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if min(args.rooms, args.subscribers) < 0 or args.rooms * (args.video_publishers + args.audio_publishers) == 0:
        p.error("need at least one room and one publisher")
    if args.rooms * (args.video_publishers + args.audio_publishers + args.subscribers) > 2000 or args.duration > 3600:
        p.error("bounded: at most 2,000 bots and one hour per run")
    console = Console()
    try:
        result = asyncio.run(run_load(args, console))
    except (ValueError, httpx.HTTPError, RoomcastError) as exc:
        console.print(f"[red]roomcast load: {exc}[/red]")
        return 2
    print_summary(result, console)
    paths = write_report(result.summary(), asdict(result), Path(args.output))
    console.print(f"report: {paths[0]} and {paths[1]}")
    return 0
