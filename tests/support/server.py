"""Start a real ``roomcast serve`` process on a free loopback port for a test session."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _limits(nofile: tuple[int, int] | None, fsize: int | None) -> None:
    if nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
    if fsize:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))


class ServerProcess:
    """A ``roomcast serve`` subprocess; ``stop()`` sends SIGTERM and checks it exits cleanly."""

    def __init__(
        self,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        args: list[str] | None = None,
        tls: bool = False,
        nofile: tuple[int, int] | None = None,
        ready_timeout: float = 60.0,  # a loaded shared machine took over 20 s
        fsize: int | None = None,
    ) -> None:
        """``nofile``: (soft, hard) ``RLIMIT_NOFILE`` for the server process, to make exhaustion tests cheap;
        ``fsize``: ``RLIMIT_FSIZE`` in bytes, a full disk for every file it writes (Python ignores SIGXFSZ,
        so a write past it fails with EFBIG, "File too large")."""
        self.port = free_port()
        self.media_port = free_port(socket.SOCK_DGRAM)
        self.media_tcp_port = free_port()  # never the default 7881: servers of one namespace run side by side
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.ws_base = f"{'wss' if tls else 'ws'}://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"roomcast-{self.port}.log"
        full_env = dict(os.environ)
        full_env.pop("ROOMCAST_API_KEY", None)
        full_env.pop("ROOMCAST_API_SECRET", None)
        full_env.update(env or {})
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "roomcast",
                "serve",
                "--port",
                str(self.port),
                "--media-port",
                str(self.media_port),
                *([] if "--media-tcp-port" in (args or []) else ["--media-tcp-port", str(self.media_tcp_port)]),
                *(args or []),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            preexec_fn=(lambda: _limits(nofile, fsize)) if nofile or fsize else None,
        )
        try:
            self._wait_ready(ready_timeout)
        except RuntimeError:
            self.stop()  # a server that never got ready must not outlive the test (such orphans kept running)
            raise

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"roomcast serve exited early:\n{self.log()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1, verify=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling a process start-up, not standing in for an event under test
        raise RuntimeError(f"roomcast serve not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status_kb(self, field: str) -> int:
        """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``: peak resident memory)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
