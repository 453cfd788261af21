"""Abuse of the ``$data`` endpoint against a real server (issue 12: C1 history replay flood, M3 canSubscribe).

The attacker is aiortc (an independent SCTP/DCEP stack) in this process. To make it stop acknowledging
the server's DATA, the test replaces ``_send_sack`` on the attacker's ``RTCSctpTransport`` instance with
a coroutine that does nothing: aiortc calls ``await self._send_sack()`` from exactly one place (the end
of each received packet), so its own DATA (the channel OPENs) still flows and the server still SACKs
it, while the server's sent chunks are never acknowledged and pile up in its association.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from roomcast.sfu.datachannels import CHUNK, HISTORY, RECEIVER_BACKLOG
from tests.security.test_media_garbage import metric
from tests.signaling.wsclient import Client
from tests.support.browser_fixtures import NewPage
from tests.support.canary import Canaries
from tests.support.datapeer import DataPeer, data_peer, envelope, loopback_candidates, open_envelope
from tests.support.server import ServerProcess

OPENS = 100  # DATA_CHANNEL_OPENs for "_roomcast" sent by the attacker (about 5 KB up)
FEED = 80  # live 60 KB chat messages sent to the stalled attacker: more than RECEIVER_BACKLOG


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_candidates(monkeypatch)


async def room_stats(server: ServerProcess, room: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.get(f"{server.base}/api/rooms/{room}/stats", auth=("devkey", "devsecret"))
    stats: dict[str, Any] = reply.json()
    return stats


async def pong_within(client: Client, seconds: float) -> None:
    """The server answers a signaling ping (a generous sanity bound, not a latency measurement)."""
    await client.send({"type": "ping", "ts": 1.0})
    await client.recv_type("pong", timeout=seconds)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])


async def close_all(*peers: DataPeer) -> None:
    for client, pc, _, _ in peers:
        await pc.close()
        await client.close()


@pytest.mark.browser
async def test_history_replay_flood_from_a_stalled_peer_is_refused_and_bounded(
    server: ServerProcess, new_page: NewPage, canaries: Canaries
) -> None:
    """C1: fill the history, stop SACKing, open 100 more ``_roomcast``: the server stays responsive."""
    canary = await canaries.browser(server, new_page)
    pinger, _ = await Client.joined(server.ws_base, "ping-" + uuid.uuid4().hex[:6], "pinger")
    await pong_within(pinger, 5)

    room = "flood-" + uuid.uuid4().hex[:6]
    attacker = await data_peer(server, room, "attacker")
    rss_before = rss_kib(server.proc.pid)
    for i in range(HISTORY):
        attacker[2].send(envelope({"t": "chat", "b": True}, bytes([i]) * CHUNK))
    for _ in range(200):  # bounded poll: the server has stored the whole history
        if (await room_stats(server, room))["data"].get("data_messages_in", 0) >= HISTORY:
            break
        await asyncio.sleep(0.05)
    assert (await room_stats(server, room))["data"]["data_messages_in"] >= HISTORY
    feeder = await data_peer(server, room, "feeder")  # a well-behaved member whose chat the attacker stalls on

    async def no_sack() -> None:
        return None

    attacker[1].sctp._send_sack = no_sack  # the attacker acknowledges nothing from now on
    attack_from = canary.mark()
    extra = [attacker[1].createDataChannel("_roomcast", ordered=True) for _ in range(OPENS)]
    for _ in range(200):  # bounded poll: aiortc numbers a channel when it hands its OPEN to SCTP
        if all(c.id is not None for c in extra):
            break
        await asyncio.sleep(0.05)
    assert len({c.id for c in extra} | {attacker[2].id}) == OPENS + 1  # every OPEN on a stream of its own

    for i in range(FEED):
        feeder[2].send(envelope({"t": "chat", "b": True}, bytes([i]) * CHUNK))

    try:
        refused = backlog = 0.0
        for _ in range(300):  # bounded: until every OPEN was refused and the live chat hit the backlog
            await pong_within(pinger, 5)  # before the fix: no pong for ~20 s while the server replays
            data = (await room_stats(server, room))["data"]
            refused = data.get("data_dropped_channel_refused", 0)
            backlog = data.get("data_dropped_receiver_backlog", 0)
            if refused >= OPENS and backlog > 0:
                break
            await asyncio.sleep(0.1)
        assert refused == OPENS  # the attacker's first "_roomcast" keeps the only slot
        assert backlog > 0  # a stalled receiver's live chat is dropped and counted, not queued

        stats = await room_stats(server, room)
        buffers = stats["data_buffers"]["attacker"]
        # what the server holds for the attacker: at most one message past the router's backlog
        # check, far under the association's own hard bound (before: 227 MB)
        assert RECEIVER_BACKLOG <= buffers["peak"] <= RECEIVER_BACKLOG + CHUNK + 4096
        assert buffers["limit"] >= buffers["peak"]
        assert buffers["channels"] == 1  # only the first "_roomcast" was accepted
        # history went out once: to the feeder when it joined; never again to the attacker
        assert stats["data"]["data_messages_out"] <= HISTORY + FEED
        assert metric(server, "roomcast_media_dropped_total", "data_dropped_channel_refused") >= OPENS
        assert rss_kib(server.proc.pid) - rss_before < 100 * 1024  # sanity bound (before: +287 MB)

        await pong_within(pinger, 5)
        canary.assert_flowed(since=attack_from, max_gap=1.0)  # O3 during the replay flood
        await canary.assert_alive(60)  # about 2 s more of echoed video
        assert server.alive()
    finally:
        await close_all(attacker, feeder)
        await pinger.close()


async def test_can_subscribe_false_receives_no_room_data(server: ServerProcess) -> None:
    """M3: without canSubscribe a participant gets neither chat history nor live messages."""
    room = "nosub-" + uuid.uuid4().hex[:6]
    talker = await data_peer(server, room, "talker")
    witness = await data_peer(server, room, "witness")
    talker[2].send(envelope({"t": "chat", "b": False}, b"history"))
    assert open_envelope(await asyncio.wait_for(witness[3].get(), 10))[1] == b"history"

    # neither grant: nothing to do on $data, the offer is refused with a typed error
    blind, _ = await Client.joined(server.ws_base, room, "blind", can_subscribe=False, can_publish_data=False)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("_roomcast")
    await pc.setLocalDescription(await pc.createOffer())
    await blind.send({"type": "offer", "to": "$data", "sdp": pc.localDescription.sdp})
    reply = await blind.recv(10)
    while reply["type"] not in ("answer", "error"):
        reply = await blind.recv(10)
    assert (reply["type"], reply.get("code"), reply.get("ref")) == ("error", "permission_denied", "$data")
    await pc.close()
    await blind.close()

    # canPublishData without canSubscribe: may send, receives only the server's answers to its own sends
    sender = await data_peer(server, room, "sender", can_subscribe=False)
    try:
        talker[2].send(envelope({"t": "chat", "b": False}, b"live"))
        assert open_envelope(await asyncio.wait_for(witness[3].get(), 10))[1] == b"live"
        sender[2].send(envelope({"t": "chat", "b": False}, b"from sender"))
        header, payload = open_envelope(await asyncio.wait_for(witness[3].get(), 10))
        assert (header["f"], payload) == ("sender", b"from sender")
        sender[2].send(envelope({"t": "control", "b": False}, b"not an admin"))  # refused: an error comes back
        header, _ = open_envelope(await asyncio.wait_for(sender[3].get(), 10))
        # the reliable channel is ordered: history and "live" would have arrived before this error
        assert header.get("e") == "permission_denied", header
        assert sender[3].empty()
    finally:
        await close_all(talker, witness, sender)
