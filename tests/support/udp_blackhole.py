"""Every UDP packet on ``lo`` dropped (and counted), TCP untouched: a network that blocks UDP, to force ICE
over TCP. HTB root whose default class passes everything; a class whose leaf is ``pfifo limit 0`` (no
netem or tc actions on this kernel); u32 filters send IPv4 and IPv6 UDP there. Only inside the test's
private namespace; :meth:`UdpBlackhole.lift` removes it."""

from __future__ import annotations

import re

from tests.support.lossy_lo import DEV, _tc, in_private_namespace


class UdpBlackhole:
    def __init__(self) -> None:
        if not in_private_namespace():
            raise RuntimeError("refusing to blackhole lo outside a private network namespace (use scripts/test)")
        self.installed = False

    def install(self) -> None:
        self.lift()
        _tc("qdisc", "replace", "dev", DEV, "root", "handle", "1:", "htb", "default", "10", "r2q", "100000")
        _tc("class", "add", "dev", DEV, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit")
        _tc("class", "add", "dev", DEV, "parent", "1:", "classid", "1:20", "htb", "rate", "10gbit")
        _tc("qdisc", "add", "dev", DEV, "parent", "1:20", "handle", "20:", "pfifo", "limit", "0")
        self.installed = True
        for prio, protocol, match in (("1", "ip", "ip"), ("2", "ipv6", "ip6")):
            filter_args = ["dev", DEV, "parent", "1:", "protocol", protocol, "prio", prio, "u32"]
            _tc("filter", "add", *filter_args, "match", match, "protocol", "17", "0xff", "flowid", "1:20")

    def dropped(self) -> int:
        """UDP packets dropped so far."""
        found = re.search(r"qdisc pfifo 20:.*?dropped (\d+)", _tc("-s", "qdisc", "show", "dev", DEV), re.S)
        return int(found.group(1)) if found else 0

    def lift(self) -> None:
        if self.installed:
            _tc("qdisc", "del", "dev", DEV, "root", check=False)
            self.installed = False
