"""A downlink bandwidth cap for one UDP port on ``lo`` inside the test's private namespace (no netem here).

HTB on ``lo``: a default class that passes everything, and a capped class (``rate`` = ``ceil`` = the cap)
whose leaf is a byte FIFO of ``queue_bytes``; a u32 filter sends UDP packets *to* the victim's port there.
The queue that builds is the delay growth a congestion controller must see, and what overflows it is
dropped and counted, as at a real bottleneck (RELIABILITY F7/F14). Refuses to run outside a private
network namespace; :meth:`BandwidthCap.lift` removes everything it added.
"""

from __future__ import annotations

import re

from tests.support.lossy_lo import DEV, _tc, in_private_namespace


class BandwidthCap:
    def __init__(self) -> None:
        if not in_private_namespace():
            raise RuntimeError("refusing to shape lo outside a private network namespace (use scripts/test)")
        self.installed = False

    def cap(self, port: int, kbit: int, queue_bytes: int = 40_000) -> None:
        """Cap UDP datagrams to ``port`` at ``kbit`` kbit/s (replacing any previous cap)."""
        self.lift()
        _tc("qdisc", "replace", "dev", DEV, "root", "handle", "1:", "htb", "default", "10", "r2q", "1000")
        _tc("class", "add", "dev", DEV, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit")
        _tc(
            "class",
            "add",
            "dev",
            DEV,
            "parent",
            "1:",
            "classid",
            "1:30",
            "htb",
            "rate",
            f"{kbit}kbit",
            "ceil",
            f"{kbit}kbit",
            "burst",
            "4k",
            "cburst",
            "4k",
        )
        _tc("qdisc", "add", "dev", DEV, "parent", "1:30", "handle", "30:", "bfifo", "limit", str(queue_bytes))
        _tc(
            "filter",
            "add",
            "dev",
            DEV,
            "parent",
            "1:",
            "protocol",
            "ip",
            "prio",
            "1",
            "u32",
            "match",
            "ip",
            "protocol",
            "17",
            "0xff",
            "match",
            "ip",
            "dport",
            str(port),
            "0xffff",
            "flowid",
            "1:30",
        )
        self.installed = True

    def dropped(self) -> int:
        """Packets the bottleneck dropped so far (its FIFO overflowed)."""
        found = re.search(r"qdisc bfifo 30:.*?dropped (\d+)", _tc("-s", "qdisc", "show", "dev", DEV), re.S)
        return int(found.group(1)) if found else 0

    def sent_bytes(self) -> int:
        """Bytes that crossed the bottleneck so far."""
        found = re.search(r"class htb 1:30 .*?Sent (\d+) bytes", _tc("-s", "class", "show", "dev", DEV), re.S)
        return int(found.group(1)) if found else 0

    def lift(self) -> None:
        if self.installed:
            _tc("qdisc", "del", "dev", DEV, "root", check=False)
            self.installed = False
