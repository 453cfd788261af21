"""The base install works: the wheel, installed into a fresh venv without extras, runs every subcommand.

``scripts/test`` builds that venv before the suite (it needs the package index, which the test's private
network namespace does not have) and passes its path in ``ROOMCAST_BASE_VENV``. A runtime import that is
only a test extra (``httpx`` for ``roomcast load`` once was) fails here with ``ModuleNotFoundError``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port

VENV = os.environ.get("ROOMCAST_BASE_VENV", "")

pytestmark = pytest.mark.skipif(not VENV, reason="ROOMCAST_BASE_VENV not set (scripts/test builds it)")


def clean_env() -> dict[str, str]:
    """This process's environment without what would make the venv import this checkout or skip dev mode."""
    dropped = ("PYTHONPATH", "ROOMCAST_API_KEY", "ROOMCAST_API_SECRET")
    return {k: v for k, v in os.environ.items() if k not in dropped}


def run(*args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [f"{VENV}/bin/roomcast", *args], capture_output=True, text=True, timeout=timeout, env=clean_env(), cwd=cwd
    )
    output = result.stdout + result.stderr
    assert "ModuleNotFoundError" not in output and "ImportError" not in output, output[-3000:]
    return result


def test_the_venv_is_a_base_install_from_the_wheel() -> None:
    """The venv must hold the built package, not this checkout, and none of the test extras."""
    python = f"{VENV}/bin/python"
    code = "import roomcast; print(roomcast.__file__)"
    where = subprocess.run([python, "-c", code], capture_output=True, text=True, env=clean_env(), cwd="/")
    assert "site-packages" in where.stdout, where.stdout + where.stderr
    for extra in ("pytest", "aiortc", "playwright"):
        probe = subprocess.run([python, "-c", f"import {extra}"], capture_output=True, text=True, env=clean_env())
        assert probe.returncode != 0, f"{extra} is installed in the base venv: it is not a base install"


def test_token_turn_config_bench_and_iot_help(tmp_path: Path) -> None:
    token = run("token", "--room", "demo", "--identity", "alice")
    assert token.returncode == 0 and token.stdout.count(".") == 2, token.stderr
    secret = tmp_path / "turn-secret"
    secret.write_text("x" * 40)
    turn = run("turn-config", "--secret-file", str(secret), "--output", str(tmp_path / "turnserver.conf"))
    assert turn.returncode == 0, turn.stderr
    assert "use-auth-secret" in (tmp_path / "turnserver.conf").read_text()
    bench = run("bench", "--packets", "200", "--subscribers", "1")
    assert bench.returncode == 0 and "µs" in bench.stdout, bench.stdout + bench.stderr
    iot = run("iot", "--help")
    assert iot.returncode == 0 and "usage" in iot.stdout, iot.stderr


@pytest.fixture
def base_server(tmp_path: Path) -> Iterator[str]:
    port, media = free_port(), free_port(socket.SOCK_DGRAM)
    env = clean_env()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [f"{VENV}/bin/roomcast", "serve", "--port", str(port), "--media-port", str(media)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)  # polling a process start-up
    try:
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        log.close()
        output = (tmp_path / "serve.log").read_text(errors="replace")
        assert code == 0 and "Traceback" not in output, output[-3000:]


def test_serve_and_load_from_the_base_install(base_server: str, tmp_path: Path) -> None:
    assert httpx.get(base_server + "/healthz").json()["status"] == "ok"
    load = run(
        "load",
        "--url",
        base_server,
        "--rooms",
        "1",
        "--video-publishers",
        "1",
        "--subscribers",
        "1",
        "--duration",
        "3",
        "--output",
        str(tmp_path / "report"),
        cwd=tmp_path,
    )
    assert load.returncode == 0, load.stdout[-2000:] + load.stderr[-2000:]
    assert (tmp_path / "report" / "report.json").exists()
    doctor = run("doctor", "--url", base_server, "--json", "--media-seconds", "0.5", "--timeout", "3")
    assert doctor.returncode == 0, doctor.stdout[-3000:] + doctor.stderr[-2000:]
    command = [f"{VENV}/bin/roomcast", "hash-password"]
    hashed = subprocess.run(command, input="long enough\n", capture_output=True, text=True, env=clean_env())
    assert hashed.returncode == 0 and hashed.stdout.startswith("$argon2id$"), hashed.stderr
