"""``roomcast doctor`` as a user runs it (a subprocess, its exit status and output) against real servers:
healthy; UDP blackholed (TCP still works); TURN through a real coturn, with the right and a wrong secret;
a wrong URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.security.test_limits_tls import self_signed
from tests.support.coturn import Coturn
from tests.support.server import ServerProcess, free_port
from tests.support.udp_blackhole import UdpBlackhole


def doctor(*args: str, timeout: float = 60) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "roomcast", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def report(*args: str) -> tuple[int, dict[str, Any], dict[str, dict[str, Any]]]:
    code, out = doctor(*args, "--json", "--media-seconds", "1", "--timeout", "3")
    data = json.loads(out)
    checks: dict[str, dict[str, Any]] = {}
    for check in data["checks"]:
        checks.setdefault(check["name"], check)
        checks[check["title"]] = check
    return code, data, checks


@pytest.fixture
def no_udp() -> Iterator[UdpBlackhole]:
    blackhole = UdpBlackhole()
    blackhole.install()
    yield blackhole
    blackhole.lift()


def test_healthy_server_every_check_passes(server: ServerProcess) -> None:
    code, data, checks = report("--url", server.base)
    assert code == 0, data
    assert data["exit_code"] == 0 and data["verdict"].startswith("Every check passed")
    for name in ("dns", "http", "clock", "token", "signaling", "ice_udp", "ice_tcp", "media"):
        assert checks[name]["status"] == "pass", checks[name]
    assert checks["tls"]["status"] == "skip" and checks["turn"]["status"] == "skip"  # plain HTTP, no TURN set
    assert checks["ice_udp"]["data"]["remote"] == ["127.0.0.1", server.media_port]
    assert checks["ice_tcp"]["data"]["remote"] == ["127.0.0.1", server.media_tcp_port]
    media = checks["media"]
    assert media["title"] == "Media round trip (UDP)"
    assert media["data"]["received"] >= 0.95 * media["data"]["sent"] > 0
    assert 0 < media["data"]["rtt_ms_median"] < 200 and media["data"]["throughput_kbps"] > 500


def test_the_checklist_prints_a_verdict_per_line(server: ServerProcess) -> None:
    code, out = doctor("--url", server.base, "--media-seconds", "0.5")
    assert code == 0, out
    for title in ("DNS", "HTTP /healthz", "Signaling WebSocket + join", "ICE over UDP", "ICE over TCP"):
        line = next(line for line in out.splitlines() if title in line)
        assert "pass" in line, line
    assert "Every check passed" in out and "Traceback" not in out


def test_udp_blackholed_udp_fails_tcp_passes_exit_1(server: ServerProcess, no_udp: UdpBlackhole) -> None:
    code, data, checks = report("--url", server.base)
    assert code == 1, data
    assert checks["ice_udp"]["status"] == "fail"
    assert f"127.0.0.1:{server.media_port}" in checks["ice_udp"]["detail"]
    assert checks["ice_tcp"]["status"] == "pass"
    assert checks["media"]["title"] == "Media round trip (TCP)" and checks["media"]["status"] == "pass"
    assert checks["media"]["data"]["received"] == checks["media"]["data"]["sent"]  # TCP loses nothing
    assert "A call can connect, over ICE over TCP" in data["verdict"] and "ICE over UDP" in data["verdict"]
    assert no_udp.dropped() > 0


def test_no_media_path_at_all_exit_2(artifacts: Path, no_udp: UdpBlackhole) -> None:
    udp_only = ServerProcess(artifacts, args=["--media-tcp-port", "0"])
    try:
        code, data, checks = report("--url", udp_only.base)
    finally:
        udp_only.stop()
    assert code == 2, data
    assert checks["ice_udp"]["status"] == "fail" and checks["ice_tcp"]["status"] == "fail"
    assert "no ICE-TCP candidate" in checks["ice_tcp"]["detail"]
    assert data["verdict"].startswith("No call can connect")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (lambda: f"http://127.0.0.1:{free_port()}", "is the server running"),
        (lambda: "rtc.example.com", "--url must look like https://host[:port]"),
        (lambda: "http://no-such-host.invalid", "DNS"),
    ],
)
def test_wrong_url_clear_message_exit_2(url: Any, says: str) -> None:
    code, out = doctor("--url", url(), "--timeout", "3")
    assert code == 2, out
    assert says in out
    assert "Traceback" not in out


@pytest.fixture(scope="module")
def coturn(artifacts: Path) -> Iterator[Coturn]:
    turn = Coturn(artifacts / "coturn-doctor", dev=True)
    yield turn
    turn.stop()


@pytest.mark.parametrize("right_secret", [True, False])
def test_turn_allocations_with_minted_credentials(artifacts: Path, coturn: Coturn, right_secret: bool) -> None:
    env = {
        "ROOMCAST_TURN_SECRET": coturn.secret if right_secret else "not-" + coturn.secret,
        "ROOMCAST_TURN_HOST": "127.0.0.1",
        "ROOMCAST_TURN_PORT": str(coturn.port),
    }
    proc = ServerProcess(artifacts, env=env)
    try:
        code, data, _ = report("--url", proc.base)
    finally:
        proc.stop()
    turn = [c for c in data["checks"] if c["name"] == "turn"]
    assert sorted(c["title"] for c in turn) == sorted(
        [f"TURN/UDP 127.0.0.1:{coturn.port}", f"TURN/TCP 127.0.0.1:{coturn.port}"]
    )
    if right_secret:
        assert code == 0, data
        assert all(c["status"] == "pass" and "relay 127.0.0.1:" in c["detail"] for c in turn), turn
    else:
        assert code == 1, data  # UDP and TCP still connect: the call works, TURN users' would not
        assert all(c["status"] == "fail" and "static-auth-secret" in c["detail"] for c in turn), turn


@pytest.fixture(scope="module")
def https_server(artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    cert, key = self_signed(tmp_path_factory.mktemp("doctor-tls"))
    proc = ServerProcess(artifacts, args=["--tls-cert", str(cert), "--tls-key", str(key)], tls=True)
    yield proc, cert
    assert proc.stop() == 0


def test_https_with_its_ca_passes_and_warns_of_a_short_lived_certificate(
    https_server: tuple[ServerProcess, Path],
) -> None:
    server, cert = https_server
    code, data, checks = report("--url", server.base, "--ca-file", str(cert))
    assert code == 0, data  # a warning is not a failure
    assert checks["tls"]["status"] == "warn" and "renew it soon" in checks["tls"]["detail"]  # valid for a day
    assert checks["tls"]["data"]["version"].startswith("TLSv1.")
    for name in ("http", "signaling", "ice_udp", "ice_tcp", "media"):
        assert checks[name]["status"] == "pass", checks[name]  # wss:// verified with the same CA


def test_https_with_an_unknown_ca_fails_clearly(https_server: tuple[ServerProcess, Path]) -> None:
    server, _ = https_server
    code, out = doctor("--url", server.base, "--timeout", "3")
    assert code == 2, out
    flat = " ".join(out.split())
    assert "the certificate is not trusted (self-signed certificate)" in flat and "--ca-file" in flat
    assert "Traceback" not in out
