"""Random packet loss on ``lo`` inside the test's private network namespace, without ``sch_netem``.

Why not netem: the kernel of this machine kind has no ``sch_netem`` (nor ``act_gact``), so
``tc qdisc add dev lo root netem loss 10%`` fails with "Specified qdisc kind is unknown". What it does
have is HTB, a FIFO and the BPF classifier, and classic BPF can read a per-packet random number
(``ld rand``, SKF_AD_RANDOM). So: an HTB root whose default class passes everything, a second class
whose FIFO holds zero packets (everything sent there is dropped and counted), and a filter that sends a
packet there when ``rand < loss * 2**32``. 100 % is a blackhole. Every packet on ``lo`` is subject to it,
TCP included, in both directions (each one leaves through ``lo``), like ``netem`` on ``lo`` would.

It refuses to run outside a private namespace (only ``lo``/``jlo0`` may exist), and :meth:`clear`
removes everything it added.
"""

from __future__ import annotations

import re
import socket
import subprocess

DEV = "lo"
SKF_AD_RANDOM = 0xFFFFF000 + 56  # SKF_AD_OFF (-0x1000) + SKF_AD_RANDOM, as an unsigned 32-bit offset


def in_private_namespace() -> bool:
    return all(name in ("lo", "jlo0") for _, name in socket.if_nameindex())


def _tc(*args: str, check: bool = True) -> str:
    done = subprocess.run(["tc", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"tc {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


class LossyLoopback:
    """``set_loss(0.1)`` drops 10 % of the packets on ``lo`` at random; ``clear()`` heals the network."""

    def __init__(self) -> None:
        if not in_private_namespace():
            raise RuntimeError("refusing to impair lo outside a private network namespace (use scripts/test)")
        self.installed = False

    def _install(self) -> None:
        _tc("qdisc", "replace", "dev", DEV, "root", "handle", "1:", "htb", "default", "10", "r2q", "100000")
        _tc("class", "add", "dev", DEV, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit")
        _tc("class", "add", "dev", DEV, "parent", "1:", "classid", "1:20", "htb", "rate", "10gbit")
        _tc("qdisc", "add", "dev", DEV, "parent", "1:20", "handle", "20:", "pfifo", "limit", "0")
        self.installed = True

    def set_loss(self, loss: float) -> None:
        """Drop each packet with probability ``loss`` (0..1), replacing any previous setting."""
        if not self.installed:
            self._install()
        _tc("filter", "del", "dev", DEV, "parent", "1:", "prio", "1", check=False)
        threshold = min(0xFFFFFFFF, int(loss * 2**32))
        # ld rand; if A >= threshold goto pass; return -1 (the filter's classid: the dropping class); pass: 0
        program = f"4,32 0 0 {SKF_AD_RANDOM},53 1 0 {threshold},6 0 0 {0xFFFFFFFF},6 0 0 0"
        _tc("filter", "add", "dev", DEV, "parent", "1:", "prio", "1", "bpf", "bytecode", program, "classid", "1:20")

    def dropped(self) -> int:
        """Packets dropped so far by the impairment (the zero-length FIFO's drop counter)."""
        found = re.search(r"qdisc pfifo 20:.*?dropped (\d+)", _tc("-s", "qdisc", "show", "dev", DEV), re.S)
        return int(found.group(1)) if found else 0

    def clear(self) -> None:
        if self.installed:
            _tc("qdisc", "del", "dev", DEV, "root", check=False)
            self.installed = False
