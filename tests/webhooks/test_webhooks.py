"""Webhooks received by a real HTTP server in the test: every body signed (HS256 JWT over its SHA-256, checked
here independently of the server's code), events in the order they happened, and a receiver that is down for
10 s gets everything it missed, in order, once it is back."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess, free_port
from tests.whip.conftest import AUTH, ffmpeg_publisher, mint

OFFER = (Path(__file__).parents[1] / "whip" / "fixtures" / "ffmpeg_offer.sdp").read_text().replace("\n", "\r\n")


class Receiver:
    """A webhook receiver on a fixed port that can be stopped and started again (the outage)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    receiver.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    def events(self, path: str = "/hook") -> list[dict]:  # type: ignore[type-arg]
        with self.lock:
            return [json.loads(body) for p, _, body in self.received if p == path]

    def wait_for(self, predicate: object, timeout: float = 15.0, path: str = "/hook") -> list[dict]:  # type: ignore[type-arg]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events(path)
            if predicate(events):  # type: ignore[operator]
                return events
            time.sleep(0.05)
        raise AssertionError(f"webhooks never satisfied the condition: {[e['event'] for e in self.events(path)]}")


def verify(token: str, body: bytes, secret: str = "devsecret") -> dict:  # type: ignore[type-arg]
    """HS256 by hand (not the server's code): signature, then the body's SHA-256 claim and the expiry."""
    header, payload, signature = token.split(".")
    expected = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    if not hmac.compare_digest(expected, given):
        raise ValueError("bad signature")
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"] == "HS256"
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if claims["sha256"] != base64.b64encode(hashlib.sha256(body).digest()).decode():
        raise ValueError("body does not match its signature")
    if claims["exp"] < time.time():
        raise ValueError("expired")
    return claims  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    r.start()
    yield r
    if r.server is not None:
        r.stop()


@pytest.fixture(scope="module")
def hooked(artifacts: Path, receiver: Receiver) -> Iterator[ServerProcess]:
    base = f"http://127.0.0.1:{receiver.port}"
    proc = ServerProcess(artifacts, args=["--webhook-url", f"{base}/hook", "--webhook-url", f"{base}/second"])
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log(), proc.log()[-4000:]


def of_room(events: list[dict], room: str, tracks: bool = False) -> list[str]:  # type: ignore[type-arg]
    """Event names of one room; without track events unless asked (a session DELETEd within the media
    service's 50 ms announcement debounce publishes no tracks, one DELETEd later does: both are right)."""
    return [e["event"] for e in events if e["room"]["name"] == room and (tracks or not e["event"].startswith("track_"))]


def whip(server: ServerProcess, room: str, identity: str) -> tuple[str, str]:
    token = mint(server, room, identity)
    res = httpx.post(
        f"{server.base}/whip/{room}",
        content=OFFER,
        headers={"content-type": "application/sdp", "authorization": f"Bearer {token}"},
    )
    assert res.status_code == 201, res.text
    return server.base + res.headers["location"], token


def test_events_are_signed_and_in_order(hooked: ServerProcess, receiver: Receiver, artifacts: Path) -> None:
    room = "hook-" + uuid.uuid4().hex[:6]
    assert httpx.post(f"{hooked.base}/api/rooms", json={"name": room}, auth=AUTH).status_code in (200, 201)
    url, token = whip(hooked, room, "enc")
    assert httpx.delete(url, headers={"authorization": f"Bearer {token}"}).status_code == 200
    assert httpx.delete(f"{hooked.base}/api/rooms/{room}", auth=AUTH).status_code in (200, 204)
    expected = [
        "room_started",
        "participant_joined",
        "whip_session_started",
        "whip_session_ended",
        "participant_left",
        "room_finished",
    ]
    events = receiver.wait_for(lambda evs: len(of_room(evs, room)) >= len(expected))
    assert of_room(events, room) == expected
    mine = [e for e in events if e["room"]["name"] == room and not e["event"].startswith("track_")]
    assert mine[1]["participant"]["identity"] == "enc" and mine[4]["reason"] == "left"
    assert mine[2]["session"]["kind"] == "whip" and mine[2]["session"]["id"] == url.rsplit("/", 1)[1]
    assert len({e["id"] for e in mine}) == len(mine)  # ids for replay/duplicate checks
    assert all(a["createdAt"] <= b["createdAt"] for a, b in itertools.pairwise(mine))
    # every URL gets every event, each body signed by the API key pair over its exact bytes
    assert of_room(receiver.wait_for(lambda evs: len(of_room(evs, room)) >= 6, path="/second"), room) == expected
    with receiver.lock:
        deliveries = [(h, b) for p, h, b in receiver.received if room.encode() in b]
    for headers, body in deliveries:
        assert headers["content-type"] == "application/webhook+json"
        assert verify(headers["authorization"], body)["iss"] == "devkey"
    headers, body = deliveries[0]
    with pytest.raises(ValueError, match="does not match"):
        verify(headers["authorization"], body.replace(b"room_started", b"room_finished"))
    with pytest.raises(ValueError, match="bad signature"):
        verify(headers["authorization"], body, secret="another-secret")

    # tracks: a real publisher (PyAV's FFmpeg over WHIP), its tracks announced after its join, ended before its leave
    media_room = "hook-media-" + uuid.uuid4().hex[:6]
    publisher = ffmpeg_publisher(hooked, media_room, mint(hooked, media_room, "cam"), 3, artifacts / "hook-ffmpeg.log")
    assert publisher.wait(40) == 0
    events = receiver.wait_for(lambda evs: "room_finished" in of_room(evs, media_room))
    names = of_room(events, media_room, tracks=True)
    assert names[:3] == ["room_started", "participant_joined", "whip_session_started"], names
    assert names[-3:] == ["whip_session_ended", "participant_left", "room_finished"], names
    middle = names[3:-3]  # tracks exist from the answer on; ICE connects in between; they end before the session
    assert sorted(middle) == sorted(["track_published"] * 2 + ["whip_session_connected"] + ["track_unpublished"] * 2)
    assert middle[-2:] == ["track_unpublished", "track_unpublished"], names
    kinds = sorted(
        e["track"]["kind"]
        for e in receiver.events()
        if e["event"] == "track_published" and e["room"]["name"] == media_room
    )
    assert kinds == ["audio", "video"]


def events_of(events: list[dict], room: str) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in events if e["room"]["name"] == room]


def metric(server: ServerProcess, line_start: str) -> float:
    for line in httpx.get(f"{server.base}/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.split()[-1])
    return 0.0


def test_a_receiver_down_for_10s_gets_the_events_after_it_returns(hooked: ServerProcess, receiver: Receiver) -> None:
    room = "hook-down-" + uuid.uuid4().hex[:6]
    failed_before = metric(hooked, 'roomcast_webhook_deliveries_total{result="failed_attempts"}')
    receiver.stop()
    try:
        assert httpx.post(f"{hooked.base}/api/rooms", json={"name": room}, auth=AUTH).status_code in (200, 201)
        for identity in ("a", "b"):
            url, token = whip(hooked, room, identity)
            assert httpx.delete(url, headers={"authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.delete(f"{hooked.base}/api/rooms/{room}", auth=AUTH).status_code in (200, 204)
        time.sleep(10)  # the outage itself: the receiver is away for 10 s
        assert metric(hooked, 'roomcast_webhook_deliveries_total{result="failed_attempts"}') > failed_before
        assert metric(hooked, "roomcast_webhook_queued") >= 10  # both URLs hold their events
    finally:
        receiver.start()
    back = time.monotonic()
    expected = ["room_started"]
    for _ in ("a", "b"):
        expected += ["participant_joined", "whip_session_started", "whip_session_ended", "participant_left"]
    expected.append("room_finished")
    events = receiver.wait_for(lambda evs: len(of_room(evs, room)) >= len(expected), timeout=15)
    delay = time.monotonic() - back
    assert of_room(events, room) == expected
    assert len({e["id"] for e in events if e["room"]["name"] == room}) == len(events_of(events, room))  # no dups
    assert delay < 6, delay  # the backoff is capped at 4 s
    print(f"after the outage: {len(expected)} events delivered {delay:.2f}s after the receiver came back")
