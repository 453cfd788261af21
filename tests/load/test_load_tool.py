"""``roomcast load`` end to end against a real server: report files, sane figures, refusals counted."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def small_server(artifacts: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(artifacts, env={"ROOMCAST_MAX_PARTICIPANTS": "4"})
    yield proc
    assert proc.stop() == 0


def load(server: ServerProcess, out: Path, *args: str) -> dict:  # type: ignore[type-arg]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "roomcast",
            "load",
            "--url",
            server.base,
            "--duration",
            "3",
            "--output",
            str(out),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "join success" in done.stdout
    report = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 6 and "Join latency" in html and "Added latency" in html
    return report["summary"]  # type: ignore[no-any-return]


def test_small_load_reports_real_figures(small_server: ServerProcess, tmp_path: Path) -> None:
    summary = load(small_server, tmp_path, "--video-publishers", "1", "--audio-publishers", "1", "--subscribers", "2")
    assert summary["participants_attempted"] == 2 and summary["join_success_rate"] == 1.0
    assert summary["loss_pct"] < 5 and summary["forwarded_pps_mean"] > 100
    assert summary["first_frame_ms"]["p50"] is not None and summary["server_rss_mb_max"] > 10
    latency = summary["added_latency_ms"]
    assert latency["p50"] is not None and 0 < latency["p50"] <= latency["p95"] < 1000  # matched, on one clock


def test_over_capacity_joins_are_refused_and_counted(small_server: ServerProcess, tmp_path: Path) -> None:
    summary = load(small_server, tmp_path, "--video-publishers", "1", "--subscribers", "6")  # room limit is 4
    assert summary["refused"] == {"room_full": 3}
    assert summary["join_success_rate"] == pytest.approx(3 / 6)
    assert summary["loss_pct"] < 5  # the ones that got in are unaffected


def test_refuses_public_addresses() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "roomcast", "load", "--url", "http://8.8.8.8:7880"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "only loopback or private" in done.stdout + done.stderr
