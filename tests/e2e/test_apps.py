"""The live streaming and classroom apps, each role played by its own Chromium context."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from playwright.async_api import Page

from tests.e2e.test_sfu import decoding_tracks
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

FRAMES_FROM = """async (who) => {
  const stats = await window.room.getStats();
  const peer = window.room.serverPeers.get('$subscribe');
  if (!peer) return 0;
  const tr = peer.pc.getTransceivers().find(t => {
    const sid = window.room.sfu.midToSid.get(t.mid);
    const info = sid && window.room.sfu.remote.get(sid);
    return info && info.participant === who && info.kind === 'video';
  });
  if (!tr) return 0;
  const inbound = stats.find(s => s.type === 'inbound-rtp' && s.kind === 'video'
    && s.trackIdentifier === tr.receiver.track.id);
  return inbound ? (inbound.framesDecoded || 0) : 0;
}"""


async def frames_from(page: Page, who: str) -> int:
    return int(await page.evaluate(FRAMES_FROM, who))


async def until_frames_from(page: Page, who: str, at_least: int = 1, timeout: float = 20.0) -> int:
    async def poll() -> int:
        while (n := await frames_from(page, who)) < at_least:  # noqa: ASYNC110 - polling getStats, bounded
            await asyncio.sleep(0.2)
        return n

    return await asyncio.wait_for(poll(), timeout)


async def page_for(new_page: NewPage, server: ServerProcess, path: str, state: str) -> Page:
    page = await new_page(f"{server.base}{path}")
    await page.wait_for_function(f"window.{state} && window.{state}.joined", timeout=20_000)
    return page


async def test_live_questions_gifts_and_stage(server: ServerProcess, new_page: NewPage, artifacts: Path) -> None:
    room = "live-" + uuid.uuid4().hex[:6]
    host = await page_for(new_page, server, f"/live?room={room}&identity=host&role=host", "liveState")
    viewers = [await page_for(new_page, server, f"/live?room={room}&identity=v{i}", "liveState") for i in range(3)]
    for v in viewers:
        await decoding_tracks(v, 1)
    await viewers[0].fill("#question", "How do SFUs work?")
    await viewers[0].press("#question", "Enter")
    await host.wait_for_function(
        "window.liveState.questions.some(q => q.text === 'How do SFUs work?' && q.from === 'v0')"
    )
    await viewers[1].click("button[data-gift='🚀']")
    for page in (host, viewers[0], viewers[2]):
        await page.wait_for_function("window.liveState.gifts.some(g => g.kind === '🚀' && g.from === 'v1')")
    await host.click("#q-v0-1 >> text=pin")
    await viewers[2].wait_for_function("window.liveState.qa.some(u => u.state === 'pinned')")
    # an uninvited viewer cannot publish: the server refuses
    refused = await viewers[0].evaluate("window.room.publish(new MediaStream()).then(() => 'ok', e => e.code)")
    assert refused == "permission_denied"
    # a viewer may not pin or answer: the qa topic needs the host's grant
    await viewers[0].evaluate(
        "window.room.sendData(JSON.stringify({id: 'x', state: 'pinned', text: 'spam'}), {topic: 'qa'})"
    )
    await viewers[0].wait_for_function("window.liveState.errors.includes('permission_denied')")
    # invite v2 on stage: it publishes, the others decode it; then send it back
    await host.wait_for_selector("#p-v2 >> text=invite on stage")
    await host.click("#p-v2 >> text=invite on stage")
    await viewers[2].wait_for_function("window.liveState.onStage === true")
    assert await until_frames_from(viewers[0], "v2") > 0
    await host.screenshot(path=str(artifacts / "live-host.png"))
    await host.click("#p-v2 >> text=send back")
    await viewers[2].wait_for_function("window.liveState.onStage === false")
    await viewers[0].wait_for_function(
        "!window.room.sfu || ![...window.room.sfu.remote.values()].some(t => t.participant === 'v2')"
    )


async def test_classroom_hands_speaking_mute_and_refusals(
    server: ServerProcess, new_page: NewPage, artifacts: Path
) -> None:
    room = "class-" + uuid.uuid4().hex[:6]
    teacher = await page_for(new_page, server, f"/classroom?room={room}&identity=teacher&role=teacher", "classState")
    students = [
        await page_for(new_page, server, f"/classroom?room={room}&identity=s{i}", "classState") for i in range(3)
    ]
    for s in students:
        await until_frames_from(s, "teacher")
    # screen share (getDisplayMedia, auto-accepted by the fake-UI flag) reaches the students as a second track
    await teacher.click("#share")
    await students[2].wait_for_function(
        "[...window.room.sfu.remote.values()].some(t => t.participant === 'teacher' && t.source === 'screen')"
    )
    assert sum(1 for n in await decoding_tracks(students[2], 2) if n > 0) >= 2
    await students[0].click("#raise")
    await teacher.wait_for_function("window.classState.hands.includes('s0')")
    await teacher.click("#hand-s0 >> text=let speak")
    await students[0].wait_for_function("window.classState.speaking === true")
    assert await until_frames_from(students[1], "s0", 10) >= 10
    # mute stops the student's frames at the others (server-side: forwarding stops)
    await teacher.click("#student-s0 >> text=mute")
    await students[1].wait_for_function(
        "[...window.room.sfu.remote.values()].some(t => t.participant === 's0' && t.kind === 'video' && t.muted)"
    )
    await asyncio.sleep(0.5)  # let packets already in flight drain
    frozen = await frames_from(students[1], "s0")
    await asyncio.sleep(1.5)  # an observation window: frames must not grow during it
    assert await frames_from(students[1], "s0") <= frozen + 1
    # a student cannot mute others: refused by the server
    await students[2].evaluate("window.room.moderate('s1', 'mute')")
    await students[2].wait_for_function("window.classState.errors.includes('permission_denied')")
    # shared Q&A
    await students[2].fill("#text", "What is a keyframe?")
    await students[2].press("#text", "Enter")
    await teacher.wait_for_function("window.classState.chat.includes('What is a keyframe?')")
    await teacher.screenshot(path=str(artifacts / "classroom-teacher.png"))
    # remove a student: it is told and leaves
    await teacher.click("#student-s1 >> text=remove")
    await students[1].wait_for_function("window.classState.errors.includes('removed')")
