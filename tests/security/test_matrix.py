"""RELIABILITY.md's bad-input matrix, B1-B9, in one run against one server while a canary call plays.

Each attack is followed by the oracles: O1 the server is alive, O2 the attacker got a typed error or
the input was counted as dropped, O3 the canary (a Chromium echo call) keeps decoding new frames, and at
the end O4: with the attackers gone, only the canary's transports remain. (B10, TURN peers in private
ranges, needs coturn: tests/turn/test_coturn.py.)
"""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
import time
import uuid
from pathlib import Path

import httpx
import pytest
import websockets
from playwright.async_api import Page

from roomcast.sdk import connect
from roomcast.wire.stun import binding_request
from tests.e2e.test_call import FRAMES_DECODED, wait_stat
from tests.faults.bots import until
from tests.signaling.wsclient import Client, dev_token
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser
OFFER = json.loads((Path(__file__).parent.parent / "wire" / "fixtures" / "chromium.json").read_text())["offer"]


def dropped(server: ServerProcess) -> dict[str, float]:
    text = httpx.get(server.base + "/metrics").text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'roomcast_media_dropped_total\{reason="([^"]+)"\} ([0-9.e+]+)', text)
    }


def grew(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counters that grew between two samples, by how much (this step's, not the server's history)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v > before.get(k, 0.0)}


def transports(server: ServerProcess) -> float:
    found = re.search(r"^roomcast_media_transports ([0-9.e+]+)", httpx.get(server.base + "/metrics").text, re.M)
    return float(found.group(1)) if found else -1


async def canary_alive(server: ServerProcess, canary: Page, frames: list[int]) -> None:
    """O1 + O3: the process answers and the canary decoded more frames since the last check."""
    assert server.alive() and httpx.get(server.base + "/healthz").status_code == 200
    frames.append(await wait_stat(canary, FRAMES_DECODED, frames[-1] + 10))


@pytest.fixture(scope="module")
def matrix_server(artifacts: Path):  # type: ignore[no-untyped-def]
    proc = ServerProcess(artifacts)
    yield proc
    assert proc.stop() == 0 and "Traceback" not in proc.log()


async def test_bad_input_matrix(matrix_server: ServerProcess, new_page: NewPage) -> None:
    server = matrix_server
    canary = await new_page(f"{server.base}/echo?room=canary-{uuid.uuid4().hex[:6]}&identity=canary")
    await canary.wait_for_function("window.echoState && window.echoState.connected")
    frames = [await wait_stat(canary, FRAMES_DECODED, 5)]
    await canary.evaluate("window.room.connectData()")
    baseline = transports(server)  # the canary's own connections (echo and data)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", server.media_port)

    # B1 STUN: truncated, wrong cookie, unknown ufrag, bad integrity, oversized attribute
    before = dropped(server)
    for data in (
        b"\x00\x01\x00\x00\x21\x12",
        b"\x00\x01\x00\x00" + b"\x00" * 16,
        binding_request(b"\x01" * 12, "nobody:x", "pw", priority=1, controlling=True, tie_breaker=1),
        b"\x00\x01\x00\x08\x21\x12\xa4\x42" + b"\x02" * 12 + b"\x00\x06\xff\xff\x00\x00\x00\x00",
    ):
        udp.sendto(data, target)
    await canary_alive(server, canary, frames)
    assert sum(grew(before, dropped(server)).values()) == 4  # O2: each of the four counted once

    # B2 RTP/SRTP from an unknown address: too short, bad version, lying lengths
    before = dropped(server)
    for data in (b"\x80\x60", struct.pack("!BBHII", 0x40, 96, 1, 2, 3), struct.pack("!BBHII", 0x9F, 96, 1, 2, 3)):
        udp.sendto(data, target)
    await canary_alive(server, canary, frames)
    assert grew(before, dropped(server)).get("socket_unknown_address") == 3

    # B2/B3 through a real, authenticated connection: garbage RTCP after SRTP, a subscriber's PLI flood
    # (every case, with its CPU and log-rate oracles: tests/security/test_authenticated_media.py)
    room = "matrix-" + uuid.uuid4().hex[:6]
    attacker = await connect(server.ws_base, dev_token(room, "attacker"))
    publication = await attacker.publish(["video"])
    viewer = await connect(server.ws_base, dev_token(room, "viewer", can_publish=False))
    await until(lambda: bool(viewer.tracks), 5, "the attacker's track announced")
    ssrcs: set[int] = set()
    sub = await viewer.subscribe(lambda sid, pkt: ssrcs.add(int.from_bytes(pkt[8:12], "big")), decrypt=False)
    for seq in range(50):
        publication.send("video", b"\x10" + bytes(100), seq * 3000, marker=True)
    await until(lambda: bool(ssrcs), 5, "the viewer receiving the attacker's video")
    before, keyframes = dropped(server), publication.keyframe_requests
    rtc = publication.conn.rtc
    rtc.send_rtcp(struct.pack("!BBHI", 0x81, 201, 200, publication.tracks["video"].ssrc) + b"\x00" * 4)  # length lies
    for _ in range(200):  # a PLI flood on the video the viewer receives
        sub.rtc.send_rtcp(struct.pack("!BBHII", 0x81, 206, 2, 1, next(iter(ssrcs))))
    await canary_alive(server, canary, frames)
    step = grew(before, dropped(server))
    assert step.get("rtcp_malformed") == 1, step  # O2: the lie dropped and counted
    assert step.get("pli_throttled", 0) >= 195, step  # throttled: at most one keyframe request per 500 ms
    assert publication.keyframe_requests - keyframes <= 2

    # B4 SDP: missing fingerprint, bad setup, duplicate mids, 10,000+ lines → typed errors
    signaling, _ = await Client.joined(server.ws_base, room, "sdp-abuser")
    for mangled, code in (
        (OFFER.replace("a=fingerprint:", "a=x:"), "missing_fingerprint"),
        (OFFER.replace("a=setup:actpass", "a=setup:holdconn"), "bad_setup"),
        (OFFER.replace("a=mid:1", "a=mid:0"), "duplicate_mid"),
        ("v=0\r\n" + "a=x\r\n" * 10_001, "sdp_too_large"),
    ):
        await signaling.send({"type": "offer", "to": "$publish", "sdp": mangled})
        err = await signaling.recv_type("error")
        assert err["code"] in (code, "invalid_sdp", "message_too_large"), err
        if err.get("fatal"):
            signaling, _ = await Client.joined(server.ws_base, room, "sdp-abuser-" + uuid.uuid4().hex[:4])
    await canary_alive(server, canary, frames)

    # B5 DTLS garbage to a validated address is dropped; a forged fingerprint is covered end to end in
    # tests/interop/test_aiortc_echo.py. Here: DTLS-looking bytes from an unknown address.
    before = dropped(server)
    udp.sendto(b"\x16\xfe\xfd" + b"\x00" * 60, target)
    await canary_alive(server, canary, frames)
    assert grew(before, dropped(server)) == {"socket_unknown_address": 1}

    # B6 SCTP/DCEP: a malformed envelope over the data channel gets a typed error, the association lives
    got: list[dict[str, object]] = []
    await attacker.connect_data(lambda header, payload: got.append(header))
    attacker._data.rtc.send_message(0, b"\xff\xff not an envelope")  # type: ignore[attr-defined]
    attacker._data._pump()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        await canary.wait_for_timeout(100)  # the browser's clock, polling our queue (bounded)
    assert got and got[0].get("e") == "invalid_message"
    await canary_alive(server, canary, frames)

    # B7 signaling: invalid JSON, deep nesting, oversize, unknown type
    abuser = await websockets.connect(f"{server.ws_base}/rtc?access_token={dev_token(room, 'ws-abuser')}")
    await abuser.send('{"type": "join", "v": 1}')
    await abuser.recv()
    await abuser.recv()
    for raw, code in (("{nope", "invalid_json"), ('{"type": "boom", "v": 1}', "unknown_type")):
        await abuser.send(raw)
        assert json.loads(await abuser.recv())["code"] == code
    await abuser.send("[" * 2000 + "]" * 2000)
    assert json.loads(await abuser.recv())["code"] == "too_deep"
    await canary_alive(server, canary, frames)

    # B8 tokens: alg none, wrong key, expired
    def b64(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    for token, code in (
        (b64({"alg": "none"}) + "." + b64({"iss": "devkey", "sub": "x", "exp": 9e9}) + ".", "invalid_token"),
        (dev_token(room, "x", secret="wrong-secret-wrong-secret"), "invalid_signature"),
        (dev_token(room, "x", now=1_000_000_000), "token_expired"),
    ):
        client = await Client.open(server.ws_base, token)
        assert (await client.recv())["code"] == code
    await canary_alive(server, canary, frames)

    # B9 admin API without or with bad credentials
    assert httpx.get(server.base + "/api/rooms").status_code == 401
    assert httpx.get(server.base + "/api/rooms", auth=("devkey", "nope")).status_code == 401
    await canary_alive(server, canary, frames)

    # O4: attackers gone → only the canary's transports remain
    await attacker.close()
    await viewer.close()
    await signaling.close()
    await abuser.close()
    udp.close()
    for _ in range(50):
        if transports(server) == baseline:
            break
        await canary.wait_for_timeout(100)
    assert transports(server) == baseline
    await canary_alive(server, canary, frames)
