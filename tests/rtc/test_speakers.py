"""Active speakers from the producers' audio levels (RFC 6464), on a fake clock."""

from __future__ import annotations

from roomcast.rtc.speakers import HOLD, INTERVAL, Speakers
from roomcast.sfu.producer import Producer
from roomcast.sfu.router import Router


def audio(router: Router, identity: str) -> Producer:
    producer = Producer(f"TR_{identity}", f"PA_{identity}", identity, "audio", "0", (), {}, 48000, audio_level_ext=1)
    router.producers[producer.sid] = producer
    return producer


def test_speakers_loudest_first_announced_on_change_and_after_the_hold() -> None:
    told: list[list[tuple[str, float]]] = []
    speakers, router = Speakers(lambda room, s: told.append(s)), Router("r")
    a, b = audio(router, "a"), audio(router, "b")
    a.loud_at, a.loudness = 0.0, 40
    b.loud_at, b.loudness = 0.0, 20  # -20 dBov: louder than a
    speakers.tick(router, 0.1)
    assert [identity for identity, _ in told[-1]] == ["b", "a"] and round(told[-1][0][1], 2) == 0.1
    speakers.tick(router, 0.1 + INTERVAL)  # nothing changed: nothing told
    assert len(told) == 1 and speakers.current("r")[0][0] == "b"
    b.muted = True
    a.loud_at = 1.0  # a goes on speaking
    speakers.tick(router, 0.1 + 2 * INTERVAL)
    assert [identity for identity, _ in told[-1]] == ["a"]
    speakers.tick(router, 1.0 + HOLD + INTERVAL)  # a's last loud packet is older than the hold
    assert told[-1] == [] and speakers.current("r") == []
