"""The Python SDK against the server: our client-role core (ICE controlling, DTLS client, SRTP) end to end."""

from __future__ import annotations

import asyncio
import uuid

from roomcast.sdk import connect
from tests.signaling.wsclient import dev_token
from tests.support.server import ServerProcess


async def test_sdk_publisher_to_sdk_subscribers(server: ServerProcess) -> None:
    room = "sdk-" + uuid.uuid4().hex[:6]
    publisher = await connect(server.ws_base, dev_token(room, "camera"))
    publication = await publisher.publish(["video", "audio"])
    subscribers = [await connect(server.ws_base, dev_token(room, f"viewer{i}", can_publish=False)) for i in range(3)]
    counts = [dict[str, int]() for _ in subscribers]
    done = asyncio.Event()

    def counter(i: int):  # type: ignore[no-untyped-def]
        def on_packet(track_sid: str, pkt: bytes) -> None:
            counts[i][track_sid] = counts[i].get(track_sid, 0) + 1
            if all(len(c) == 2 and min(c.values()) >= 95 for c in counts):
                done.set()

        return on_packet

    for i, sub in enumerate(subscribers):
        await asyncio.wait_for(sub.tracks_changed.wait(), 5)
        while len(sub.tracks) < 2:
            sub.tracks_changed.clear()
            await asyncio.wait_for(sub.tracks_changed.wait(), 5)
        await sub.subscribe(counter(i), decrypt=i != 0)  # the first one decrypts, the others count headers
    for n in range(100):
        publication.send("video", bytes([n % 256]) * 1000, n * 3000, marker=True)
        publication.send("audio", bytes([n % 256]) * 100, n * 960)
        await asyncio.sleep(0.005)  # a media source's pacing (200 packets/s), not a wait for an event
    await asyncio.wait_for(done.wait(), 10)
    video_sid = next(sid for sid, t in subscribers[0].tracks.items() if t["kind"] == "video")
    for c in counts:
        assert c[video_sid] >= 95 and sum(c.values()) >= 190  # loopback: at most a few losses
    for client in (publisher, *subscribers):
        await client.close()


async def test_sdk_data_to_and_from_the_room(server: ServerProcess) -> None:
    room = "sdk-data-" + uuid.uuid4().hex[:6]
    alice = await connect(server.ws_base, dev_token(room, "alice"))
    bob = await connect(server.ws_base, dev_token(room, "bob"))
    got: list[tuple[dict[str, object], bytes]] = []
    arrived = asyncio.Event()

    def on_data(header: dict[str, object], payload: bytes) -> None:
        got.append((header, payload))
        if len(got) >= 2:
            arrived.set()

    await bob.connect_data(on_data)
    await alice.connect_data(lambda header, payload: None)
    alice.send_data("hello", topic="chat")
    big = bytes(range(256)) * 1024  # 256 KiB: chunked by the SDK, reassembled on the other side
    alice.send_data(big, topic="file")
    await asyncio.wait_for(arrived.wait(), 10)
    assert (got[0][0]["f"], got[0][0]["t"], got[0][1]) == ("alice", "chat", b"hello")
    assert got[1][0]["t"] == "file" and got[1][1] == big
    await alice.close()
    await bob.close()


async def test_sdk_room_events_and_participants(server: ServerProcess) -> None:
    """``room.on(...)`` sees others join, publish and leave, ``room.participants`` follows, and the
    room's own close is reported as ``disconnected``."""
    room = "sdk-events-" + uuid.uuid4().hex[:6]
    host = await connect(server.ws_base, dev_token(room, "host"))
    events: list[tuple[str, dict]] = []  # type: ignore[type-arg]
    changed = asyncio.Event()
    for name in ("participant_joined", "participant_left", "tracks", "disconnected"):
        host.on(name, lambda msg, name=name: (events.append((name, msg)), changed.set()))

    async def until(name: str, test=lambda msg: True) -> dict:  # type: ignore[no-untyped-def,type-arg]
        while not any(n == name and test(m) for n, m in events):
            changed.clear()
            await asyncio.wait_for(changed.wait(), 10)
        return next(m for n, m in events if n == name and test(m))

    guest = await connect(server.ws_base, dev_token(room, "guest"))
    assert (await until("participant_joined"))["participant"]["identity"] == "guest"
    assert "guest" in host.participants and "host" in guest.participants  # the newcomer learns who is there
    await guest.publish(["audio"])
    published = await until("tracks", lambda msg: msg["tracks"])
    assert [(t["participant"], t["kind"]) for t in published["tracks"]] == [("guest", "audio")]
    await guest.close()
    assert (await until("participant_left"))["identity"] == "guest"
    assert "guest" not in host.participants
    await host.close()
    assert (await until("disconnected"))["code"] == 1000
    try:
        host.on("no_such_event", print)
    except ValueError as exc:
        assert "no_such_event" in str(exc)
    else:
        raise AssertionError("an unknown event name must be refused")


async def test_sdk_publisher_answers_the_servers_nacks(server: ServerProcess) -> None:
    """Packets the publisher's network lost (here: dropped at its socket the first time) are NACKed by
    the server and resent from the publisher's history: the viewer gets every sequence number."""
    room = "sdk-nack-" + uuid.uuid4().hex[:6]
    publisher = await connect(server.ws_base, dev_token(room, "camera"))
    publication = await publisher.publish(["video"])
    viewer = await connect(server.ws_base, dev_token(room, "viewer", can_publish=False))
    while len(viewer.tracks) < 1:
        viewer.tracks_changed.clear()
        await asyncio.wait_for(viewer.tracks_changed.wait(), 5)
    seqs: set[int] = set()
    everything = asyncio.Event()
    await viewer.subscribe(lambda _sid, pkt: (seqs.add(int.from_bytes(pkt[2:4], "big")), everything.set()))
    send = publication.conn.rtc.direct_send
    assert send is not None
    lost: set[int] = set()

    def lossy(data: bytes, remote: tuple[str, int]) -> None:
        seq = int.from_bytes(data[2:4], "big")
        if data[1] & 0x7F == 96 and seq % 7 == 3 and seq not in lost:
            lost.add(seq)  # the first copy is lost on the way; a retransmission gets through
            return
        send(data, remote)

    sent = [publication.send("video", bytes([0]) * 800, 0, marker=True)]
    await asyncio.wait_for(everything.wait(), 10)  # the subscription is live: its first packet arrived
    seqs.clear()
    publication.conn.rtc.direct_send = lossy
    for n in range(1, 141):
        sent.append(publication.send("video", bytes([n % 256]) * 800, n * 3000, marker=True))
        await asyncio.sleep(0.005)  # a media source's pacing, not a wait for an event
    wanted = set(sent[1:])
    publication.conn.rtc.direct_send = send  # a few more, unharmed: a lost last packet shows as a gap too
    for n in range(141, 146):
        publication.send("video", bytes([n % 256]) * 800, n * 3000, marker=True)
        await asyncio.sleep(0.005)
    for _ in range(100):  # NACK round trips: a bounded wait for the last retransmissions
        if wanted <= seqs:
            break
        await asyncio.sleep(0.05)
    assert lost & wanted and publication.retransmitted >= len(lost & wanted)
    assert wanted <= seqs, sorted(wanted - seqs)
    await publisher.close()
    await viewer.close()
