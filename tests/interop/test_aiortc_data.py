"""aiortc's SCTP/data channels (an independent implementation) through the server's data router."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from tests.signaling.wsclient import Client
from tests.support.server import ServerProcess


@pytest.fixture(autouse=True)
def loopback_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def envelope(header: dict, payload: bytes) -> bytes:  # type: ignore[type-arg]
    raw = json.dumps(header).encode()
    return struct.pack("!H", len(raw)) + raw + payload


def open_envelope(data: bytes) -> tuple[dict, bytes]:  # type: ignore[type-arg]
    size = struct.unpack_from("!H", data)[0]
    return json.loads(data[2 : 2 + size]), data[2 + size :]


async def data_peer(
    server: ServerProcess, room: str, who: str
) -> tuple[Client, RTCPeerConnection, RTCDataChannel, asyncio.Queue[bytes]]:
    client, _ = await Client.joined(server.ws_base, room, who)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("_roomcast", ordered=True)
    inbox: asyncio.Queue[bytes] = asyncio.Queue()
    channel.on("message", lambda m: inbox.put_nowait(m if isinstance(m, bytes) else m.encode()))
    opened = asyncio.Event()
    channel.on("open", opened.set)
    await pc.setLocalDescription(await pc.createOffer())
    await client.send({"type": "offer", "to": "$data", "sdp": pc.localDescription.sdp})
    answer = await client.recv_type("answer", timeout=10)
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    await asyncio.wait_for(opened.wait(), 10)
    return client, pc, channel, inbox


async def test_aiortc_clients_exchange_data_through_the_server(server: ServerProcess) -> None:
    room = "ai-data-" + uuid.uuid4().hex[:6]
    alice = await data_peer(server, room, "alice")
    bob = await data_peer(server, room, "bob")
    try:
        alice[2].send(envelope({"t": "greeting", "b": False}, b"hi bob"))
        header, payload = open_envelope(await asyncio.wait_for(bob[3].get(), 10))
        assert (header["f"], header["t"], payload) == ("alice", "greeting", b"hi bob")
        bob[2].send(envelope({"t": "bin", "b": True}, bytes(range(256)) * 200))  # 51,200 bytes, fragmented by SCTP
        header, payload = open_envelope(await asyncio.wait_for(alice[3].get(), 10))
        assert header["f"] == "bob" and payload == bytes(range(256)) * 200
    finally:
        for client, pc, _, _ in (alice, bob):
            await pc.close()
            await client.close()
