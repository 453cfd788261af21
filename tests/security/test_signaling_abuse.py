"""Issue 12 findings on the signaling side, against a real ``roomcast serve`` over real TCP: re-offer floods
(H1), ghost sessions (H2), data rules on the socket path (M2), revocation and expiry (M4), resume across rooms
(M5), duplicate subscriptions (low). Each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt

from tests.signaling.wsclient import DEV_KEY, DEV_SECRET, Client, dev_token
from tests.support.canary import Canaries
from tests.support.resources import ResourceOracle
from tests.support.server import ServerProcess

OFFER = json.loads((Path(__file__).parent.parent / "wire" / "fixtures" / "chromium.json").read_text())["offer"]
ADMIN = (DEV_KEY, DEV_SECRET)


def room() -> str:
    return "abuse-" + uuid.uuid4().hex[:8]


def subscribe_offer(mlines: int) -> str:
    """A recvonly offer of ``mlines`` video m-lines (Chromium's own video section, renumbered)."""
    header, rest = OFFER.split("m=audio", 1)
    video = "m=video" + rest.split("m=video", 1)[1]
    video = re.sub(r"a=ssrc[^\r\n]*\r\n|a=ssrc-group[^\r\n]*\r\n|a=msid:[^\r\n]*\r\n", "", video)
    # VP8 and its RTX only (about 650 bytes an m-line, as in the probe's 42 KB offer of 64)
    lines = video.split("\r\n")
    keep = [
        line
        for line in lines
        if not re.match(r"a=(rtpmap|rtcp-fb|fmtp):(\d+)", line) or re.match(r"a=(rtpmap|rtcp-fb|fmtp):(96|97)\b", line)
    ]
    keep = [line for line in keep if not line.startswith("a=extmap:") or "sdes:mid" in line]
    keep[0] = "m=video 9 UDP/TLS/RTP/SAVPF 96 97"
    video = "\r\n".join(keep)
    video = video.replace("a=sendrecv", "a=recvonly")
    sections = [video.replace("a=mid:1\r\n", f"a=mid:{i}\r\n") for i in range(mlines)]
    header = header.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE " + " ".join(str(i) for i in range(mlines)))
    return header + "".join(sections)


async def reply_to(client: Client, timeout: float = 10.0) -> dict[str, Any]:
    while True:
        msg = await client.recv(timeout)
        if msg["type"] in ("answer", "error"):
            return msg


async def test_reoffer_flood_is_paced_by_an_mline_budget_and_others_keep_their_answers(
    server: ServerProcess, canaries: Canaries
) -> None:
    """H1: 64-m-line ``$subscribe`` re-offers at 49/s (under the socket's 50 msg/s) each cost ~26 ms of CPU and
    were all negotiated: one participant took the whole core. Now the budget (m-lines per second) paces them:
    most are refused with ``rate_limited``, while another room's participant keeps getting pongs."""
    media = await canaries.sdk(server)  # O3 for media: a call in another room
    oracle = ResourceOracle(server)
    oracle.baseline()
    attacker, _ = await Client.joined(server.ws_base, room(), "mallory")
    canary, _ = await Client.joined(server.ws_base, room(), "canary")
    sdp = subscribe_offer(64)
    flood_from = media.mark()
    replies: list[dict[str, Any]] = []
    all_replied = asyncio.Event()

    async def drain() -> None:
        while True:
            msg = await attacker.recv(15)
            if msg["type"] in ("answer", "error"):
                replies.append(msg)
                if len(replies) == 147:
                    all_replied.set()

    reader = asyncio.create_task(drain())
    pongs = 0
    start = time.monotonic()
    for i in range(147):  # 3 s at 49/s, a few distinct SDPs so none is "identical to the last one"
        await attacker.send({"type": "offer", "to": "$subscribe", "sdp": sdp.replace("s=-", f"s={i}")})
        if i % 5 == 0:
            await canary.send({"type": "ping", "ts": time.monotonic()})
            await canary.recv_type("pong", timeout=5)
            pongs += 1
        await asyncio.sleep(max(0.0, start + (i + 1) / 49 - time.monotonic()))  # pacing the attacker's sends
    for _ in range(50):  # the waiting offers are answered within the budget's 3 s; the canary keeps pinging
        if all_replied.is_set():
            break
        await canary.send({"type": "ping", "ts": time.monotonic()})
        await canary.recv_type("pong", timeout=5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_replied.wait(), 0.2)
    reader.cancel()
    answered = [r for r in replies if r["type"] == "answer"]
    refused = [r for r in replies if r["type"] == "error"]
    assert len(replies) == 147, f"every offer gets a reply: {len(replies)}"
    assert {r["code"] for r in refused} == {"rate_limited"} and all(r["ref"] == "$subscribe" for r in refused)
    # budget: 400 m-lines of burst + 100/s over ~3 s of sending and up to 3 s of waiting, at 68 per offer
    assert 1 <= len(answered) <= 18, len(answered)
    assert pongs == 30
    media.assert_flowed(since=flood_from, max_gap=1.0)
    await media.assert_alive()
    await attacker.close()
    await canary.close()
    await oracle.assert_back_to_baseline(rss_growth_kib=16 * 1024)  # O4


async def test_an_identical_reoffer_gets_the_same_answer(server: ServerProcess) -> None:
    """H1: no renegotiation work for an SDP identical to the last one: the answer is the one already given."""
    client, _ = await Client.joined(server.ws_base, room(), "repeat")
    sdp = subscribe_offer(2)
    answers = []
    for _ in range(3):
        await client.send({"type": "offer", "to": "$subscribe", "sdp": sdp})
        answers.append((await reply_to(client))["sdp"])
    assert answers[0] == answers[1] == answers[2]
    await client.close()


def room_tracks(server: ServerProcess, name: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{server.base}/api/rooms/{name}/stats", auth=ADMIN)
    assert reply.status_code == 200, reply.text
    tracks: list[dict[str, Any]] = reply.json()["tracks"]
    return tracks


async def test_ghost_sessions_do_not_pile_up_tracks(server: ServerProcess) -> None:
    """H2: join → publish → drop TCP without a close frame, in a loop, with one token: each parked session kept
    its media for the resume window and the rejoin replaced it without closing it (1,616 tracks in 15 s with a
    limit of 8 per participant). Now a new join of the same identity closes the parked session's media."""
    name = room()
    observer, _ = await Client.joined(server.ws_base, name, "observer")
    token = dev_token(name, "ghost")
    for _ in range(10):
        ghost = await Client.open(server.ws_base, token)
        await ghost.send({"type": "join"})
        await ghost.recv_type("joined")
        await ghost.send({"type": "offer", "to": "$publish", "sdp": OFFER})
        assert (await reply_to(ghost))["type"] == "answer"
        ghost.ws.transport.abort()  # no close frame: the server parks the session for a resume
    deadline = time.monotonic() + 5
    while len(room_tracks(server, name)) > 2 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # polling the admin API for the condition, bounded
    tracks = room_tracks(server, name)
    assert len(tracks) <= 2, f"{len(tracks)} tracks left by ghost sessions"
    await observer.close()


async def test_a_burst_of_publishes_is_announced_in_few_tracks_lists(server: ServerProcess) -> None:
    """H2: an observer got 39 MB of ``tracks`` messages, a full list per change; changes are now debounced per
    room (and coalesced per socket for a slow reader), so a burst of 12 publishes is a few lists, not 12."""
    name = room()
    observer = await Client.open(server.ws_base, dev_token(name, "observer"))
    await observer.send({"type": "join"})
    await observer.recv_type("joined")
    publishers = [(await Client.joined(server.ws_base, name, f"pub{i}"))[0] for i in range(12)]
    for p in publishers:
        await p.send({"type": "offer", "to": "$publish", "sdp": OFFER})
    for p in publishers:
        assert (await reply_to(p))["type"] == "answer"
    lists = []
    while True:
        try:
            msg = await observer.recv(1.0)
        except TimeoutError:
            break
        if msg["type"] == "tracks":
            lists.append(msg["tracks"])
    assert lists and len(lists[-1]) == 24
    assert len(lists) <= 6, f"{len(lists)} tracks lists for 12 publishes"
    for p in publishers:
        await p.close()
    await observer.close()


async def test_socket_data_obeys_the_rooms_data_rules(server: ServerProcess) -> None:
    """M2: a non-admin's ``control``/``qa``/``hand-queue`` data over the signaling socket was delivered and the
    per-topic rates skipped; the same rules as on data channels now apply."""
    name = room()
    admin, _ = await Client.joined(server.ws_base, name, "teacher", room_admin=True)
    student, _ = await Client.joined(server.ws_base, name, "student")
    await admin.recv_type("participant_joined")
    for topic in ("control", "qa", "hand-queue"):
        await student.send({"type": "data", "payload": "{}", "topic": topic})
        err = await student.recv_type("error")
        assert err["code"] == "permission_denied", err
    codes = []
    for _ in range(5):  # ``question``: 0.5/s with a burst of 3
        await student.send({"type": "data", "payload": "why?", "topic": "question"})
    for _ in range(2):
        codes.append((await student.recv_type("error"))["code"])
    assert codes == ["rate_limited", "rate_limited"]
    received = []
    while True:
        try:
            msg = await admin.recv(0.5)
        except TimeoutError:
            break
        if msg["type"] == "data":
            received.append(msg["topic"])
    assert received == ["question"] * 3
    await admin.send({"type": "data", "payload": "{}", "topic": "qa"})  # an admin may
    assert (await student.recv_type("data"))["topic"] == "qa"
    await admin.close()
    await student.close()


async def test_resume_token_only_resumes_into_the_tokens_room(server: ServerProcess) -> None:
    """M5: a stolen resume token plus a room-B token for the same identity resumed into room A."""
    room_a, room_b = room(), room()
    other, _ = await Client.joined(server.ws_base, room_a, "other")
    victim = await Client.open(server.ws_base, dev_token(room_a, "alice"))
    await victim.send({"type": "join"})
    resume_token = (await victim.recv_type("joined"))["resume_token"]
    victim.ws.transport.abort()
    thief = await Client.open(server.ws_base, dev_token(room_b, "alice"))
    await thief.send({"type": "join", "resume": resume_token})
    err = await thief.recv_type("error")
    assert (err["code"], err["fatal"]) == ("resume_failed", True)
    await other.close()


async def test_session_ends_when_its_token_expires(server: ServerProcess) -> None:
    """M4 / low: sessions outlived their token's ``exp``; now the server closes them at expiry."""
    client = await Client.open(server.ws_base, dev_token(room(), "brief", now=time.time() - 6 * 3600 + 2))
    await client.send({"type": "join"})
    await client.recv_type("joined")
    err = await client.recv_type("error", timeout=10)
    assert (err["code"], err["fatal"]) == ("token_expired", True)
    assert (await client.closed())[0] == 1008


async def test_kick_revokes_a_token_without_jti(server: ServerProcess) -> None:
    """M4: a token without ``jti`` rejoined right after a kick."""
    name = room()
    claims = {"iss": DEV_KEY, "sub": "nojti", "exp": int(time.time()) + 600, "grants": {"room": name}}
    raw = jwt.encode(claims, DEV_SECRET, algorithm="HS256")
    other, _ = await Client.joined(server.ws_base, name, "other")
    client = await Client.open(server.ws_base, raw)
    await client.send({"type": "join"})
    await client.recv_type("joined")
    kicked = httpx.delete(f"{server.base}/api/rooms/{name}/participants/nojti", auth=ADMIN)
    assert kicked.status_code == 204
    again = await Client.open(server.ws_base, raw)
    await again.send({"type": "join"})
    err = await again.recv_type("error")
    assert (err["code"], err["fatal"]) == ("token_revoked", True)
    await other.close()


async def test_duplicate_subscriptions_get_one_consumer(server: ServerProcess) -> None:
    """Low: 64 m-lines naming the same track made 64 consumers of one producer; now it is sent once."""
    name = room()
    publisher, _ = await Client.joined(server.ws_base, name, "pub")
    await publisher.send({"type": "offer", "to": "$publish", "sdp": OFFER})
    assert (await reply_to(publisher))["type"] == "answer"
    viewer, _ = await Client.joined(server.ws_base, name, "viewer")
    tracks = room_tracks(server, name)
    video = next(t["sid"] for t in tracks if t["kind"] == "video")
    sdp = subscribe_offer(64)
    await viewer.send(
        {"type": "offer", "to": "$subscribe", "sdp": sdp, "subscriptions": {str(i): video for i in range(64)}}
    )
    answer = await reply_to(viewer)
    assert answer["type"] == "answer"
    assert answer["sdp"].count("a=sendonly") == 1
    await publisher.close()
    await viewer.close()
