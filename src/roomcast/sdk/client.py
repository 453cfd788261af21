"""Python client SDK: join a room and publish or receive RTP without decoding anything.

    room = await connect("ws://127.0.0.1:7880", token)
    publication = await room.publish(["video"])        # then publication.send(kind, payload, timestamp, marker)
    subscription = await room.subscribe(on_packet=cb)  # cb(track_sid, rtp_bytes) for every track in the room
    subscription = await room.subscribe(on_frame=cb)   # cb(Frame): whole VP8/H.264/Opus frames (sdk.frames)

Built on the same sans-IO core as the server, in the client role: ICE controlling against the server's
ICE-lite candidate, DTLS client, SRTP. Each media connection has its own UDP socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import ssl
import struct
import time
from collections.abc import Callable, Collection
from typing import Any, Literal

import websockets
from websockets.asyncio.client import ClientConnection

from roomcast.errors import CodedError
from roomcast.proto.dtls import DtlsCertificate
from roomcast.proto.feedback import RtxRing
from roomcast.proto.sctp import AssociationEstablished, ChannelOpened, MessageReceived, SctpAssociation
from roomcast.proto.webrtc import (
    TransportConnected,
    TransportFailed,
    TransportSctp,
    WebRtcTransport,
    new_ice_credentials,
)
from roomcast.sdk.frames import CODECS, Frame, FrameAssembler
from roomcast.sdk.offer import PAYLOAD_TYPES, VIDEO_CODECS, OfferedTrack, client_offer
from roomcast.sdk.recovery import Recovery
from roomcast.signaling import messages as schema
from roomcast.wire import ParseError
from roomcast.wire.envelope import CHUNK, LABEL_LOSSY, LABEL_RELIABLE, decode_envelope, encode_envelope
from roomcast.wire.rtcp import Fir, GenericNack, Pli, parse_compound
from roomcast.wire.sdp import SessionDescription

PacketCallback = Callable[[str, bytes], None]
RETRANSMIT_HISTORY = 512  # packets per track kept for NACKs: about 3 s of 1.5 Mbps video
FrameCallback = Callable[[Frame], None]


class RoomcastError(CodedError):
    """A refusal from the server (its ``error`` message) or a failure in the client, by registry code."""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class MediaConnection(asyncio.DatagramProtocol):
    """One WebRTC transport to the server on its own UDP socket; timers from the machine's poll_timeout."""

    def __init__(self, transport: WebRtcTransport) -> None:
        self.rtc = transport
        self.sctp_backlog: list[Any] = []  # events that arrive before anyone listens (handshake races)
        self.on_sctp: Callable[[Any], None] = self.sctp_backlog.append
        self.udp: asyncio.DatagramTransport | None = None
        self.recovery: Recovery | None = None  # subscribe(nack=True)
        self.connected = asyncio.get_running_loop().create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None  # the poll_timeout() the timer was armed for

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
            elif isinstance(event, TransportSctp):
                self.on_sctp(event.event)
        when = self.rtc.poll_timeout()
        if self._timer is not None:
            if when == self._timer_when and not self.rtc.closed:
                return  # the usual case for media packets: keep the timer, re-arming costs more than the packet
            self._timer.cancel()
            self._timer = None
        if when is not None and not self.rtc.closed:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + max(0.0, when - time.monotonic()), self._on_timer)
            self._timer_when = when

    def send_rtcp(self, packet: bytes) -> None:
        """Send one RTCP packet (e.g. a PLI, RFC 4585 §6.3.1) to the server now."""
        self.rtc.send_rtcp(packet)
        self._pump()

    def close(self) -> None:
        self.rtc.close()
        if self._timer is not None:
            self._timer.cancel()
        if self.udp is not None:
            self.udp.close()


class Publication:
    """Tracks we send: :meth:`send` packetizes nothing, it sends one RTP payload as one packet.

    The last :data:`RETRANSMIT_HISTORY` packets of each track are kept, and a NACK from the server
    (RFC 4585 §6.2.1) resends them as they were (same SSRC and sequence number: the SRTP sender allows
    the repeat, and the server never saw them). Keyframe requests (PLI/FIR) are counted in
    :attr:`keyframe_requests`: pre-encoded media cannot make one, a live encoder may.
    """

    def __init__(self, conn: MediaConnection, tracks: list[OfferedTrack], video_codec: str = "vp8") -> None:
        self.conn = conn
        self.tracks = {t.kind: t for t in tracks}
        self.video_codec = video_codec
        self.payload_types = {"video": PAYLOAD_TYPES[video_codec], "audio": PAYLOAD_TYPES["opus"]}
        self._seq = {t.kind: secrets.randbelow(0x8000) for t in tracks}
        self._history = {t.ssrc: RtxRing(RETRANSMIT_HISTORY) for t in tracks}
        self.retransmitted = 0
        self.keyframe_requests = 0
        conn.rtc.on_rtcp = self._on_rtcp

    def send(self, kind: str, payload: bytes, timestamp: int, marker: bool = False) -> int:
        track = self.tracks[kind]
        seq = self._seq[kind]
        self._seq[kind] = (seq + 1) & 0xFFFF
        pt = self.payload_types[kind]
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, timestamp & 0xFFFFFFFF, track.ssrc)
        packet = header + payload
        self._history[track.ssrc].store(seq, packet)
        self.conn.rtc.send_rtp(packet)
        return seq

    def _on_rtcp(self, data: bytes) -> None:
        try:
            packets = parse_compound(data)
        except ParseError:
            return
        for packet in packets:
            if isinstance(packet, GenericNack):
                history = self._history.get(packet.media_ssrc)
                if history is None:
                    continue
                for seq in packet.lost:
                    sent = history.get(seq)
                    if sent is not None:
                        self.conn.rtc.send_rtp(sent)
                        self.retransmitted += 1
            elif isinstance(packet, Pli | Fir):
                self.keyframe_requests += 1


async def stream_ivf(publication: Publication, path: str, *, loop: bool = True, mtu: int = 1100) -> int:
    """Publish a VP8 IVF file in real time (looping), packetized per RFC 7741; returns frames sent."""
    from pathlib import Path

    from roomcast.wire.vp8 import packetize, read_ivf

    header, frames = read_ivf(await asyncio.to_thread(Path(path).read_bytes))
    if publication.video_codec != "vp8":
        raise RoomcastError("unsupported_codec", f"the publication sends {publication.video_codec}, not VP8")
    if header.fourcc != b"VP80":
        raise RoomcastError("unsupported_codec", f"{path} holds {header.fourcc!r}, only VP8 IVF is supported")
    interval = header.scale / header.rate
    sent = 0
    start = time.monotonic()
    while True:
        for frame in frames:
            rtp_ts = int(sent * interval * 90000)
            for payload, marker in packetize(frame.data, mtu):
                publication.send("video", payload, rtp_ts, marker=marker)
            sent += 1
            publication.conn._pump()
            await asyncio.sleep(max(0.0, start + sent * interval - time.monotonic()))  # real-time pacing
        if not loop:
            return sent


async def stream_ffmpeg(publication: Publication, input_args: list[str], *, mtu: int = 1100) -> int:
    """Publish a live source through ffmpeg (``-f v4l2 -i /dev/video0``, ``-f lavfi -i testsrc``...):
    ffmpeg encodes VP8 into an IVF pipe, we only packetize (RFC 7741). Returns frames sent when it ends."""
    from roomcast.wire.vp8 import packetize

    process = await asyncio.create_subprocess_exec(
        "ffmpeg",
        "-loglevel",
        "error",
        *input_args,
        "-an",
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-b:v",
        "600k",
        "-g",
        "30",
        "-f",
        "ivf",
        "pipe:1",
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    sent = 0
    start = time.monotonic()
    try:
        header = await process.stdout.readexactly(32)
        if header[:4] != b"DKIF":
            raise RoomcastError("bad_source", "ffmpeg did not produce IVF")
        while True:
            size = struct.unpack("<I", (await process.stdout.readexactly(12))[:4])[0]
            frame = await process.stdout.readexactly(size)
            rtp_ts = int((time.monotonic() - start) * 90000)
            for payload, marker in packetize(frame, mtu):
                publication.send("video", payload, rtp_ts, marker=marker)
            publication.conn._pump()
            sent += 1
    except asyncio.IncompleteReadError:
        return sent
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


EventCallback = Callable[[dict[str, Any]], None]
EVENTS = frozenset(
    {
        "participant_joined",
        "participant_left",
        "participant_updated",
        "tracks",
        "server_shutdown",
        "error",
        "disconnected",
    }
)


class Room:
    """A joined room. ``participants`` (identity -> info) and ``tracks`` (sid -> info) follow the
    server's events; :meth:`on` registers callbacks for them, as the JS SDK's ``room.on`` does."""

    def __init__(self, ws: ClientConnection, joined: dict[str, Any], host: str, ice_transport: str = "udp") -> None:
        self.ws = ws
        self.ice_transport = ice_transport  # "udp", or "tcp": ICE over TCP to the server's passive candidate
        self.tcp_address: tuple[str, int] | None = None  # connect there instead of the announced TCP candidate
        self.media_timeout = 15.0  # seconds for a media connection's ICE and DTLS to complete
        self.joined = joined
        self.identity: str = joined["participant"]["identity"]
        self.host = host
        self.participants: dict[str, dict[str, Any]] = {p["identity"]: p for p in joined.get("participants", [])}
        self._handlers: dict[str, list[EventCallback]] = {}
        self.tracks: dict[str, dict[str, Any]] = {}
        self.certificate = DtlsCertificate.generate()
        self.connections: list[MediaConnection] = []
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.tracks_changed = asyncio.Event()
        self.frame_assemblers: dict[str, FrameAssembler] = {}  # track sid -> assembler (subscribe(on_frame=))
        self._reader = asyncio.create_task(self._read())

    def on(self, event: str, callback: EventCallback) -> None:
        """Call ``callback(message)`` on every ``event``: participant_joined, participant_left,
        participant_updated, tracks, server_shutdown, error (not answering a request of ours), or
        disconnected (``{"code": close code}``). Exceptions in callbacks are the caller's."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; one of {sorted(EVENTS)}")
        self._handlers.setdefault(event, []).append(callback)

    def _emit(self, event: str, msg: dict[str, Any]) -> None:
        for callback in self._handlers.get(event, ()):
            callback(msg)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind == "tracks":
                    self.tracks = {t["sid"]: t for t in msg["tracks"]}
                    self.tracks_changed.set()
                elif kind in ("participant_joined", "participant_updated"):
                    self.participants[msg["participant"]["identity"]] = msg["participant"]
                elif kind == "participant_left":
                    self.participants.pop(msg["identity"], None)
                elif kind == "answer" or (kind == "error" and msg.get("ref")):
                    self._answers.put_nowait(msg)
                    continue
                if kind in EVENTS:
                    self._emit(kind, msg)
        except websockets.ConnectionClosed:
            pass
        self._emit("disconnected", {"code": self.ws.close_code})

    async def _negotiate(
        self,
        target: str,
        offered: list[OfferedTrack],
        sctp: SctpAssociation | None = None,
        *,
        tracks: list[schema.TrackMeta] | None = None,
        subscriptions: dict[str, str] | None = None,
    ) -> tuple[MediaConnection, SessionDescription]:
        ufrag, pwd = new_ice_credentials()
        sdp = client_offer(offered, ufrag, pwd, self.certificate.fingerprint[1], stream_id=self.identity)
        offer = schema.Offer(to=target, sdp=sdp, tracks=tracks, subscriptions=subscriptions)
        await self.ws.send(schema.encode_text(offer))
        reply = await asyncio.wait_for(self._answers.get(), 10)
        if reply["type"] == "error":
            raise RoomcastError(reply["code"], reply["message"])
        answer = SessionDescription.parse(reply["sdp"])
        first = next(m for m in answer.media if m.port)
        if self.ice_transport == "tcp":
            from roomcast.sdk.tcp import open_tcp, tcp_candidate

            found = self.tcp_address or tcp_candidate(first.candidates)
            if found is None:
                raise RoomcastError("no_tcp_candidate", "the server announced no ICE-TCP candidate")
            server = found
        else:
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
            sctp=sctp,
        )
        conn: MediaConnection
        if self.ice_transport == "tcp":
            conn = await open_tcp(rtc, server, self.host)
        else:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_datagram_endpoint(lambda: MediaConnection(rtc), local_addr=(self.host, 0))
        self.connections.append(conn)
        await asyncio.wait_for(conn.connected, self.media_timeout)
        return conn, answer

    async def publish(self, kinds: list[str], video_codec: str = "vp8") -> Publication:
        """Offer one sendonly track per kind; video as ``video_codec`` ("vp8" or "h264", packetization
        mode 1, Constrained Baseline 3.1), audio as Opus."""
        if video_codec not in VIDEO_CODECS:
            raise RoomcastError("unsupported_codec", f"video_codec must be one of {sorted(VIDEO_CODECS)}")
        tracks = [
            OfferedTrack(
                kind,
                "sendonly",
                f"{kind}-{secrets.token_hex(3)}",
                _ssrc(),
                _ssrc() if kind == "video" else 0,
                video_codecs=(video_codec,),
            )
            for kind in kinds
        ]
        meta = [schema.TrackMeta(track_id=t.track_id, source=_source(t.kind)) for t in tracks]
        conn, _ = await self._negotiate("$publish", tracks, tracks=meta)
        return Publication(conn, tracks, video_codec)

    async def echo(self, kinds: list[str], on_packet: Callable[[bytes], None]) -> Publication:
        """Open the server's ``$echo`` endpoint: what the returned publication sends comes back to
        ``on_packet`` (decrypted RTP, the server's SSRC), e.g. to measure a round trip."""
        tracks = [
            OfferedTrack(kind, "sendrecv", f"{kind}-{secrets.token_hex(3)}", _ssrc(), _ssrc() if kind == "video" else 0)
            for kind in kinds
        ]
        conn, _ = await self._negotiate("$echo", tracks)
        conn.rtc.on_rtp = on_packet
        return Publication(conn, tracks)

    async def subscribe(
        self,
        on_packet: PacketCallback | None = None,
        *,
        on_frame: FrameCallback | None = None,
        decrypt: bool = True,
        tracks: Collection[str] | None = None,
        nack: bool = False,
    ) -> MediaConnection:
        """Receive every track published by others (or only the sids in ``tracks``), as packets
        (``on_packet(track_sid, rtp)``; with ``decrypt=False`` only the clear RTP header is meaningful)
        and/or as whole frames (``on_frame``, reassembled by a :class:`FrameAssembler` per track; its
        counters in :attr:`frame_assemblers`). Video is offered as VP8 and H.264: the server sends what
        the publisher sent. RTCP from the server (sender reports) reaches ``conn.rtc.on_rtcp``. With ``nack``,
        lost packets are asked for again and retransmissions put back in place (:mod:`roomcast.sdk.recovery`)."""
        if on_packet is None and on_frame is None:
            raise ValueError("subscribe needs on_packet, on_frame or both")
        if on_frame is not None and not decrypt:
            raise ValueError("frames need decrypted packets")
        wanted = [
            t
            for t in self.tracks.values()
            if t["participant"] != self.identity and (tracks is None or t["sid"] in tracks)
        ]
        offered = [OfferedTrack(t["kind"], "recvonly", video_codecs=("vp8", "h264")) for t in wanted]
        subscriptions = {str(mid): t["sid"] for mid, t in enumerate(wanted)}
        conn, answer = await self._negotiate("$subscribe", offered, subscriptions=subscriptions)
        by_ssrc: dict[int, str] = {}  # the answer's a=ssrc msid names the track each SSRC carries
        codec_by_pt: dict[int, str] = {}  # the answer's payload types: which codec a packet carries
        for m in answer.media:
            for ssrc, attrs in m.ssrcs().items():
                parts = attrs.get("msid", "").split()
                if len(parts) == 2:
                    by_ssrc[ssrc] = parts[1]
            for codec in m.codecs():
                if codec.mime in CODECS:
                    codec_by_pt[codec.payload_type] = codec.mime
        assemblers = self.frame_assemblers
        recovery = conn.recovery = Recovery(answer, conn.send_rtcp) if nack and decrypt else None

        def deliver(pkt: bytes) -> None:
            if recovery is not None:
                recovered = recovery.process(pkt, time.monotonic())
                if recovered is None:
                    return
                pkt = recovered
            ssrc = int.from_bytes(pkt[8:12], "big")
            track_sid = by_ssrc.get(ssrc, "")
            if on_packet is not None:
                on_packet(track_sid, pkt)
            codec = codec_by_pt.get(pkt[1] & 0x7F) if len(pkt) >= 12 else None
            if on_frame is None or codec is None:
                return  # RTX and unknown payload types: nothing to assemble
            assembler = assemblers.get(track_sid)
            if assembler is None or assembler.codec != codec:
                assembler = assemblers[track_sid] = FrameAssembler(track_sid, codec)
            for frame in assembler.push(pkt, time.monotonic()):
                on_frame(frame)

        conn.rtc.on_rtp = deliver
        conn.rtc.decrypt = decrypt
        return conn

    async def connect_data(self, on_data: Callable[[dict[str, Any], bytes], None]) -> None:
        """Open the ``$data`` connection; ``on_data(header, payload)`` gets every room data message
        (header: ``f`` sender, ``t`` topic, ``b`` binary, ``ts``), chunked messages reassembled."""
        sctp = SctpAssociation("client", max_message_size=262144)
        established = asyncio.get_running_loop().create_future()
        assembling: dict[tuple[str, object], list[bytes | None]] = {}

        def on_sctp(event: Any) -> None:
            if isinstance(event, AssociationEstablished):
                now = time.monotonic()
                sctp.open_channel(0, LABEL_RELIABLE, now=now)
                sctp.open_channel(2, LABEL_LOSSY, ordered=False, max_retransmits=0, now=now)
                conn.rtc._drain_sctp()
                if not established.done():
                    established.set_result(True)
            elif isinstance(event, MessageReceived):
                header, payload = decode_envelope(event.data)
                if "n" in header:
                    key = (str(header.get("f")), header.get("id"))
                    parts = assembling.setdefault(key, [None] * int(header["n"]))
                    parts[int(header["i"])] = payload
                    if any(p is None for p in parts):
                        return
                    del assembling[key]
                    payload = b"".join(p for p in parts if p is not None)
                on_data(header, payload)
            elif isinstance(event, ChannelOpened):
                pass

        conn, _ = await self._negotiate_data(sctp)
        conn.on_sctp = on_sctp
        for event in conn.sctp_backlog:
            on_sctp(event)
        conn.sctp_backlog.clear()
        conn._pump()
        await asyncio.wait_for(established, 10)
        self._data = conn

    async def _negotiate_data(self, sctp: SctpAssociation) -> tuple[MediaConnection, SessionDescription]:
        return await self._negotiate("$data", [OfferedTrack("application", "")], sctp=sctp)

    def send_data(
        self, payload: bytes | str, *, topic: str | None = None, to: list[str] | None = None, reliable: bool = True
    ) -> None:
        """Send room data over the ``$data`` connection (call :meth:`connect_data` first); any size."""
        conn = getattr(self, "_data", None)
        if conn is None:
            raise RoomcastError("not_connected", "call connect_data() first")
        binary = not isinstance(payload, str)
        data = payload.encode() if isinstance(payload, str) else payload
        header: dict[str, Any] = {"t": topic, "b": binary}
        if to:
            header["to"] = to
        stream = 0 if reliable else 2
        if len(data) <= CHUNK:
            conn.rtc.send_message(stream, encode_envelope(header, data))
        else:
            header["id"] = secrets.randbelow(2**31)
            header["n"] = (len(data) + CHUNK - 1) // CHUNK
            for i in range(header["n"]):
                conn.rtc.send_message(stream, encode_envelope({**header, "i": i}, data[i * CHUNK : (i + 1) * CHUNK]))
        conn._pump()

    async def close(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(schema.encode_text(schema.Leave()))
        for conn in self.connections:
            conn.close()
        await self.ws.close()
        self._reader.cancel()


def _source(kind: str) -> Literal["camera", "microphone"]:
    return "camera" if kind == "video" else "microphone"


def _ssrc() -> int:
    return int.from_bytes(os.urandom(4), "big") or 1


async def connect(
    url: str,
    token: str,
    *,
    host: str = "127.0.0.1",
    ice_transport: str = "udp",
    ssl_context: ssl.SSLContext | None = None,
) -> Room:
    """Join with ``token``; media connections use ICE over ``ice_transport`` ("udp", or "tcp" where UDP
    is blocked: RFC 6544, the server's passive candidate); ``ssl_context`` verifies a ``wss://`` server."""
    if ice_transport not in ("udp", "tcp"):
        raise ValueError("ice_transport must be 'udp' or 'tcp'")
    base = url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/")
    if ssl_context is not None and base.startswith("wss://"):
        ws = await websockets.connect(f"{base}/rtc?access_token={token}", max_size=2**20, ssl=ssl_context)
    else:
        ws = await websockets.connect(f"{base}/rtc?access_token={token}", max_size=2**20)
    await ws.send(schema.encode_text(schema.Join()))
    joined = json.loads(await ws.recv())
    if joined["type"] == "error":
        await ws.close()
        raise RoomcastError(joined["code"], joined["message"])
    return Room(ws, joined, host, ice_transport)
