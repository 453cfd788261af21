"""Real coturn: relay-only Chromium reaches the SFU through TURN (UDP and TCP) with minted credentials;
bad credentials and, in the production config, loopback peers are refused."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from roomcast.turn.credentials import ice_servers, mint_turn_credentials
from tests.e2e.test_sfu import decoding_tracks
from tests.support.browser_fixtures import NewPage
from tests.support.coturn import Coturn
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

SELECTED_PAIR = """async () => {
  const peer = window.room.serverPeers.get('$subscribe') || window.room.serverPeers.get('$echo');
  const stats = [];
  (await peer.pc.getStats()).forEach(s => stats.push(s));
  const transport = stats.find(s => s.type === 'transport');
  const pair = stats.find(s => s.id === transport.selectedCandidatePairId);
  const local = stats.find(s => s.id === pair.localCandidateId);
  return {type: local.candidateType, relayProtocol: local.relayProtocol};
}"""

GATHER = """async ({servers}) => {
  const pc = new RTCPeerConnection({iceServers: servers, iceTransportPolicy: 'relay'});
  pc.createDataChannel('probe');
  const relays = [];
  pc.onicecandidate = (e) => { if (e.candidate && e.candidate.type === 'relay') relays.push(e.candidate.candidate); };
  await pc.setLocalDescription();
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') resolve();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') resolve(); };
  });
  pc.close();
  return relays.length;
}"""


# coturn's verbose log: the page's participant ("x", REST username "<expiry>:x") allocated, then was refused
# a permission for its peer (the server's 127.0.0.1 candidate) by the denied-peer-ip ranges
ALLOCATED = re.compile(r"user <\d+:x>: incoming packet ALLOCATE processed, success")
DENIED = re.compile(r"user <\d+:x>: incoming packet CREATE_PERMISSION processed, error 403: Forbidden IP")


@pytest.fixture(scope="module")
def coturn(artifacts: Path) -> Iterator[Coturn]:
    turn = Coturn(artifacts / "coturn-dev", dev=True)
    yield turn
    turn.stop()


@pytest.fixture(scope="module")
def turn_server(artifacts: Path, coturn: Coturn) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        artifacts,
        env={
            "ROOMCAST_TURN_SECRET": coturn.secret,
            "ROOMCAST_TURN_HOST": "127.0.0.1",
            "ROOMCAST_TURN_PORT": str(coturn.port),
        },
    )
    yield proc
    assert proc.stop() == 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_relay_only_browsers_meet_in_the_sfu_through_coturn(
    turn_server: ServerProcess, coturn: Coturn, new_page: NewPage, transport: str
) -> None:
    room = f"relay-{transport}-{uuid.uuid4().hex[:6]}"
    query = f"room={room}&relay=1&turn={transport}"
    host = await new_page(f"{turn_server.base}/stream?{query}&role=host&identity=host")
    await host.wait_for_function("window.streamState && window.streamState.joined")
    viewer = await new_page(f"{turn_server.base}/stream?{query}&role=viewer&identity=viewer")
    await viewer.wait_for_function("window.streamState && window.streamState.joined")
    frames = await decoding_tracks(viewer, 1, timeout=30)
    assert max(frames) > 0
    pair = await viewer.evaluate(SELECTED_PAIR)
    assert pair == {"type": "relay", "relayProtocol": transport}


async def test_coturn_refuses_bad_and_expired_credentials(
    coturn: Coturn, new_page: NewPage, turn_server: ServerProcess
) -> None:
    page = await new_page(turn_server.base + "/")
    good = mint_turn_credentials(coturn.secret, "probe", time.time())
    wrong = mint_turn_credentials("not-the-secret-at-all", "probe", time.time())
    expired = mint_turn_credentials(coturn.secret, "probe", time.time() - 3600)
    counts = {}
    for name, creds in (("good", good), ("wrong", wrong), ("expired", expired)):
        servers = ice_servers("127.0.0.1", coturn.port, creds, tcp=False)[1:]
        counts[name] = await asyncio.wait_for(page.evaluate(GATHER, {"servers": servers}), 30)
    assert counts == {"good": 1, "wrong": 0, "expired": 0}, counts


async def test_production_config_denies_relaying_to_loopback(artifacts: Path, new_page: NewPage) -> None:
    prod = Coturn(artifacts / "coturn-prod", dev=False)
    server = ServerProcess(
        artifacts,
        env={
            "ROOMCAST_TURN_SECRET": prod.secret,
            "ROOMCAST_TURN_HOST": "127.0.0.1",
            "ROOMCAST_TURN_PORT": str(prod.port),
        },
    )
    try:
        page = await new_page(f"{server.base}/echo?room=deny-{uuid.uuid4().hex[:6]}&identity=x&relay=1&turn=udp")
        deadline = time.monotonic() + 20
        while not DENIED.search(prod.log()) and time.monotonic() < deadline:  # noqa: ASYNC110 - coturn's log file
            await asyncio.sleep(0.2)
        log = prod.log()
        # the credentials were good (the allocation succeeded); the peer, our own 127.0.0.1, was refused
        # by the denied-peer-ip ranges: not any "403" anywhere in the log (a bad password is a 401, but a
        # stale nonce, a wrong realm or a quota are 403s too)
        assert ALLOCATED.search(log), log[-2000:]
        assert DENIED.search(log), log[-2000:]
        assert await page.evaluate("!window.echoState.connected")
    finally:
        server.stop()
        prod.stop()
