"""Shared by the recording tests: a server with ``--recordings-dir``, the recordings API, ffprobe/ffmpeg checks.

The files are judged by Debian's ffmpeg/ffprobe (5.1), not by the PyAV (FFmpeg 8) that wrote them."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import ServerProcess

AUTH = ("devkey", "devsecret")


@pytest.fixture(scope="module")
def recordings_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recordings")


@pytest.fixture(scope="module")
def recording_server(artifacts: Path, recordings_dir: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(artifacts, args=["--recordings-dir", str(recordings_dir)])
    yield proc
    code = proc.stop()
    assert code == 0, f"server did not shut down cleanly (exit {code}):\n{proc.log()[-3000:]}"
    assert "Traceback" not in proc.log(), proc.log()[-5000:]


def api(server: ServerProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("auth", AUTH)
    return httpx.request(method, f"{server.base}/api/rooms/{path}", timeout=30, **kwargs)


def start_recording(server: ServerProcess, room: str) -> str:
    res = api(server, "POST", f"{room}/recordings")
    assert res.status_code == 201, res.text
    return str(res.json()["id"])


def wait_recording(
    server: ServerProcess, room: str, rec_id: str, files: int = 1, timeout: float = 20
) -> dict[str, Any]:
    """Poll until the recording has ``files`` files being written (their first keyframe arrived)."""
    deadline = time.monotonic() + timeout
    while True:
        info: dict[str, Any] = api(server, "GET", f"{room}/recordings/{rec_id}").json()
        if len([f for f in info["files"] if f["state"] == "recording"]) >= files:
            return info
        assert info["state"] == "recording", info
        assert time.monotonic() < deadline, f"no file after {timeout}s: {info}"
        time.sleep(0.1)  # polling the API with a deadline


def stop_recording(server: ServerProcess, room: str, rec_id: str) -> dict[str, Any]:
    res = api(server, "DELETE", f"{room}/recordings/{rec_id}")
    assert res.status_code == 200, res.text
    info: dict[str, Any] = res.json()
    assert info["state"] == "finished", info
    return info


def ffprobe(path: str) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout))


def decode_errors(path: str) -> str:
    """What ``ffmpeg -v error`` says while decoding every frame of the file (empty: no error)."""
    done = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "null", "-"], capture_output=True, text=True)
    return done.stderr.strip() + ("" if done.returncode == 0 else f"\n(exit {done.returncode})")


def first_frame_times(path: str) -> dict[str, float]:
    """The pts (seconds) of the first decoded packet of each stream, by codec type."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_entries",
            "packet=stream_index,pts_time",
            "-read_intervals",
            "%+#200",
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    streams = {s["index"]: s["codec_type"] for s in ffprobe(path)["streams"]}
    first: dict[str, float] = {}
    for packet in json.loads(out.stdout)["packets"]:
        kind = streams[packet["stream_index"]]
        first.setdefault(kind, float(packet["pts_time"]))
    return first


def video_packets(path: str) -> int:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets",
            "-of",
            "csv=p=0",
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())
