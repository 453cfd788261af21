"""Issue 12 H3 with real Chromium: in an SFU room a crafted P2P offer gets the attacker no media, and the
victim's SDK builds no peer connection toward it; P2P rooms still call, under the direction rules."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from playwright.async_api import Page

from tests.e2e.test_call import wait_stat
from tests.signaling.wsclient import create_room, dev_token
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

# Runs before the page's scripts: every RTCPeerConnection the page creates is remembered.
COUNT_PEER_CONNECTIONS = """(() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  };
})();"""

# Every connection the victim has is one of the SDK's server connections ($publish, $subscribe, $data).
ONLY_SERVER_PCS = """() => {
  const server = Array.from(window.room.serverPeers.values()).map((p) => p.pc);
  return {pcs: window.__pcs.length, toParticipants: window.__pcs.filter((pc) => !server.includes(pc)).length,
          peers: window.room.peers.size};
}"""

# The attacker: its own signaling socket, and its own RTCPeerConnection offering to receive audio and
# video (the probe's shape: no a=msid line), plus a forged candidate. It applies whatever comes back.
ATTACK = """async ({url, victim, forged}) => {
  const state = window.attack = {errors: [], relayed: []};
  const pc = window.attackPc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  pc.addTransceiver('video', {direction: 'recvonly'});
  await pc.setLocalDescription();
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') resolve();
    pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
  });
  const sdp = pc.localDescription.sdp.split('\\r\\n').filter((line) => !line.startsWith('a=msid:')).join('\\r\\n');
  let chain = Promise.resolve();
  const ws = window.attackWs = new WebSocket(url);
  ws.onopen = () => ws.send(JSON.stringify({type: 'join', v: 1}));
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === 'error') state.errors.push(msg.code);
    if (msg.type === 'answer' || msg.type === 'offer' || msg.type === 'ice_candidate') state.relayed.push(msg.type);
    if (msg.type === 'answer') chain = chain.then(() => pc.setRemoteDescription({type: 'answer', sdp: msg.sdp}));
    if (msg.type === 'ice_candidate' && msg.candidate) {
      chain = chain.then(() => pc.addIceCandidate({candidate: msg.candidate, sdpMid: msg.sdp_mid,
                                                   sdpMLineIndex: msg.sdp_mline_index}));
    }
    if (msg.type === 'joined') {
      ws.send(JSON.stringify({type: 'offer', v: 1, to: victim, sdp}));
      ws.send(JSON.stringify({type: 'ice_candidate', v: 1, to: victim, candidate: forged, sdp_mid: '0',
                              sdp_mline_index: 0}));
    }
  };
}"""

# Wait (bounded by the caller) until the server refused both messages, or media reached the attacker.
OUTCOME = """async () => {
  for (;;) {
    let bytes = 0;
    (await window.attackPc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') bytes += s.bytesReceived || 0; });
    const state = window.attack;
    if (state.errors.length >= 2 || bytes > 0) return {errors: state.errors, relayed: state.relayed, bytes};
    await new Promise((r) => setTimeout(r, 200));
  }
}"""

VIDEO_PACKETS_FROM_CAROL = """async () => (await window.room.getStats())
  .filter((s) => s.participant === 'carol' && s.type === 'inbound-rtp' && s.kind === 'video')
  .reduce((n, s) => n + (s.packetsReceived || 0), 0)"""

INBOUND_PACKETS = """async () => (await window.room.getStats())
  .filter((s) => s.type === 'inbound-rtp').reduce((n, s) => n + (s.packetsReceived || 0), 0)"""

FORGED = "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host"


async def counted_page(new_page: NewPage, url: str) -> Page:
    page = await new_page("about:blank")
    await page.add_init_script(COUNT_PEER_CONNECTIONS)
    await page.goto(url)
    return page


async def test_sfu_room_gives_a_crafted_p2p_offer_no_media_nor_peer(server: ServerProcess, new_page: NewPage) -> None:
    room = "h3-" + uuid.uuid4().hex[:8]
    victim = await counted_page(new_page, f"{server.base}/call?room={room}&identity=victim")
    await victim.wait_for_function("window.callState && window.callState.joined", timeout=20_000)
    before = await victim.evaluate(ONLY_SERVER_PCS)
    assert before["toParticipants"] == 0 and before["pcs"] >= 1, before

    attacker = await new_page(f"{server.base}/")  # the lobby: no SDK room of its own; its own socket and peer
    token = dev_token(room, "mallory", can_publish=False, can_subscribe=False, can_publish_data=False)
    await attacker.evaluate(
        ATTACK, {"url": f"{server.ws_base}/rtc?access_token={token}", "victim": "victim", "forged": FORGED}
    )
    outcome: dict[str, Any] = await asyncio.wait_for(attacker.evaluate(OUTCOME), 30)
    assert outcome["bytes"] == 0, f"the attacker received {outcome['bytes']} bytes of the victim's media"
    assert outcome["relayed"] == [], outcome
    assert outcome["errors"] == ["wrong_mode", "wrong_mode"], outcome
    assert await victim.evaluate(ONLY_SERVER_PCS) == before  # the victim built nothing toward mallory
    await victim.wait_for_function("window.room.participants.has('mallory')")

    # Even if a relayed offer and candidate did arrive (an older server), the SDK ignores them in SFU mode.
    sdp = await attacker.evaluate("window.attackPc.localDescription.sdp")
    for message in (
        {"type": "offer", "v": 1, "sdp": sdp, "from": "mallory"},
        {"type": "ice_candidate", "v": 1, "candidate": FORGED, "sdp_mid": "0", "from": "mallory"},
        {"type": "answer", "v": 1, "sdp": sdp, "from": "mallory"},
    ):
        await victim.evaluate(
            "(m) => window.room.ws.dispatchEvent(new MessageEvent('message', {data: JSON.stringify(m)}))", message
        )
        assert await victim.evaluate(ONLY_SERVER_PCS) == before, message["type"]
    assert await victim.evaluate("window.callState.errors") == []


async def test_p2p_room_a_token_without_can_subscribe_sends_and_receives_nothing(
    server: ServerProcess, new_page: NewPage
) -> None:
    """The direction rules still let a P2P call through: Chromium's own SDP parses, and the SDK keeps a
    no-canSubscribe participant's m-lines sendonly, in its offers and in its answers."""
    room = "p2p-" + uuid.uuid4().hex[:8]
    create_room(server.base, room, mode="p2p")
    # alice publishes nothing at first, so carol alone offers (two publishers meeting would offer at once)
    alice = await new_page(f"{server.base}/chat?room={room}&identity=alice")
    await alice.wait_for_function("window.room && window.room.state === 'connected'")
    token = dev_token(room, "carol", can_subscribe=False)
    carol = await counted_page(new_page, f"{server.base}/call#token={token}")
    await carol.click("#start-media")  # a token from the URL: the page asks first (M7)
    await carol.wait_for_function("window.callState && window.callState.joined", timeout=20_000)
    assert await wait_stat(alice, VIDEO_PACKETS_FROM_CAROL, 50) >= 50  # carol's offer was relayed

    # alice now sends too: her offer is sendrecv, carol's answer must not receive
    await alice.evaluate(
        """async () => window.room.publish(await navigator.mediaDevices.getUserMedia({audio: true, video: true}))"""
    )
    await alice.wait_for_function(
        """() => window.room.peers.get('carol').pc.getTransceivers().filter((t) => t.sender.track).length === 2
             && window.room.peers.get('carol').pc.signalingState === 'stable'""",
        timeout=20_000,
    )
    directions = "() => window.room.peers.get('alice').pc.getTransceivers().map((t) => t.currentDirection)"
    await carol.wait_for_function(f"({directions})().filter((d) => d === 'sendonly').length === 2", timeout=20_000)
    assert set(await carol.evaluate(directions)) <= {"sendonly", "inactive"}
    towards_carol = "() => window.room.peers.get('carol').pc.getTransceivers().map((t) => t.currentDirection)"
    assert await alice.evaluate(towards_carol) == ["recvonly", "recvonly"]  # so alice's browser sends nothing
    assert await carol.evaluate(INBOUND_PACKETS) == 0
    assert await carol.evaluate("window.callState.errors") == []
    assert await alice.evaluate("window.room._lastError || null") is None
