"""``roomcast doctor --url URL [--json]``: why can't my user connect? The checks, run from where the user is.

    roomcast doctor --url https://rtc.example.com
    roomcast doctor --url https://rtc.example.com --token "$(roomcast token --room doctor --identity me)" --json

In order: DNS, TLS, HTTP (``/healthz``) and the clock skew from its ``Date`` header, a token (given, or
``/api/dev-token`` on a dev server), the signaling WebSocket and a join (the token's round trip), ICE and
DTLS over UDP to the media port, over TCP (RFC 6544) to the media TCP port, an Allocate on every TURN
server the join hands out, and a short media round trip on the server's ``$echo`` endpoint (RTT, loss,
throughput). Each line gets a verdict. Exit status: 0 every check passed (skipped ones, e.g. TURN when none
is configured, do not count), 1 some path failed but a call can still connect (say UDP is blocked and TCP
works), 2 no call can connect (or the URL is wrong).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import json
import secrets
import ssl
import statistics
import struct
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from websockets.exceptions import InvalidStatus, WebSocketException

from roomcast.proto.dtls import DtlsCertificate
from roomcast.sdk import Publication, Room, RoomcastError, connect
from roomcast.tools.doctor_turn import TurnError, TurnUrl, allocate
from roomcast.wire.rtp import header_length

SKEW_OK = 5.0  # seconds: the Date header has a 1 s resolution, and a round trip
SKEW_FAIL = 60.0  # tokens minted here would look not yet valid, or expire early, there
ROUND_TRIP = 2.0  # seconds of media on $echo
PACKETS_PER_SECOND = 150
PACKET_SIZE = 1000  # RTP payload bytes: 150/s of them is about 1.2 Mbit/s, a video call's order
LOSS_OK = 0.05

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
FATAL = ("dns", "tls", "http", "token", "signaling")
PATHS = ("ice_udp", "ice_tcp", "turn")


class UsageError(Exception):
    """A URL or option the doctor cannot work with: printed as is, exit 2."""


@dataclass
class Check:
    name: str
    title: str
    status: str = SKIP
    detail: str = ""
    ms: float | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    url: str
    checks: list[Check] = field(default_factory=list)
    verdict: str = ""
    exit_code: int = 2

    def get(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def passed(self, name: str) -> bool:
        check = self.get(name)
        return check is not None and check.status in (PASS, WARN)


def parse_url(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url must look like https://host[:port] (got {url!r})")
    try:
        parts.port  # noqa: B018 (raises on a port out of range)
    except ValueError:
        raise UsageError(f"bad port in {url!r}") from None
    return parts


class Doctor:
    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float,
        media_seconds: float = ROUND_TRIP,
        ca_file: str | None = None,
    ) -> None:
        self.parts = parse_url(url)
        try:  # --ca-file: a private CA (or a self-signed certificate) for HTTPS, WSS and TURN/TLS
            self.ssl = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot use --ca-file {ca_file}: {exc}") from None
        self.base = f"{self.parts.scheme}://{self.parts.netloc}"
        self.host = self.parts.hostname or ""
        self.port = self.parts.port or (443 if self.parts.scheme == "https" else 80)
        self.token = token
        self.timeout = timeout
        self.media_seconds = media_seconds
        self.report = Report(self.base)
        self.room: Room | None = None
        self.joined: dict[str, Any] = {}
        self.echoes: dict[str, _Echo] = {}  # ICE transport -> its connected $echo

    async def _run(self, name: str, title: str, body: Callable[[Check], Awaitable[None]]) -> Check:
        check = Check(name, title)
        self.report.checks.append(check)
        started = time.monotonic()
        try:
            check.status = PASS
            await body(check)
        except (
            RoomcastError,
            TurnError,
            OSError,
            TimeoutError,
            httpx.HTTPError,
            WebSocketException,
            ValueError,
        ) as exc:
            check.status = FAIL
            check.detail = check.detail or _describe(exc)
        except Exception as exc:
            check.status = FAIL
            check.detail = f"unexpected {type(exc).__name__}: {exc}"
        check.ms = round((time.monotonic() - started) * 1000, 1)
        return check

    def _skip(self, name: str, title: str, why: str) -> None:
        self.report.checks.append(Check(name, title, SKIP, why))

    async def run(self) -> Report:
        try:
            await self._checks()
        finally:
            if self.room is not None:
                await _quietly(self.room.close())
        self.report.exit_code, self.report.verdict = verdict(self.report)
        return self.report

    async def _checks(self) -> None:
        await self._run("dns", "DNS", self._dns)
        if not self.report.passed("dns"):
            return self._skip_rest("needs DNS")
        if self.parts.scheme == "https":
            await self._run("tls", "TLS", self._tls)
        else:
            self._skip("tls", "TLS", "plain HTTP: browsers allow camera and microphone only on https or localhost")
        if self.parts.scheme == "https" and not self.report.passed("tls"):
            return self._skip_rest("needs TLS")
        await self._run("http", "HTTP /healthz", self._http)
        if not self.report.passed("http"):
            return self._skip_rest("needs the server's HTTP")
        await self._run("token", "Access token", self._token)
        if not self.report.passed("token"):
            return self._skip_rest("needs a token")
        await self._run("signaling", "Signaling WebSocket + join", self._signaling)
        if not self.report.passed("signaling"):
            return self._skip_rest("needs signaling")
        # one path at a time on the server's $echo: the media round trip over UDP when it connects, else TCP
        await self._run("ice_udp", "ICE over UDP", lambda c: self._ice(c, "udp"))
        udp = self.echoes.get("udp")
        if udp is not None:
            await self._run("media", "Media round trip (UDP)", lambda c: self._media(c, udp))
            udp.close()
        await self._run("ice_tcp", "ICE over TCP", lambda c: self._ice(c, "tcp"))
        tcp = self.echoes.get("tcp")
        if udp is None and tcp is not None:
            await self._run("media", "Media round trip (TCP)", lambda c: self._media(c, tcp))
        elif udp is None:
            self._skip("media", "Media round trip", "no media path connected")
        await self._turn()

    def _skip_rest(self, why: str) -> None:
        done = {c.name for c in self.report.checks}
        for name, title in (
            ("tls", "TLS"),
            ("http", "HTTP /healthz"),
            ("token", "Access token"),
            ("signaling", "Signaling WebSocket + join"),
            ("ice_udp", "ICE over UDP"),
            ("ice_tcp", "ICE over TCP"),
            ("media", "Media round trip"),
        ):
            if name not in done:
                self._skip(name, title, why)

    # ------------------------------------------------------------------ the checks

    async def _dns(self, check: Check) -> None:
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(self.host, self.port), self.timeout)
        addresses = sorted({str(info[4][0]) for info in infos})
        check.data["addresses"] = addresses
        check.detail = f"{self.host} → {', '.join(addresses)}"

    async def _tls(self, check: Check) -> None:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.ssl, server_hostname=self.host), self.timeout
        )
        try:
            sslobj = writer.get_extra_info("ssl_object")
            cert = writer.get_extra_info("peercert") or {}
            expires = ssl.cert_time_to_seconds(cert["notAfter"]) if "notAfter" in cert else None
            days = (expires - time.time()) / 86400 if expires else None
            check.data.update({"version": sslobj.version() if sslobj else None, "days_left": days})
            check.detail = f"{check.data['version']}, certificate valid for {days:.0f} more days" if days else "ok"
            if days is not None and days < 14:
                check.status = WARN
                check.detail += " (renew it soon)"
        finally:
            writer.close()

    async def _http(self, check: Check) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, verify=self.ssl) as client:
            sent = time.time()
            response = await client.get(self.base + "/healthz")
            received = time.time()
        if response.status_code != 200:
            raise ValueError(f"/healthz answered {response.status_code} (draining, or not a Roomcast server?)")
        body = response.json()
        check.data["version"] = body.get("version")
        check.detail = f"roomcast {body.get('version', '?')}, {body.get('rooms', '?')} rooms"
        date = response.headers.get("date")
        clock = Check("clock", "Clock skew")
        self.report.checks.append(clock)
        if date is None:
            clock.detail = "the server sent no Date header"
            return
        skew = email.utils.parsedate_to_datetime(date).timestamp() - (sent + received) / 2
        clock.data["skew_s"] = round(skew, 1)
        clock.status = PASS if abs(skew) <= SKEW_OK else WARN if abs(skew) <= SKEW_FAIL else FAIL
        clock.detail = f"server clock {skew:+.1f} s from ours"
        if clock.status == FAIL:
            clock.detail += ": tokens minted on one side look expired or not yet valid on the other (run NTP)"

    async def _token(self, check: Check) -> None:
        if self.token:
            check.detail = "given with --token"
            return
        identity = "doctor-" + secrets.token_hex(3)
        async with httpx.AsyncClient(timeout=self.timeout, verify=self.ssl) as client:
            params = {"room": "doctor-" + secrets.token_hex(4), "identity": identity}
            response = await client.get(self.base + "/api/dev-token", params=params)
        if response.status_code != 200:
            raise ValueError(
                "the server mints no dev tokens (it has real API keys): pass --token "
                "(e.g. roomcast token --room doctor --identity doctor)"
            )
        self.token = str(response.json()["token"])
        check.detail = "dev token from /api/dev-token"

    async def _signaling(self, check: Check) -> None:
        assert self.token is not None
        try:
            joining = connect(self.base, self.token, host=_any(self.host), ssl_context=self.ssl)
            self.room = await asyncio.wait_for(joining, self.timeout)
        except RoomcastError as exc:
            token = self.report.get("token")
            if token is not None:  # the socket works; the token came back refused
                token.status, token.detail = FAIL, f"refused by the server: {exc}"
            check.detail = "the WebSocket opened; the join was refused (see the token line)"
            raise
        self.joined = self.room.joined
        check.detail = f"joined room {self.joined.get('room')} as {self.room.identity} ({self.joined.get('mode')})"
        token = self.report.get("token")
        if token is not None:
            token.detail += ", accepted"

    async def _ice(self, check: Check, transport: str) -> None:
        room = self.room
        assert room is not None
        room.ice_transport = transport
        room.media_timeout = self.timeout
        room.certificate = DtlsCertificate.generate()  # a new peer connection, not an ICE restart of the last
        echo = _Echo()
        try:
            publication = await room.echo(["video"], echo.on_packet)
        except TimeoutError:
            tried: tuple[str, int] | None = getattr(room.connections[-1].rtc.ice, "remote", None)
            where = f"{tried[0]}:{tried[1]}" if tried else "the media port"
            opened = "TCP 7881, --media-tcp-port" if transport == "tcp" else "UDP 7882, --media-port"
            raise TimeoutError(
                f"no ICE/DTLS over {transport.upper()} to {where} within {self.timeout:g} s: blocked by this network "
                f"or a firewall (the server needs {opened} open)"
            ) from None
        remote: tuple[str, int] | None = getattr(publication.conn.rtc.ice, "remote", None)
        echo.publication = publication
        check.data["remote"] = list(remote) if remote else None
        check.detail = f"ICE and DTLS connected to {remote[0]}:{remote[1]}" if remote else "connected"
        self.echoes[transport] = echo

    async def _media(self, check: Check, echo: _Echo) -> None:
        stats = await echo.round_trip(self.media_seconds)
        check.data.update(stats)
        if not stats["received"]:
            raise ValueError("no echoed packet came back: the media path connects but carries nothing")
        check.detail = (
            f"RTT {stats['rtt_ms_median']:.1f} ms (p95 {stats['rtt_ms_p95']:.1f}), loss {stats['loss'] * 100:.1f} %, "
            f"{stats['throughput_kbps']:.0f} kbit/s echoed"
        )
        if stats["loss"] > LOSS_OK:
            check.status = WARN

    async def _turn(self) -> None:
        servers = [s for s in self.joined.get("ice_servers", []) if s.get("username")]
        urls = [(TurnUrl.parse(u), s) for s in servers for u in s.get("urls", []) if u.startswith(("turn:", "turns:"))]
        if not urls:
            self._skip("turn", "TURN", "the server hands out no TURN servers (fine when ICE-TCP works)")
            return
        for url, server in urls:

            async def body(check: Check, url: TurnUrl = url, server: dict[str, Any] = server) -> None:
                user, password = str(server["username"]), str(server["credential"])
                relay = await allocate(url, user, password, self.timeout, self.ssl)
                check.detail = f"relay {relay[0]}:{relay[1]} allocated on {url.host}:{url.port} with minted credentials"

            await self._run("turn", f"{url.label} {url.host}:{url.port}", body)


class _Echo:
    """Packets on ``$echo``: each carries its sequence number and send time, so what comes back gives RTT and
    loss."""

    def __init__(self) -> None:
        self.publication: Publication | None = None
        self.sent: dict[int, float] = {}
        self.rtts: list[float] = []
        self.bytes_back = 0
        self.sending_done = False
        self.all_back = asyncio.Event()

    def close(self) -> None:
        if self.publication is not None:
            self.publication.conn.close()

    def on_packet(self, packet: bytes) -> None:
        start = header_length(packet)
        if start < 0 or len(packet) < start + 4:
            return
        seq = struct.unpack_from("!I", packet, start)[0]
        sent = self.sent.pop(seq, None)
        if sent is not None:
            self.rtts.append(time.monotonic() - sent)
            self.bytes_back += len(packet) - start
            if not self.sent and self.sending_done:
                self.all_back.set()

    async def round_trip(self, seconds: float) -> dict[str, Any]:
        assert self.publication is not None
        count = max(10, int(seconds * PACKETS_PER_SECOND))
        padding = b"\x00" * (PACKET_SIZE - 4)
        started = time.monotonic()
        for n in range(count):
            self.sent[n] = time.monotonic()
            self.publication.send("video", struct.pack("!I", n) + padding, n * 600, marker=True)
            await asyncio.sleep(max(0.0, started + (n + 1) / PACKETS_PER_SECOND - time.monotonic()))  # pacing
        self.sending_done = True
        if self.sent:  # stragglers: at most one more second
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_back.wait(), 1.0)
        elapsed = time.monotonic() - started
        received = len(self.rtts)
        rtts = sorted(r * 1000 for r in self.rtts) or [0.0]
        return {
            "sent": count,
            "received": received,
            "loss": round(1 - received / count, 4),
            "rtt_ms_median": round(statistics.median(rtts), 2),
            "rtt_ms_p95": round(rtts[min(len(rtts) - 1, int(len(rtts) * 0.95))], 2),
            "throughput_kbps": round(self.bytes_back * 8 / elapsed / 1000, 1),
        }


def verdict(report: Report) -> tuple[int, str]:
    """2: no call can connect; 1: something failed, but a call can connect; 0: every check passed."""
    failed = [c for c in report.checks if c.status == FAIL]
    fatal = [c for c in failed if c.name in FATAL]
    if fatal:
        return 2, f"No call can connect: {fatal[0].title} failed ({fatal[0].detail})"
    paths = [c for c in report.checks if c.name in PATHS and c.status in (PASS, WARN)]
    media = report.get("media")
    if not paths or media is None or media.status == FAIL:
        return 2, "No call can connect: no media path (UDP, TCP or TURN) works from here"
    if failed:
        names = ", ".join(c.title for c in failed)
        working = ", ".join(c.title for c in paths)
        return 1, f"A call can connect, over {working}; but {names} failed: some users' calls will fail or suffer"
    return 0, "Every check passed: calls can connect from here"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.ConnectError | ConnectionRefusedError):
        return f"cannot connect ({exc or 'connection refused'}): is the server running, and is this its HTTP port?"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or str(exc)
        return f"the certificate is not trusted ({why}): browsers refuse it too (a private CA: --ca-file)"
    if isinstance(exc, InvalidStatus):
        return (
            f"the WebSocket upgrade on /rtc was answered HTTP {exc.response.status_code} (a proxy without WebSocket?)"
        )
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    return f"{exc}" or type(exc).__name__


def _any(host: str) -> str:
    """The local address to bind media sockets to: loopback for a loopback server, else any."""
    return "127.0.0.1" if host in ("127.0.0.1", "localhost") else "0.0.0.0"


async def _quietly(awaitable: Awaitable[object]) -> None:
    with contextlib.suppress(Exception):  # closing after the report: nothing left to tell
        await asyncio.wait_for(awaitable, 2)


# ---------------------------------------------------------------------- output

_MARKS = {PASS: "[green]✔ pass[/]", FAIL: "[red]✘ FAIL[/]", WARN: "[yellow]! warn[/]", SKIP: "[dim]- skip[/]"}


def render(report: Report, console: Console) -> None:
    table = Table(title=f"roomcast doctor {report.url}", show_lines=False, title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("result")
    table.add_column("ms", justify="right")
    for check in report.checks:
        ms = f"{check.ms:.0f}" if check.ms is not None else ""
        table.add_row(_MARKS[check.status], check.title, check.detail, ms)
    console.print(table)
    style = {0: "bold green", 1: "bold yellow", 2: "bold red"}[report.exit_code]
    console.print(f"[{style}]{report.verdict}[/] (exit {report.exit_code})")


def as_json(report: Report) -> str:
    data = asdict(report)
    return json.dumps(data, indent=2, default=str)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomcast doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the server's base URL, e.g. https://rtc.example.com")
    parser.add_argument("--token", help="an access token for any room (default: a dev token, on a dev server)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per check (default 5)")
    parser.add_argument("--media-seconds", type=float, default=ROUND_TRIP, help="media round trip length")
    parser.add_argument("--ca-file", help="trust this CA (PEM) for HTTPS, WSS and TURN/TLS, e.g. a private CA")
    return parser


def doctor_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    try:
        doctor = Doctor(args.url, args.token, args.timeout, args.media_seconds, args.ca_file)
    except UsageError as exc:
        print(f"roomcast doctor: {exc}", flush=True)
        return 2
    report = asyncio.run(doctor.run())
    if args.json:
        print(as_json(report))
    else:
        render(report, Console())
    return report.exit_code
