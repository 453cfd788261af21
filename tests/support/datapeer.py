"""An aiortc peer on the server's ``$data`` endpoint (aiortc: an independent SCTP/DCEP implementation)."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from tests.signaling.wsclient import Client
from tests.support.server import ServerProcess

DataPeer = tuple[Client, RTCPeerConnection, RTCDataChannel, "asyncio.Queue[bytes]"]


def loopback_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice skips 127.0.0.1 when gathering; in a private namespace it is the only address."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def envelope(header: dict[str, Any], payload: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("!H", len(raw)) + raw + payload


def open_envelope(data: bytes) -> tuple[dict[str, Any], bytes]:
    size = struct.unpack_from("!H", data)[0]
    header: dict[str, Any] = json.loads(data[2 : 2 + size])
    return header, data[2 + size :]


async def data_peer(server: ServerProcess, room: str, who: str, **grants: Any) -> DataPeer:
    """Join ``room`` as ``who`` (token ``grants``), open ``_roomcast`` to ``$data``; messages go to the queue."""
    client, _ = await Client.joined(server.ws_base, room, who, **grants)
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
