"""A tiny protocol client for signaling tests (the real `websockets` library over real TCP)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from roomcast.rooms.tokens import Grants, mint

DEV_KEY, DEV_SECRET = "devkey", "devsecret"


def dev_token(room: str, identity: str, *, now: float | None = None, secret: str = DEV_SECRET, **grants: Any) -> str:
    import time

    return mint(DEV_KEY, secret, identity=identity, grants=Grants(room=room, **grants), now=now or time.time())


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, ws_base: str, token: str) -> Client:
        ws = await websockets.connect(f"{ws_base}/rtc?access_token={token}", max_size=2**22)
        return cls(ws)

    @classmethod
    async def joined(cls, ws_base: str, room: str, identity: str, **grants: Any) -> tuple[Client, dict[str, Any]]:
        client = await cls.open(ws_base, dev_token(room, identity, **grants))
        await client.send({"type": "join"})
        reply = await client.recv()
        assert reply["type"] == "joined", reply
        if reply["mode"] == "sfu" and grants.get("can_subscribe", True):
            tracks = await client.recv()
            assert tracks["type"] == "tracks", tracks
            reply["tracks"] = tracks["tracks"]
        return client, reply

    async def send(self, msg: dict[str, Any]) -> None:
        msg.setdefault("v", 1)
        await self.ws.send(json.dumps(msg))

    async def send_raw(self, raw: str | bytes) -> None:
        await self.ws.send(raw)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        data: dict[str, Any] = json.loads(raw)
        return data

    async def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            msg = await self.recv(timeout)
            if msg["type"] == kind:
                return msg

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Drain until the server closes; return (code, reason)."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed as exc:
            return (exc.rcvd.code if exc.rcvd else None), (exc.rcvd.reason if exc.rcvd else "")

    async def close(self) -> None:
        await self.ws.close()


def create_room(base: str, name: str, **fields: Any) -> None:
    """Create ``name`` through the admin API (dev credentials), e.g. ``mode="p2p"``."""
    res = httpx.post(f"{base}/api/rooms", json={"name": name, **fields}, auth=(DEV_KEY, DEV_SECRET))
    assert res.status_code == 201, res.text
