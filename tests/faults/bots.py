"""Helpers shared by the fault tests: SDK bots that publish and count, and faults done to them."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable

import httpx

from roomcast.sdk import connect
from roomcast.sdk.client import MediaConnection, Publication, Room
from tests.signaling.wsclient import dev_token
from tests.support.server import ServerProcess


async def until(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> float:
    """Poll ``condition`` until true; return how long it took, or fail saying ``what`` did not happen."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(step)  # polling a condition with a deadline
    return time.monotonic() - start


async def publisher(server: ServerProcess, room: str, identity: str = "camera") -> tuple[Room, Publication]:
    client = await connect(server.ws_base, dev_token(room, identity))
    return client, await client.publish(["video"])


async def counting_subscriber(server: ServerProcess, room: str, identity: str) -> tuple[Room, Counter[str]]:
    """An SDK subscriber that counts the RTP packets it gets (headers only: no decryption cost)."""
    client = await connect(server.ws_base, dev_token(room, identity, can_publish=False))
    await until(lambda: bool(client.tracks), 5, f"{identity} seeing the published track")
    counts: Counter[str] = Counter()

    def on_packet(track_sid: str, pkt: bytes) -> None:
        counts[track_sid] += 1

    await client.subscribe(on_packet, decrypt=False)
    return client, counts


async def send_video(publication: Publication, packets: int, rate: float, start: int = 0) -> None:
    """``packets`` 1,000-byte video packets at ``rate`` per second (a media source's pacing)."""
    for n in range(start, start + packets):
        publication.send("video", bytes([n % 256]) * 1000, n * 3000, marker=True)
        await asyncio.sleep(1 / rate)


def kill(client: Room) -> None:
    """The client's process dies: sockets vanish without a leave, a WebSocket close or a DTLS alert."""
    client._reader.cancel()
    client.ws.transport.abort()  # TCP RST/FIN, no close frame: the server sees an abnormal drop (1006)
    for conn in client.connections:
        silence(conn)


def silence(conn: MediaConnection) -> None:
    """Stop a media connection dead: no timers, no consent checks, nothing sent, nothing read."""
    if conn._timer is not None:
        conn._timer.cancel()
        conn._timer = None
    conn.rtc.closed = True  # the machine stops sending; we never call close(): that would send an alert
    if conn.udp is not None:
        conn.udp.abort()


def metric(server: ServerProcess, pattern: str) -> float:
    """One sample of ``/metrics`` (a regex whose group 1 is the value); 0 when absent."""
    found = re.search(pattern, httpx.get(server.base + "/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def joined_count(server: ServerProcess) -> float:
    return metric(server, r'^roomcast_signaling_events_total\{event="joined"\} ([0-9.e+]+)')
