"""Python client SDK: join a room and publish or receive RTP without decoding anything.

    room = await connect("ws://127.0.0.1:7880", token)
    publication = await room.publish(["video"])        # then publication.send(kind, payload, timestamp, marker)
    subscription = await room.subscribe(on_packet=cb)  # cb(track_sid, rtp_bytes) for every track in the room

Built on the same sans-IO core as the server, in the client role: ICE controlling against the server's
ICE-lite candidate, DTLS client, SRTP. Each media connection has its own UDP socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import struct
import time
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from roomcast.proto.dtls import DtlsCertificate
from roomcast.proto.webrtc import TransportConnected, TransportFailed, WebRtcTransport, new_ice_credentials
from roomcast.sdk.offer import OfferedTrack, client_offer
from roomcast.wire.sdp import SessionDescription

PacketCallback = Callable[[str, bytes], None]


class RoomcastError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class MediaConnection(asyncio.DatagramProtocol):
    """One WebRTC transport to the server on its own UDP socket; timers from the machine's poll_timeout."""

    def __init__(self, transport: WebRtcTransport) -> None:
        self.rtc = transport
        self.udp: asyncio.DatagramTransport | None = None
        self.connected = asyncio.get_running_loop().create_future()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.udp = transport  # type: ignore[assignment]
        self.rtc.direct_send = self._send
        self.rtc.start(time.monotonic())
        self._pump()

    def _send(self, data: bytes, remote: tuple[str, int]) -> None:
        if self.udp is not None:
            self.udp.sendto(data, remote)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.rtc.handle_datagram(data, (str(addr[0]), int(addr[1])), time.monotonic())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self.rtc.handle_timeout(time.monotonic())
        self._pump()

    def _pump(self) -> None:
        while (item := self.rtc.poll_transmit()) is not None:
            self._send(item.data, item.remote)
        while (event := self.rtc.poll_event()) is not None:
            if isinstance(event, TransportConnected) and not self.connected.done():
                self.connected.set_result(event.srtp_profile)
            elif isinstance(event, TransportFailed) and not self.connected.done():
                self.connected.set_exception(RoomcastError("connection_failed", event.reason))
        when = self.rtc.poll_timeout()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None and not self.rtc.closed:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + max(0.0, when - time.monotonic()), self._on_timer)

    def close(self) -> None:
        self.rtc.close()
        if self._timer is not None:
            self._timer.cancel()
        if self.udp is not None:
            self.udp.close()


class Publication:
    """Tracks we send: :meth:`send` packetizes nothing, it sends one RTP payload as one packet."""

    def __init__(self, conn: MediaConnection, tracks: list[OfferedTrack]) -> None:
        self.conn = conn
        self.tracks = {t.kind: t for t in tracks}
        self._seq = {t.kind: secrets.randbelow(0x8000) for t in tracks}

    def send(self, kind: str, payload: bytes, timestamp: int, marker: bool = False) -> int:
        track = self.tracks[kind]
        seq = self._seq[kind]
        self._seq[kind] = (seq + 1) & 0xFFFF
        pt = 96 if kind == "video" else 111
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, timestamp & 0xFFFFFFFF, track.ssrc)
        self.conn.rtc.send_rtp(header + payload)
        return seq


class Room:
    def __init__(self, ws: ClientConnection, joined: dict[str, Any], host: str) -> None:
        self.ws = ws
        self.joined = joined
        self.identity: str = joined["participant"]["identity"]
        self.host = host
        self.tracks: dict[str, dict[str, Any]] = {}
        self.certificate = DtlsCertificate.generate()
        self.connections: list[MediaConnection] = []
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.tracks_changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg["type"] == "tracks":
                    self.tracks = {t["sid"]: t for t in msg["tracks"]}
                    self.tracks_changed.set()
                elif msg["type"] == "answer" or (msg["type"] == "error" and msg.get("ref")):
                    self._answers.put_nowait(msg)
        except websockets.ConnectionClosed:
            pass

    async def _negotiate(
        self, target: str, offered: list[OfferedTrack], **extra: Any
    ) -> tuple[MediaConnection, SessionDescription]:
        ufrag, pwd = new_ice_credentials()
        sdp = client_offer(offered, ufrag, pwd, self.certificate.fingerprint[1], stream_id=self.identity)
        await self.ws.send(json.dumps({"type": "offer", "v": 1, "to": target, "sdp": sdp, **extra}))
        reply = await asyncio.wait_for(self._answers.get(), 10)
        if reply["type"] == "error":
            raise RoomcastError(reply["code"], reply["message"])
        answer = SessionDescription.parse(reply["sdp"])
        first = next(m for m in answer.media if m.port)
        candidate = first.candidates[0].split()
        server = (candidate[4], int(candidate[5]))
        rtc = WebRtcTransport(
            self.certificate,
            remote_ufrag=first.ice_ufrag or "",
            remote_pwd=first.ice_pwd or "",
            remote_fingerprints=first.fingerprints,
            dtls_role="client",
            local_ufrag=ufrag,
            local_pwd=pwd,
            server=server,
        )
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_datagram_endpoint(lambda: MediaConnection(rtc), local_addr=(self.host, 0))
        self.connections.append(conn)
        await asyncio.wait_for(conn.connected, 15)
        return conn, answer

    async def publish(self, kinds: list[str]) -> Publication:
        tracks = [
            OfferedTrack(kind, "sendonly", f"{kind}-{secrets.token_hex(3)}", _ssrc(), _ssrc() if kind == "video" else 0)
            for kind in kinds
        ]
        meta = [{"track_id": t.track_id, "source": "camera" if t.kind == "video" else "microphone"} for t in tracks]
        conn, _ = await self._negotiate("$publish", tracks, tracks=meta)
        return Publication(conn, tracks)

    async def subscribe(self, on_packet: PacketCallback, *, decrypt: bool = True) -> MediaConnection:
        """Receive every track published by others; ``decrypt=False`` counts packets from the clear RTP header."""
        wanted = [t for t in self.tracks.values() if t["participant"] != self.identity]
        offered = [OfferedTrack(t["kind"], "recvonly") for t in wanted]
        subscriptions = {str(mid): t["sid"] for mid, t in enumerate(wanted)}
        conn, answer = await self._negotiate("$subscribe", offered, subscriptions=subscriptions)
        by_ssrc: dict[int, str] = {}  # the answer's a=ssrc msid names the track each SSRC carries
        for m in answer.media:
            for ssrc, attrs in m.ssrcs().items():
                parts = attrs.get("msid", "").split()
                if len(parts) == 2:
                    by_ssrc[ssrc] = parts[1]

        def deliver(pkt: bytes) -> None:
            ssrc = int.from_bytes(pkt[8:12], "big")
            on_packet(by_ssrc.get(ssrc, ""), pkt)

        conn.rtc.on_rtp = deliver
        conn.rtc.decrypt = decrypt
        return conn

    async def close(self) -> None:
        for conn in self.connections:
            conn.close()
        await self.ws.close()
        self._reader.cancel()


def _ssrc() -> int:
    return int.from_bytes(os.urandom(4), "big") or 1


async def connect(url: str, token: str, *, host: str = "127.0.0.1") -> Room:
    base = url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/")
    ws = await websockets.connect(f"{base}/rtc?access_token={token}", max_size=2**20)
    await ws.send(json.dumps({"type": "join", "v": 1}))
    joined = json.loads(await ws.recv())
    if joined["type"] == "error":
        await ws.close()
        raise RoomcastError(joined["code"], joined["message"])
    room = Room(ws, joined, host)
    return room
