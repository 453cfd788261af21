"""Issue 12 H3, signaling level: peer-to-peer relays are refused in SFU rooms, and in P2P rooms the grants
are read from the parsed m-line directions (real server, real WebSocket clients, a real Chromium offer)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.signaling.wsclient import Client, create_room
from tests.support.server import ServerProcess

CHROMIUM_OFFER: str = json.loads((Path(__file__).parent.parent / "wire" / "fixtures" / "chromium.json").read_text())[
    "offer"
]
CANDIDATE = "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host"


def sdp(*directions: str | None, msid: bool = False, session: str | None = None) -> str:
    """Chromium's audio+video offer with each m-line's ``a=sendrecv`` replaced by the given direction
    lines (``None``: none), without ``a=msid`` unless asked, optionally with a session-level direction."""
    sections = re.split(r"(?=^m=)", CHROMIUM_OFFER, flags=re.M)
    head, media = sections[0], sections[1:]
    assert len(media) == len(directions) == 2
    if session is not None:
        head += f"a={session}\r\n"
    out = [head]
    for section, direction in zip(media, directions, strict=True):
        lines = [line for line in section.split("\r\n") if msid or not line.startswith("a=msid:")]
        replaced = [f"a={d}" for d in (direction or "").split() if d]
        out.append("\r\n".join(part for line in lines for part in (replaced if line == "a=sendrecv" else [line])))
    return "".join(out)


def room() -> str:
    return "relay-" + uuid.uuid4().hex[:8]


async def pair(server: ServerProcess, name: str, **attacker_grants: Any) -> tuple[Client, Client]:
    """``victim`` joins first, then ``mallory`` with the given grants; the victim has seen her join."""
    victim, _ = await Client.joined(server.ws_base, name, "victim")
    mallory, _ = await Client.joined(server.ws_base, name, "mallory", **attacker_grants)
    assert (await victim.recv_type("participant_joined"))["participant"]["identity"] == "mallory"
    return victim, mallory


async def relayed_before_pong(client: Client) -> list[dict[str, Any]]:
    """Everything relayed to ``client`` so far: the server answers a ping after it delivered every earlier
    relay to this socket (one queue per socket), so what precedes the pong is all there is."""
    await client.send({"type": "ping", "ts": 1.0})
    seen = []
    while (msg := await client.recv())["type"] != "pong":
        seen.append(msg)
    return [msg for msg in seen if msg["type"] in ("offer", "answer", "ice_candidate")]


async def test_sfu_room_refuses_offer_answer_and_candidate_relays(server: ServerProcess) -> None:
    """The probe's exact attack: no canPublish, a sendonly video offer without a=msid, and a forged candidate."""
    victim, mallory = await pair(server, room(), can_publish=False)
    attacks: list[dict[str, Any]] = [
        {"type": "offer", "to": "victim", "sdp": sdp("recvonly", "sendonly")},
        {"type": "offer", "sdp": sdp("recvonly", "recvonly")},  # no "to": the only other participant
        {"type": "answer", "to": "victim", "sdp": sdp("inactive", "inactive")},
        {"type": "ice_candidate", "to": "victim", "candidate": CANDIDATE, "sdp_mid": "0", "sdp_mline_index": 0},
        {"type": "ice_candidate", "to": "victim", "candidate": None},
    ]
    for attack in attacks:
        await mallory.send(attack)
        err = await mallory.recv_type("error")
        assert (err["code"], err["fatal"]) == ("wrong_mode", False), (attack["type"], err)
    assert await relayed_before_pong(victim) == []
    # even a fully granted participant cannot relay in an SFU room; the socket stays usable
    await victim.send({"type": "ice_candidate", "to": "mallory", "candidate": CANDIDATE, "sdp_mid": "0"})
    assert (await victim.recv_type("error"))["code"] == "wrong_mode"
    assert await relayed_before_pong(mallory) == []
    await victim.close()
    await mallory.close()


DENIED, RELAYED = "permission_denied", None
NOPUB: dict[str, bool] = {"can_publish": False}
NOSUB: dict[str, bool] = {"can_subscribe": False}
NEITHER = NOPUB | NOSUB


def case(name: str, grants: dict[str, bool], kind: str, body: str, expected: str | None) -> Any:
    return pytest.param(grants, kind, body, expected, id=name)


@pytest.mark.parametrize(
    ("grants", "kind", "body", "expected"),
    [
        # no canPublish: the m-lines may only receive or be inactive
        case("nopub-sendonly-no-msid", NOPUB, "offer", sdp("recvonly", "sendonly"), DENIED),  # the probe's bypass
        case("nopub-sendrecv", NOPUB, "offer", sdp("sendrecv", "sendrecv", msid=True), DENIED),
        case("nopub-no-direction", NOPUB, "offer", sdp(None, "recvonly"), DENIED),  # none means sendrecv
        case("nopub-duplicate", NOPUB, "offer", sdp("recvonly", "recvonly sendonly"), DENIED),  # hides nothing
        case("nopub-session-sendonly", NOPUB, "offer", sdp(None, None, session="sendonly"), DENIED),
        case("nopub-answer-sendonly", NOPUB, "answer", sdp("sendonly", "inactive"), DENIED),
        case("nopub-recvonly", NOPUB, "offer", sdp("recvonly", "inactive"), RELAYED),
        case("nopub-answer-recvonly", NOPUB, "answer", sdp("recvonly", "recvonly"), RELAYED),
        case("nopub-session-recvonly", NOPUB, "offer", sdp(None, None, session="recvonly"), RELAYED),
        # no canSubscribe: the m-lines may only send or be inactive
        case("nosub-recvonly", NOSUB, "offer", sdp("recvonly", "inactive"), DENIED),
        case("nosub-answer-sendrecv", NOSUB, "answer", sdp("sendrecv", "sendonly", msid=True), DENIED),
        case("nosub-sendonly", NOSUB, "offer", sdp("sendonly", "sendonly", msid=True), RELAYED),
        case("nosub-answer-sendonly", NOSUB, "answer", sdp("inactive", "sendonly", msid=True), RELAYED),
        # neither: only inactive m-lines
        case("neither-sendonly", NEITHER, "offer", sdp("inactive", "sendonly"), DENIED),
        case("neither-inactive", NEITHER, "offer", sdp("inactive", "inactive"), RELAYED),
        # full grants: anything
        case("full-sendrecv", {}, "offer", sdp("sendrecv", "sendrecv", msid=True), RELAYED),
        # what does not parse is refused when the grants depend on it
        case("nopub-unparseable", NOPUB, "offer", "v=0\r\nm=video 99999 UDP/TLS/RTP/SAVPF 96\r\n", "invalid_sdp"),
    ],
)
async def test_p2p_room_enforces_grants_from_the_m_line_directions(
    server: ServerProcess, grants: dict[str, bool], kind: str, body: str, expected: str | None
) -> None:
    name = room()
    create_room(server.base, name, mode="p2p")
    victim, mallory = await pair(server, name, **grants)
    await mallory.send({"type": kind, "to": "victim", "sdp": body})
    if expected is None:
        got = await victim.recv_type(kind)
        assert (got["from"], got["sdp"]) == ("mallory", body)
    else:
        err = await mallory.recv_type("error")
        assert (err["code"], err["fatal"]) == (expected, False), err
        assert await relayed_before_pong(victim) == []
    # candidates still flow in P2P rooms, whatever the grants
    await mallory.send({"type": "ice_candidate", "to": "victim", "candidate": CANDIDATE, "sdp_mid": "0"})
    assert (await victim.recv_type("ice_candidate"))["candidate"] == CANDIDATE
    await victim.close()
    await mallory.close()


async def test_p2p_relay_to_an_unknown_participant_is_refused(server: ServerProcess) -> None:
    name = room()
    create_room(server.base, name, mode="p2p")
    victim, mallory = await pair(server, name)
    await mallory.send({"type": "offer", "to": "nobody", "sdp": sdp("sendrecv", "sendrecv", msid=True)})
    assert (await mallory.recv_type("error"))["code"] == "unknown_participant"
    assert await relayed_before_pong(victim) == []
    await victim.close()
    await mallory.close()
