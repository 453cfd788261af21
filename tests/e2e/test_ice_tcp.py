"""Chromium whose UDP is blocked joins ``/call`` over ICE-TCP (RFC 6544) without TURN: two participants
decode each other's video, and the selected candidate pairs are TCP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_call import frames_decoded
from tests.interop.test_ice_tcp import SplittingRelay
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess, free_port
from tests.support.udp_blackhole import UdpBlackhole

pytestmark = pytest.mark.browser

SELECTED_PROTOCOLS = """async () => {
  const stats = await window.room.getStats();
  const byId = new Map(stats.map(s => [s.participant + '/' + s.id, s]));
  const out = [];
  for (const t of stats.filter(s => s.type === 'transport' && s.selectedCandidatePairId)) {
    const pair = byId.get(t.participant + '/' + t.selectedCandidatePairId);
    const local = pair && byId.get(t.participant + '/' + pair.localCandidateId);
    const remote = pair && byId.get(t.participant + '/' + pair.remoteCandidateId);
    out.push([local ? local.protocol : null, remote ? remote.protocol : null, remote ? remote.port : null]);
  }
  return out;
}"""


@pytest.fixture
def no_udp() -> Iterator[UdpBlackhole]:
    blackhole = UdpBlackhole()
    blackhole.install()
    yield blackhole
    blackhole.lift()


async def test_call_connects_over_ice_tcp_when_udp_is_blocked(
    server: ServerProcess, new_page: NewPage, no_udp: UdpBlackhole
) -> None:
    room = "tcp-call-" + uuid.uuid4().hex[:8]
    alice = await new_page(f"{server.base}/call?room={room}&identity=alice")
    await alice.wait_for_function("window.callState && window.callState.joined")
    bob = await new_page(f"{server.base}/call?room={room}&identity=bob")
    first = await frames_decoded(alice, 10), await frames_decoded(bob, 10)
    later = await frames_decoded(alice, first[0] + 30), await frames_decoded(bob, first[1] + 30)  # still flowing
    assert later[0] > first[0] and later[1] > first[1]
    for page in (alice, bob):
        pairs = await page.evaluate(SELECTED_PROTOCOLS)
        assert pairs, "no selected candidate pair"
        assert all(p == ["tcp", "tcp", server.media_tcp_port] for p in pairs), pairs  # publisher and subscriber
    assert no_udp.dropped() > 0  # UDP was tried and blackholed: TCP was not merely preferred
    assert await alice.evaluate("window.callState.errors") == []


async def test_call_survives_frames_split_across_reads(
    artifacts: Path, new_page: NewPage, no_udp: UdpBlackhole
) -> None:
    """1 % of what crosses the TCP path arrives cut into pieces (a relay in front of the ICE-TCP port,
    announced with --media-tcp-public-port as a port forward would be): both still decode all along."""
    listen = free_port()
    relay = SplittingRelay(("127.0.0.1", listen), split=0.01)
    _, relay_port = await relay.start()
    args = ["--media-tcp-port", str(listen), "--media-tcp-public-port", str(relay_port)]
    server = ServerProcess(artifacts, args=args)
    try:
        room = "tcp-split-" + uuid.uuid4().hex[:8]
        alice = await new_page(f"{server.base}/call?room={room}&identity=alice")
        await alice.wait_for_function("window.callState && window.callState.joined")
        bob = await new_page(f"{server.base}/call?room={room}&identity=bob")
        first = await frames_decoded(alice, 10), await frames_decoded(bob, 10)
        later = await frames_decoded(alice, first[0] + 30), await frames_decoded(bob, first[1] + 30)
        assert later[0] > first[0] and later[1] > first[1]
        for page in (alice, bob):
            pairs = await page.evaluate(SELECTED_PROTOCOLS)
            assert pairs and all(p == ["tcp", "tcp", relay_port] for p in pairs), pairs  # through the relay
        assert relay.splits >= 5, relay.splits  # the split path was taken, and the call went on
    finally:
        await relay.stop()
        assert server.stop() == 0
    assert "Traceback" not in server.log()
