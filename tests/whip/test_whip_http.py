"""RFC 9725 over real HTTP against ``roomcast serve``: the resource's life (201, Location, ETag, PATCH, DELETE),
CORS, and bad input (RELIABILITY.md B11): every refusal its status and a problem body, nothing left behind.

The offer is one PyAV's FFmpeg sent (fixtures/ffmpeg_offer.sdp): a real client's SDP, answered for real; no ICE
follows here, so these sessions never connect (the connect timeout ends the ones a test leaves)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from roomcast.rooms.tokens import Grants
from roomcast.rooms.tokens import mint as mint_token
from tests.support.canary import Canaries
from tests.support.server import ServerProcess
from tests.whip.conftest import AUTH, mint

OFFER = (Path(__file__).parent / "fixtures" / "ffmpeg_offer.sdp").read_text().replace("\n", "\r\n")
SDP = {"content-type": "application/sdp"}
FRAG = {"content-type": "application/trickle-ice-sdpfrag"}


@pytest.fixture(scope="module")
def whip_server(artifacts: Path) -> Iterator[ServerProcess]:
    """Auto-created rooms off (404 is reachable), 20 POSTs/s, 30 s for ICE (sessions here never connect)."""
    env = {
        "ROOMCAST_AUTO_CREATE_ROOMS": "0",
        "ROOMCAST_WHIP_POSTS_PER_SECOND": "20",
        "ROOMCAST_WHIP_CONNECT_TIMEOUT": "30",
    }
    proc = ServerProcess(artifacts, env=env)
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log(), proc.log()[-4000:]


def new_room(server: ServerProcess, mode: str = "sfu") -> str:
    room = "w-" + uuid.uuid4().hex[:8]
    res = httpx.post(f"{server.base}/api/rooms", json={"name": room, "mode": mode}, auth=AUTH)
    assert res.status_code in (200, 201), res.text
    return room


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def post(server: ServerProcess, room: str, token: str | None, body: str = OFFER, **headers: str) -> httpx.Response:
    h = {**SDP, **(bearer(token) if token else {}), **headers}
    return httpx.post(f"{server.base}/whip/{room}", content=body, headers=h)


def problem(res: httpx.Response, status: int, code: str) -> None:
    assert res.status_code == status, (res.status_code, res.text)
    assert res.headers["content-type"] == "application/problem+json"
    assert res.json()["title"] == code and res.json()["status"] == status, res.text


def metric(server: ServerProcess, name: str) -> float:
    for line in httpx.get(f"{server.base}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def ufrag_of(sdp: str) -> str:
    return next((line.split(":", 1)[1].strip() for line in sdp.splitlines() if line.startswith("a=ice-ufrag:")), "")


def participants(server: ServerProcess, room: str) -> list[str]:
    res = httpx.get(f"{server.base}/api/rooms/{room}/participants", auth=AUTH)
    if res.status_code == 404:
        return []  # an auto-created room goes with its last participant
    return sorted(p["identity"] for p in res.json()["participants"])


def test_session_resource_lifecycle(whip_server: ServerProcess) -> None:
    room = new_room(whip_server)
    base_transports = metric(whip_server, "roomcast_media_transports")
    alice = mint(whip_server, room, "alice")
    res = post(whip_server, room, alice)
    assert res.status_code == 201, res.text
    assert res.headers["content-type"] == "application/sdp"
    assert res.text.startswith("v=0") and "a=ice-lite" in res.text and "a=setup:active" in res.text
    assert "a=recvonly" in res.text and "H264/90000" in res.text and "opus/48000/2" in res.text
    location, etag = res.headers["location"], res.headers["etag"]
    first_ufrag = ufrag_of(res.text)
    assert location.startswith(f"/whip/{room}/sessions/") and len(location.rsplit("/", 1)[1]) >= 24
    assert etag.startswith('"') and res.headers["access-control-allow-origin"] == "*"
    assert "Location" in res.headers["access-control-expose-headers"]
    assert participants(whip_server, room) == ["alice"]
    assert metric(whip_server, "roomcast_media_transports") == base_transports + 1
    url = whip_server.base + location

    # someone else's resource: another participant of the room may not touch it; an unknown id is 404
    bob = mint(whip_server, room, "bob")
    problem(httpx.delete(url, headers=bearer(bob)), 403, "not_your_session")
    problem(httpx.delete(url + "x", headers=bearer(alice)), 404, "unknown_session")
    problem(httpx.delete(url), 401, "missing_token")
    other_room = new_room(whip_server)
    problem(httpx.delete(url, headers=bearer(mint(whip_server, other_room, "alice"))), 403, "not_your_session")

    # trickle: an ICE-lite server needs no candidates (204); a stale ETag is 412; a non-fragment 400 / 415
    frag = "a=ice-ufrag:c878e278\r\na=ice-pwd:8afef2fee24d481aa9963292fc6289cd\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n"
    frag += "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"
    assert httpx.patch(url, content=frag, headers={**FRAG, **bearer(alice), "if-match": etag}).status_code == 204
    problem(
        httpx.patch(url, content=frag, headers={**FRAG, **bearer(alice), "if-match": '"stale"'}), 412, "etag_mismatch"
    )
    problem(httpx.patch(url, content=frag, headers={**SDP, **bearer(alice)}), 415, "unsupported_media_type")
    problem(httpx.patch(url, content="v=0\r\ns=-\r\n", headers={**FRAG, **bearer(alice)}), 400, "invalid_sdpfrag")

    # ICE restart (RFC 9725 §4.3.2): new credentials → 200, our new ones in a fragment, a new ETag
    restart = "a=ice-ufrag:newufrag\r\na=ice-pwd:0123456789abcdef0123456789abcdef\r\n"
    res = httpx.patch(url, content=restart, headers={**FRAG, **bearer(alice), "if-match": "*"})
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == "application/trickle-ice-sdpfrag" and res.headers["etag"] != etag
    assert "a=candidate:" in res.text and "a=end-of-candidates" in res.text
    assert ufrag_of(res.text) not in ("", first_ufrag)
    assert metric(whip_server, "roomcast_media_transports") == base_transports + 1  # the same transport

    assert httpx.delete(url, headers=bearer(alice)).status_code == 200
    problem(httpx.delete(url, headers=bearer(alice)), 404, "unknown_session")
    assert participants(whip_server, room) == []
    assert metric(whip_server, "roomcast_media_transports") == base_transports


def test_options_is_a_cors_preflight(whip_server: ServerProcess) -> None:
    res = httpx.options(
        f"{whip_server.base}/whip/any",
        headers={"origin": "https://studio.example", "access-control-request-method": "POST"},
    )
    assert res.status_code == 204
    assert res.headers["access-control-allow-origin"] == "*"
    assert "POST" in res.headers["access-control-allow-methods"]
    assert "Authorization" in res.headers["access-control-allow-headers"]
    assert res.headers["accept-post"] == "application/sdp"
    res = httpx.options(f"{whip_server.base}/whip/any/sessions/abc")
    assert "PATCH" in res.headers["access-control-allow-methods"] and "DELETE" in res.headers["allow"]
    assert res.headers["accept-patch"] == "application/trickle-ice-sdpfrag"


def test_bad_requests_get_their_rfc_status(whip_server: ServerProcess) -> None:
    room = new_room(whip_server)
    token = mint(whip_server, room, "enc")
    base_transports = metric(whip_server, "roomcast_media_transports")
    problem(post(whip_server, room, None), 401, "missing_token")
    assert post(whip_server, room, None).headers["www-authenticate"].startswith("Bearer")
    problem(post(whip_server, room, "not-a-jwt"), 401, "invalid_token")
    expired = mint_token(
        "devkey", "devsecret", identity="enc", grants=Grants(room=room), now=time.time() - 7200, ttl=3600
    )
    problem(post(whip_server, room, expired), 401, "token_expired")
    problem(post(whip_server, room, token, **{"content-type": "application/json"}), 415, "unsupported_media_type")
    problem(post(whip_server, room, token, body="hello, I am not SDP"), 400, "invalid_sdp")
    problem(post(whip_server, room, token, body="v=0\r\n" + "a=x\r\n" * 20000), 413, "body_too_large")
    datachannel_only = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    )
    problem(post(whip_server, room, token, body=datachannel_only), 422, "no_media")
    problem(
        post(whip_server, room, token, body=OFFER.replace("H264", "H265").replace("opus", "speex")),
        422,
        "no_acceptable_media",
    )
    problem(post(whip_server, "other-room", token), 403, "wrong_room")
    problem(post(whip_server, room, mint(whip_server, room, "viewer", can_publish=False)), 403, "permission_denied")
    missing = "gone-" + uuid.uuid4().hex[:6]
    problem(post(whip_server, missing, mint(whip_server, missing, "enc")), 404, "room_not_found")
    p2p = new_room(whip_server, mode="p2p")
    problem(post(whip_server, p2p, mint(whip_server, p2p, "enc")), 409, "wrong_mode")
    assert participants(whip_server, room) == [] and participants(whip_server, p2p) == []
    assert metric(whip_server, "roomcast_media_transports") == base_transports


def test_a_session_that_never_connects_is_ended(flood_server: ServerProcess) -> None:
    whip_server = flood_server  # its connect timeout is 2 s
    room = "silent-" + uuid.uuid4().hex[:6]
    res = post(whip_server, room, mint(whip_server, room, "silent"))
    assert res.status_code == 201
    assert participants(whip_server, room) == ["silent"]
    deadline = time.monotonic() + 10
    while participants(whip_server, room) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert participants(whip_server, room) == []  # ended by the 2 s connect timeout, with its transport
    problem(
        httpx.delete(whip_server.base + res.headers["location"], headers=bearer(mint(whip_server, room, "silent"))),
        404,
        "unknown_session",
    )


async def raw_posts(base: str, path: str, token: str, count: int, connections: int) -> list[tuple[int, str]]:
    """``count`` POSTs over ``connections`` keep-alive sockets, as fast as the server answers: (status, Location
    or Retry-After) each. Plain asyncio streams: an HTTP client library would be the bottleneck, not the server."""
    host, port = base.removeprefix("http://").split(":")
    request = (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/sdp\r\n"
        f"authorization: Bearer {token}\r\ncontent-length: {len(OFFER.encode())}\r\n\r\n{OFFER}"
    ).encode()
    results: list[tuple[int, str]] = []

    async def worker(n: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        for _ in range(n):
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
            headers = {k.lower(): v for k, v in headers.items()}
            await reader.readexactly(int(headers.get("content-length", "0")))
            results.append((int(head[0].split()[1]), headers.get("location", headers.get("retry-after", ""))))
        writer.close()

    await asyncio.gather(*(worker(count // connections) for _ in range(connections)))
    return results


@pytest.fixture
def flood_server(artifacts: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(artifacts, env={"ROOMCAST_WHIP_POSTS_PER_SECOND": "5", "ROOMCAST_WHIP_CONNECT_TIMEOUT": "2"})
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log(), proc.log()[-4000:]


async def test_a_burst_of_posts_is_refused_with_429_and_leaks_nothing(
    flood_server: ServerProcess, canaries: Canaries
) -> None:
    """1,000 POSTs from one address as fast as 20 connections send them: its budget (5/s, burst 10) admits a
    few, the rest get 429 with Retry-After; another address (127.0.0.3) is still served during the burst, and
    a live SDK call in another room (the canary, RELIABILITY O3) keeps receiving frames throughout."""
    server = flood_server
    live = await canaries.sdk(server)
    room = "flood-" + uuid.uuid4().hex[:6]
    base_transports = metric(server, "roomcast_media_transports")
    token = mint(server, room, "flood")
    canary_token = mint(server, room, "canary")

    async def other_address() -> int:
        await asyncio.sleep(0.3)
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.3")
        async with httpx.AsyncClient(base_url=server.base, transport=transport) as other:
            res = await other.post(f"/whip/{room}", content=OFFER, headers={**SDP, **bearer(canary_token)})
            return res.status_code

    started, t0 = time.monotonic(), live.mark()
    canary_status, results = await asyncio.gather(
        other_address(), raw_posts(server.base, f"/whip/{room}", token, 1000, 20)
    )
    elapsed = time.monotonic() - started
    live.assert_flowed(since=t0, max_gap=1.0)
    statuses = Counter(status for status, _ in results)
    assert canary_status == 201  # another address keeps its own budget
    assert statuses[201] + statuses[429] == 1000, statuses
    assert 1 <= statuses[201] <= 10 + 5 * elapsed + 1, (statuses, elapsed)
    assert all(extra == "1" for status, extra in results if status == 429)  # Retry-After
    # each 201 was the same identity joining again: the newest session replaced the older ones
    assert participants(server, room) == ["canary", "flood"]
    for status, location in results:
        if status == 201:
            httpx.delete(server.base + location, headers=bearer(token))
    for _ in range(100):
        if not participants(server, room):
            break
        await asyncio.sleep(0.1)  # the canary's session ends by the connect timeout
    assert participants(server, room) == []
    assert metric(server, "roomcast_media_transports") == base_transports
    await live.assert_alive()
    print(f"burst: 1000 POSTs in {elapsed:.2f}s ({1000 / elapsed:.0f}/s), {dict(statuses)}")


def test_whep_answers_every_mline_sendonly_even_before_a_publisher(whip_server: ServerProcess) -> None:
    """WHEP cannot renegotiate: the answer must already carry our SSRCs on every m-line, so a publisher
    arriving later is put behind them (docs/whip.md)."""
    room = new_room(whip_server)
    recv_offer = OFFER.replace("a=sendonly", "a=recvonly")
    viewer = mint(whip_server, room, "viewer", can_publish=False)
    headers = {**SDP, **bearer(viewer)}
    problem(httpx.post(f"{whip_server.base}/whep/{room}", content=OFFER, headers=headers), 422, "no_media")
    no_sub = mint(whip_server, room, "blind", can_subscribe=False)
    res = httpx.post(f"{whip_server.base}/whep/{room}", content=recv_offer, headers={**SDP, **bearer(no_sub)})
    problem(res, 403, "permission_denied")
    res = httpx.post(f"{whip_server.base}/whep/{room}", content=recv_offer, headers=headers)
    assert res.status_code == 201, res.text
    assert res.text.count("a=sendonly") == 2 and res.text.count("msid:roomcast ") >= 2, res.text
    assert res.headers["location"].startswith(f"/whep/{room}/sessions/")
    as_whip = whip_server.base + res.headers["location"].replace("/whep/", "/whip/", 1)
    problem(httpx.delete(as_whip, headers=bearer(viewer)), 404, "unknown_session")  # a WHEP id is not WHIP's
    assert httpx.delete(whip_server.base + res.headers["location"], headers=bearer(viewer)).status_code == 200
    assert participants(whip_server, room) == []


def test_turn_servers_come_as_link_headers_with_minted_credentials(artifacts: Path) -> None:
    """RFC 9725 §4.6: one Link per TURN URL, the credentials coturn's REST scheme expects for this identity."""
    secret = "s3cret-" + uuid.uuid4().hex
    proc = ServerProcess(artifacts, env={"ROOMCAST_TURN_SECRET": secret}, args=["--turn-host", "turn.example"])
    try:
        room = "turn-" + uuid.uuid4().hex[:6]
        res = post(proc, room, mint(proc, room, "enc"))
        assert res.status_code == 201, res.text
        links = res.headers.get_list("link")
        turn = [link for link in links if link.startswith("<turn:")]
        assert any("<turn:turn.example:3478?transport=udp>" in link for link in turn), links
        assert all('rel="ice-server"' in link and 'credential-type="password"' in link for link in turn), links
        username = turn[0].split('username="', 1)[1].split('"', 1)[0]
        credential = turn[0].split('credential="', 1)[1].split('"', 1)[0]
        expiry, identity = username.split(":", 1)
        assert identity == "enc" and int(expiry) > time.time()
        expected = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
        assert credential == expected
        assert any(link.startswith("<stun:turn.example:3478>") for link in links), links
    finally:
        assert proc.stop() == 0


def test_a_kicked_whip_publisher_loses_its_session(whip_server: ServerProcess) -> None:
    room = new_room(whip_server)
    token = mint(whip_server, room, "kicked")
    res = post(whip_server, room, token)
    assert res.status_code == 201
    kick = httpx.delete(f"{whip_server.base}/api/rooms/{room}/participants/kicked", auth=AUTH)
    assert kick.status_code in (200, 204), kick.text
    assert participants(whip_server, room) == []
    problem(httpx.delete(whip_server.base + res.headers["location"], headers=bearer(token)), 404, "unknown_session")
    problem(post(whip_server, room, token), 401, "token_revoked")  # its token is refused from now on


def test_a_session_ends_with_its_token(whip_server: ServerProcess) -> None:
    """A session lasts as long as its token, even one that expires before ICE's 30 s to connect are over."""
    room = new_room(whip_server)
    token = mint_token("devkey", "devsecret", identity="brief", grants=Grants(room=room), now=time.time(), ttl=2)
    res = post(whip_server, room, token)
    assert res.status_code == 201, res.text
    assert participants(whip_server, room) == ["brief"]
    deadline = time.monotonic() + 10
    while participants(whip_server, room) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert participants(whip_server, room) == []
    assert time.monotonic() < deadline - 5  # within about 2 s (the 30 s connect timeout did not end it)
