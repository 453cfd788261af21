"""A second loopback-like interface (``jlo0``, 127.0.0.2) inside the test's private namespace.

libnice (Janus, GStreamer) gathers no candidate on ``lo``; an ``ifb`` device with 127.0.0.2 is accepted
by every stack here (TESTING.md). Created only inside the private namespace of scripts/test.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def jlo0() -> Iterator[None]:
    if "jlo0" in [name for _, name in socket.if_nameindex()]:
        yield
        return
    if os.environ.get("ROOMCAST_REQUIRE_NETNS") != "1":
        pytest.skip("adds an interface: run it inside the private namespace of scripts/test")
    for command in ("ip link add jlo0 type ifb", "ip addr add 127.0.0.2/32 dev jlo0", "ip link set jlo0 up"):
        subprocess.run(command.split(), check=True)
    yield
    subprocess.run(["ip", "link", "del", "jlo0"], check=False)
