"""The per-socket outbox: bounded, and full-state messages coalesced for a slow reader (issue 12 H2)."""

from __future__ import annotations

from roomcast.signaling.outbox import CLOSE_POLICY, Outbox


async def test_a_newer_full_state_replaces_the_unsent_one_and_keeps_order() -> None:
    box = Outbox(8)
    box.push("joined")
    box.push_latest("tracks", "tracks-1")
    box.push("participant_joined")
    box.push_latest("tracks", "tracks-2")
    assert [box.pop() for _ in range(len(box.items))] == ["joined", "participant_joined", "tracks-2"]
    box.push_latest("tracks", "tracks-3")  # the previous one was sent: this one is queued anew
    assert [box.pop() for _ in range(len(box.items))] == ["tracks-3"]


async def test_overflow_closes_instead_of_growing() -> None:
    box = Outbox(4)
    for i in range(10):
        box.push_latest("tracks", f"t{i}")  # coalesced: never overflows
    assert len(box.items) == 1 and box.close_with is None
    for i in range(5):
        box.push(f"m{i}")
    assert box.close_with == (CLOSE_POLICY, "slow_consumer") and not box.items
