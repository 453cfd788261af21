"""A participant whose socket drops keeps its place within the resume window (DESIGN: reconnection)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.signaling.wsclient import Client, dev_token
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def short_window(artifacts: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(artifacts, env={"ROOMCAST_RESUME_WINDOW": "1"})
    yield proc
    assert proc.stop() == 0


async def test_resume_within_the_window_is_invisible_to_others(server: ServerProcess) -> None:
    room = "resume-" + uuid.uuid4().hex[:6]
    alice, _ = await Client.joined(server.ws_base, room, "alice")
    token = dev_token(room, "bob")
    bob = await Client.open(server.ws_base, token)
    await bob.send({"type": "join"})
    joined = await bob.recv_type("joined")
    assert joined["resume_token"] and joined["resumed"] is False
    await alice.recv_type("participant_joined")
    await bob.ws.close(4000, "network drop")  # not a leave
    again = await Client.open(server.ws_base, token)
    await again.send({"type": "join", "resume": joined["resume_token"]})
    resumed = await again.recv_type("joined")
    assert resumed["resumed"] is True and [p["identity"] for p in resumed["participants"]] == ["alice"]
    await again.send({"type": "data", "payload": "back"})
    got = await alice.recv_type("data")
    assert got["payload"] == "back"  # and alice saw no participant_left in between
    await again.close()
    await alice.close()


async def test_wrong_resume_token_is_refused(server: ServerProcess) -> None:
    room = "resume-" + uuid.uuid4().hex[:6]
    client = await Client.open(server.ws_base, dev_token(room, "carol"))
    await client.send({"type": "join", "resume": "not-a-token"})
    err = await client.recv()
    assert (err["code"], err["fatal"]) == ("resume_failed", True)


async def test_after_the_window_the_others_are_told(short_window: ServerProcess) -> None:
    room = "resume-" + uuid.uuid4().hex[:6]
    alice, _ = await Client.joined(short_window.ws_base, room, "alice")
    bob, joined = await Client.joined(short_window.ws_base, room, "bob")
    await alice.recv_type("participant_joined")
    await bob.ws.close(4000, "network drop")
    left = await alice.recv_type("participant_left", timeout=5)
    assert (left["identity"], left["reason"]) == ("bob", "disconnected")
    late = await Client.open(short_window.ws_base, dev_token(room, "bob"))
    await late.send({"type": "join", "resume": joined["resume_token"]})
    assert (await late.recv())["code"] == "resume_failed"
    await alice.close()
    await asyncio.sleep(0)
