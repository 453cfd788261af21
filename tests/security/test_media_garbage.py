"""B1/B2 at the media port while a canary echo call runs (oracles O1 no crash, O2 counted, O3 canary)."""

from __future__ import annotations

import random
import re
import socket
import struct

import httpx
import pytest

from roomcast.wire.stun import binding_request
from tests.support.browser_fixtures import NewPage
from tests.support.canary import Canaries
from tests.support.resources import ResourceOracle
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser


def metric(server: ServerProcess, name: str, label: str | None = None) -> float:
    text = httpx.get(server.base + "/metrics").text
    pattern = re.escape(name) + (r"\{reason=\"" + re.escape(label) + r"\"\}" if label else "") + r" ([0-9.e+]+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def garbage(server_ufrag: str, client_ufrag: str) -> list[bytes]:
    rng = random.Random(7)
    rtp_header = struct.pack("!BBHII", 0x80, 96, 1, 2, 3)
    return [
        *(rng.randbytes(rng.randint(1, 1400)) for _ in range(300)),
        b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42",  # truncated STUN
        b"\x00" * 24,
        rtp_header[:5],  # too short
        struct.pack("!BBHII", 0x40, 96, 1, 2, 3) + b"x",  # bad version
        struct.pack("!BBHII", 0xA0, 96, 1, 2, 3) + b"ab" + b"\xff",  # padding longer than payload
        struct.pack("!BBHII", 0x8F, 96, 1, 2, 3),  # CSRC count past the end
        # a check for the canary's ufrag with the wrong password: must be dropped, not answered
        binding_request(
            b"\x01" * 12,
            f"{server_ufrag}:{client_ufrag}",
            "not-the-password",
            priority=1,
            controlling=True,
            tie_breaker=1,
            use_candidate=True,
        ),
    ]


async def test_garbage_flood_is_dropped_counted_and_the_canary_keeps_flowing(
    server: ServerProcess, new_page: NewPage, canaries: Canaries
) -> None:
    canary = await canaries.browser(server, new_page)
    oracle = ResourceOracle(server)
    oracle.baseline()  # the canary's call alone
    page = canary.page
    answer = await page.evaluate("window.echoPeer.pc.remoteDescription.sdp")
    offer = await page.evaluate("window.echoPeer.pc.localDescription.sdp")
    ufrag = re.search(r"a=ice-ufrag:(\S+)", answer).group(1)  # type: ignore[union-attr]
    client_ufrag = re.search(r"a=ice-ufrag:(\S+)", offer).group(1)  # type: ignore[union-attr]
    drops_before = metric(server, "roomcast_media_dropped_total", "socket_unknown_address")
    integrity_before = metric(server, "roomcast_media_dropped_total", "ice_bad_integrity")
    flood_from = canary.mark()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    packets = garbage(ufrag, client_ufrag)
    for _ in range(10):
        for data in packets:
            sock.sendto(data, ("127.0.0.1", server.media_port))
    sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        sock.recvfrom(2048)  # nothing at all is answered to the attacker
    sock.close()

    # O3 during the flood. The burst (about 7 MB of socket memory at once) overflows the media socket's
    # 4 MiB receive buffer for a moment: the kernel drops some of the canary's packets with the garbage,
    # and each lost one costs the canary a keyframe round trip (measured up to 1.1 s without a new frame)
    canary.assert_flowed(since=flood_from, max_gap=1.5)
    await canary.assert_alive(60)  # and after: about 2 s more of echoed video
    assert server.alive()
    unknown = metric(server, "roomcast_media_dropped_total", "socket_unknown_address")
    # 3,070 datagrams were sent at once; the kernel may drop some of them before we read, so the
    # count is a lower bound: what matters is that what arrived was dropped *and counted*.
    assert unknown - drops_before >= 1000
    integrity = metric(server, "roomcast_media_dropped_total", "ice_bad_integrity") - integrity_before
    assert 1 <= integrity <= 10  # sent 10 (a lower bound as above), none answered
    assert "Traceback" not in server.log()
    await oracle.assert_back_to_baseline(rss_growth_kib=16 * 1024)  # O4: the flood left nothing behind
