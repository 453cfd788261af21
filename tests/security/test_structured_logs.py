"""Structured logs (issue 18 item 4): ``--log-format json`` gives one JSON object per line with the event's
fields (room, participant, sid, node); repeats are rate-limited; no secret or token reaches the log (the log
of a real server that ran a call with real keys and TURN is grepped for each of them)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roomcast.app.logs import JsonFormatter, RepeatFilter, TextFormatter, configure_logging
from roomcast.rooms.tokens import Grants, mint
from roomcast.sdk import connect
from tests.support.server import ServerProcess


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("roomcast.test_structured")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    yield log, stream
    log.removeHandler(handler)


def test_json_lines_carry_the_event_fields_and_the_node(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = logger
    configure_logging("json", "node-7", ("roomcast.test_structured",))
    log.info("%s joined room %s", "alice", "r1", extra={"room": "r1", "participant": "alice", "sid": "PA_1"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed", extra={"room": "r1"})
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "alice joined room r1" and first["level"] == "info"
    assert (first["room"], first["participant"], first["sid"], first["node"]) == ("r1", "alice", "PA_1", "node-7")
    assert first["ts"].endswith("Z") and first["logger"] == "roomcast.test_structured"
    assert second["level"] == "error" and "ValueError: boom" in second["exc"]


def test_text_lines_append_the_fields() -> None:
    record = logging.LogRecord("roomcast.x", logging.INFO, "", 0, "media %s connected", ("PA_1",), None)
    record.room, record.sid = "r1", "PA_1"
    assert TextFormatter().format(record).endswith("roomcast.x: media PA_1 connected room=r1 sid=PA_1")
    assert json.loads(JsonFormatter().format(record))["sid"] == "PA_1"


def test_repeats_are_rate_limited_and_counted() -> None:
    now = [0.0]
    limit = RepeatFilter(burst=3, interval=10.0, clock=lambda: now[0])

    def record(level: int, msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("roomcast.x", level, "", 0, msg, args, None)

    # one failure hitting many peers is one flood (warnings and errors: by template)
    passed = [limit.filter(record(logging.WARNING, "connection %s failed", i)) for i in range(50)]
    assert passed.count(True) == 3
    # distinct info events all pass; the same info line again and again does not
    assert all(limit.filter(record(logging.INFO, "%s joined", f"user{i}")) for i in range(20))
    assert [limit.filter(record(logging.INFO, "same line")) for _ in range(5)].count(True) == 3
    now[0] = 11.0  # a quiet spell later: the next one says how many were dropped
    after = record(logging.WARNING, "connection %s failed", 99)
    assert limit.filter(after) and after.repeated == 47  # type: ignore[attr-defined]


async def test_a_json_server_log_has_the_fields_and_no_secret(artifacts: Path) -> None:
    api_key, api_secret = "key-" + secrets.token_hex(4), secrets.token_urlsafe(32)
    turn_secret = secrets.token_urlsafe(24)
    env = {
        "ROOMCAST_API_KEY": api_key,
        "ROOMCAST_API_SECRET": api_secret,
        "ROOMCAST_TURN_SECRET": turn_secret,
        "ROOMCAST_TURN_HOST": "127.0.0.1",
    }
    proc = ServerProcess(artifacts, env=env, args=["--log-format", "json", "--node-id", "node-logs"])
    tokens, turn_passwords = [], []
    try:
        for identity in ("alice", "bob"):
            token = mint(api_key, api_secret, identity=identity, grants=Grants(room="logged"), now=time.time())
            tokens.append(token)
            room = await connect(proc.ws_base, token)
            turn_passwords += [s["credential"] for s in room.joined["ice_servers"] if s.get("credential")]
            if identity == "alice":
                publication = await room.publish(["video"])
                publication.send("video", b"\x00" * 100, 0, marker=True)
                alice = room
            else:
                bob = room
        await asyncio.wait_for(bob.tracks_changed.wait(), 5)
        await bob.subscribe(lambda sid, pkt: None)
        for room in (alice, bob):
            await room.close()
    finally:
        assert proc.stop() == 0
    text = proc.log()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    joined = [e for e in lines if e["msg"].endswith("joined room logged")]
    assert {e["participant"] for e in joined} == {"alice", "bob"}
    assert all(e["room"] == "logged" and e["sid"].startswith("PA_") for e in joined)
    assert {e["node"] for e in lines} == {"node-logs"}  # every line, uvicorn's too
    connected = [e for e in lines if e.get("target") in ("$publish", "$subscribe") and "connected" in e["msg"]]
    assert {(e["participant"], e["target"]) for e in connected} == {("alice", "$publish"), ("bob", "$subscribe")}
    assert sum("/rtc?access_token=[redacted]" in e["msg"] for e in lines) == 2  # the WebSocket requests
    assert any(e["logger"] == "uvicorn.access" and "/healthz" in e["msg"] for e in lines)
    assert len(turn_passwords) == 2
    for secret in (api_secret, turn_secret, *turn_passwords, *(t.rsplit(".", 1)[1] for t in tokens)):
        assert secret not in text
