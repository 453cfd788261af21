"""aiortc's SCTP/data channels (an independent implementation) through the server's data router."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.support.datapeer import data_peer, envelope, loopback_candidates, open_envelope
from tests.support.server import ServerProcess


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_candidates(monkeypatch)


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
