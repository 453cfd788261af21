"""F3: a browser's signaling socket drops mid-call; it resumes, media never stops, nobody sees it leave."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from tests.e2e.test_apps import frames_from, until_frames_from
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser


async def test_signaling_drop_is_resumed_without_losing_tracks(server: ServerProcess, new_page: NewPage) -> None:
    room = "drop-" + uuid.uuid4().hex[:6]
    alice = await new_page(f"{server.base}/call?room={room}&identity=alice")
    await alice.wait_for_function("window.callState && window.callState.joined")
    bob = await new_page(f"{server.base}/call?room={room}&identity=bob")
    await bob.wait_for_function("window.callState && window.callState.joined")
    await until_frames_from(bob, "alice", 5)
    await until_frames_from(alice, "bob", 5)
    await bob.evaluate("window.resumed = false; window.room.on('reconnected', () => { window.resumed = true; })")
    before = await frames_from(bob, "alice")
    await bob.evaluate("window.room.ws.close(4000, 'simulated network drop')")
    await bob.wait_for_function("window.resumed === true", timeout=15_000)
    assert await bob.evaluate("window.room.state") == "connected"
    assert await until_frames_from(bob, "alice", before + 30) > before  # media kept flowing
    assert await alice.evaluate("window.callState.left") == []  # bob never appeared to leave
    assert await alice.evaluate("window.room.participants.has('bob')")
    await bob.evaluate("window.room.sendData('still here', {topic: 'chat'})")
    await alice.evaluate("window.got = []; window.room.on('data', m => window.got.push(m.payload))")
    await bob.evaluate("window.room.sendData('after the drop', {topic: 'chat'})")
    await alice.wait_for_function("window.got.includes('after the drop')")


async def test_a_draining_server_tells_the_browser_which_does_not_resume(artifacts: Path, new_page: NewPage) -> None:
    """SIGTERM: the JS SDK reports ``serverShutdown`` with the grace period, then ``disconnected``
    without trying to resume against a server that is going away."""
    proc = ServerProcess(artifacts)
    try:
        page = await new_page(f"{proc.base}/chat?room=drain&identity=alice")
        await page.wait_for_function("window.room && window.room.state === 'connected'")
        await page.evaluate(
            "window.events = []; window.room.on('serverShutdown', e => window.events.push(['shutdown', e.grace]));"
            "window.room.on('disconnected', e => window.events.push(['disconnected', e.code]));"
            "window.room.on('reconnecting', () => window.events.push(['reconnecting']));"
        )
        proc.proc.send_signal(signal.SIGTERM)
        await page.wait_for_function("window.events.some(e => e[0] === 'disconnected')", timeout=20_000)
        events = await page.evaluate("window.events")
        assert events[0][0] == "shutdown" and events[0][1] > 0
        assert ["reconnecting"] not in events
        assert proc.proc.wait(timeout=15) == 0
    finally:
        proc.stop()
