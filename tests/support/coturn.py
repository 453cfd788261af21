"""A real coturn (``turnserver``) on free loopback ports, configured by ``roomcast turn-config``'s renderer."""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from pathlib import Path

from roomcast.turn.coturn_config import CoturnOptions, render_coturn_config
from tests.support.server import free_port


class Coturn:
    def __init__(self, workdir: Path, *, dev: bool = True) -> None:
        self.secret = secrets.token_hex(16)
        self.port = free_port()
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"turn-{self.port}.log"
        low = 40000 + (self.port % 200) * 100
        options = CoturnOptions(
            secret=self.secret,
            realm="roomcast.test",
            listen_ip="127.0.0.1",
            port=self.port,
            min_port=low,
            max_port=low + 99,
            log_file=str(self.log_path),
            pid_file=str(workdir / f"turn-{self.port}.pid"),
            userdb=str(workdir / f"turn-{self.port}.db"),
            dev=dev,
            verbose=True,
        )
        self.config_path = workdir / f"turn-{self.port}.conf"
        self.config_path.write_text(render_coturn_config(options))
        self.proc = subprocess.Popen(
            ["turnserver", "-c", str(self.config_path), "--no-stdout-log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self._wait_listening()

    def _wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnserver exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)  # polling a process start-up, not standing in for an event under test
        raise RuntimeError(f"turnserver not listening after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
