"""``roomcast serve --workers N``: N worker processes behind one HTTP/WebSocket port (issue 15 item 1).

The parent binds the port once and hands the listening socket to each worker (``--listen-fd``): every
worker accepts from the same queue (a worker that dies strands no connections, unlike one SO_REUSEPORT
socket per worker). Each worker is a full node of the cluster with its own event loop, its own media ports
(``media_port + i``, ``media_tcp_port + i``) and the id ``<node-id>-w<i>``. They coordinate through Redis
(``--redis-url``, required): a room lives on one worker, placed by load, and a socket accepted by another
worker is relayed to it, exactly as between machines (docs/deploy.md). The parent only supervises: it
forwards SIGTERM/SIGINT (each worker drains) and starts a worker again if it dies.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from roomcast.app.config import Config, ConfigError

log = logging.getLogger("roomcast.workers")
RESTART_DELAY = 1.0


def worker_count(value: str | None) -> int:
    """``N`` or ``auto`` (the cores this process may run on)."""
    if value is None or value == "":
        return 1
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    try:
        count = int(value)
    except ValueError:
        raise ConfigError(f"--workers takes a number or 'auto', not {value!r}") from None
    if not 1 <= count <= 256:
        raise ConfigError("--workers must be between 1 and 256")
    return count


def listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def worker_args(argv: Sequence[str], config: Config, index: int, fd: int, node_id: str) -> list[str]:
    """The worker's command line: the parent's, with this worker's socket, id and ports last (argparse keeps
    the last occurrence of a flag)."""
    args = [sys.executable, "-m", "roomcast", *argv, "--workers", "1", "--listen-fd", str(fd)]
    args += ["--node-id", f"{node_id}-w{index}"]
    if config.media_port:
        args += ["--media-port", str(config.media_port + index)]
    if config.media_tcp_port:
        args += ["--media-tcp-port", str(config.media_tcp_port + index)]
    return args


def supervise(config: Config, workers: int, argv: Sequence[str]) -> int:
    """Run ``workers`` workers until a signal tells them to stop; 0 when every worker exited cleanly."""
    if not config.redis_url:
        raise ConfigError(
            "--workers N needs --redis-url (ROOMCAST_REDIS_URL): workers place rooms and relay signaling through "
            "Redis, e.g. a local `redis-server --port 6379 --save ''` and --redis-url redis://127.0.0.1:6379/0"
        )
    sock = listen_socket(config.host, config.port)
    node_id = config.node_id or "node-" + secrets.token_hex(4)
    stopping: list[int] = []
    procs: dict[int, subprocess.Popen[bytes]] = {}
    started: dict[int, float] = {}

    def start(index: int) -> None:
        procs[index] = subprocess.Popen(
            worker_args(argv, config, index, sock.fileno(), node_id), pass_fds=(sock.fileno(),)
        )
        started[index] = time.monotonic()

    def forward(sig: int, frame: FrameType | None) -> None:
        stopping.append(sig)
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(workers):
        start(index)
    print(
        f"roomcast supervising {workers} workers ({node_id}-w0..w{workers - 1}) on {config.host}:{config.port}",
        file=sys.stderr,
        flush=True,
    )
    codes: dict[int, int] = {}
    while True:
        for index, proc in list(procs.items()):
            code = proc.poll()
            if code is None:
                continue
            if stopping:
                codes[index] = code
                del procs[index]
            elif time.monotonic() - started[index] > RESTART_DELAY:
                log.warning("worker %d exited with %d: starting it again", index, code)
                print(f"roomcast: worker {index} exited with {code}; starting it again", file=sys.stderr, flush=True)
                start(index)
        if stopping and not procs:
            break
        time.sleep(0.1)  # a supervisor polling its children; signals interrupt it
    sock.close()
    return 0 if all(code == 0 for code in codes.values()) else 1
