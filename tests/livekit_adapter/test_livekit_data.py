"""Room data between livekit-client (DataPacket on ``_reliable``/``_lossy``) and Roomcast's JS SDK (envelopes on
``_roomcast``) in one room, through the one data router: topics, destinations, both channels, RPC."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.test_data import joined
from tests.livekit_adapter.test_livekit_client import wait_event
from tests.support.browser_fixtures import NewPage
from tests.support.livekit_page import livekit_token, open_livekit_page, page_server
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with page_server() as base:
        yield base


async def test_livekit_and_roomcast_clients_exchange_data(server: ServerProcess, new_page: NewPage, pages: str) -> None:
    r = "lkdata-" + uuid.uuid4().hex[:8]
    alice = await open_livekit_page(new_page, pages)
    await alice.evaluate("([u, t]) => window.lkJoin(u, t)", [server.ws_base, livekit_token(r, "alice")])
    bob = await open_livekit_page(new_page, pages)
    await bob.evaluate("([u, t]) => window.lkJoin(u, t)", [server.ws_base, livekit_token(r, "bob")])
    carol = await joined(new_page, server, r, "carol")  # the Roomcast chat page (JS SDK)
    await wait_event(alice, "joined", "carol")

    # Roomcast -> LiveKit: an envelope on _roomcast becomes a user packet with its topic
    await carol.evaluate("window.room.sendData('hi livekit', {topic: 'chat'})")
    await wait_event(alice, "data", "carol", "chat", "hi livekit")
    await wait_event(bob, "data", "carol", "chat", "hi livekit")

    # LiveKit -> Roomcast and LiveKit, reliable and lossy; destinations honoured
    await alice.evaluate("window.lkSend('to nobody', {reliable: true, topic: 'chat', destinationIdentities: ['zed']})")
    await alice.evaluate("window.lkSend('to carol', {reliable: true, topic: 'chat', destinationIdentities: ['carol']})")
    await alice.evaluate("window.lkSend('hi all', {reliable: true, topic: 'chat'})")
    await alice.evaluate("window.lkSend('cursor 1', {reliable: false, topic: 'cursor'})")
    await carol.wait_for_function("window.got.filter(m => m.from === 'alice').length >= 3")
    got = await carol.evaluate("window.got.filter(m => m.from === 'alice').map(m => [m.topic, m.binary, m.payload])")
    assert got[:2] == [["chat", False, "to carol"], ["chat", False, "hi all"]]  # 'to nobody' reached no one
    assert ["cursor", False, "cursor 1"] in got
    await wait_event(bob, "data", "alice", "chat", "hi all")
    bob_got = [e for e in await bob.evaluate("window.lkEvents") if e[0] == "data" and e[1] == "alice"]
    assert [e[3] for e in bob_got if e[2] == "chat"] == ["hi all"]

    # LiveKit <-> LiveKit RPC (request/ack/response packets) crosses the server with identities it stamps
    await alice.evaluate("window.lkServeRpc()")
    answer = await bob.evaluate("window.lkCallRpc('alice', 'ping')")
    assert answer == "hello bob: ping"
