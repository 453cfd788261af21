"""Shared by the WHIP/WHEP tests: minting tokens through the admin API, a PyAV FFmpeg publisher process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.server import ServerProcess

AUTH = ("devkey", "devsecret")
ROOT = Path(__file__).resolve().parents[2]


def mint(server: ServerProcess, room: str, identity: str, **grants: object) -> str:
    body = {"room": room, "identity": identity, "ttl": "1h", **grants}
    res = httpx.post(f"{server.base}/api/tokens", json=body, auth=AUTH)
    assert res.status_code == 200, res.text
    return str(res.json()["token"])


def ffmpeg_publisher(
    server: ServerProcess, room: str, token: str, seconds: float, log: Path
) -> subprocess.Popen[bytes]:
    """PyAV's FFmpeg publishing a test pattern and a tone to ``POST /whip/{room}`` for ``seconds``."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.whip.ffmpeg_whip", f"{server.base}/whip/{room}", token, str(seconds)],
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
