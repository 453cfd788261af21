"""VP8 simulcast with temporal layers under loss (RELIABILITY F5), sans-IO.

Chromium showed it first: at 10 % loss on both legs, 100 % of the frames of a stream without temporal
layers were decoded, 75-82 % of Chrome's simulcast layers (three temporal layers), although the SFU
repaired both legs. The receiver decodes past a late TL1/TL2 frame, and with one packet per frame every
lost frame is late (its loss shows only when the next frame arrives). The subscriber is now shown one
temporal layer (sfu/temporal.py): it waits for the repair, as it does without temporal layers.
"""

from __future__ import annotations

import itertools

import pytest

from roomcast.wire import vp8
from roomcast.wire.rtcp import GenericNack
from roomcast.wire.rtp import RtpPacket, header_length, unwrap_rtx
from tests.sfu import lossy_simulcast
from tests.sfu.simulcast_support import SUB_RTX, SUB_SSRC, TID_PATTERN, Received, received, run, setup
from tests.sfu.test_simulcast import assert_one_stream, consumer_of


@pytest.mark.parametrize(("seed", "temporal", "frames"), [(1, None, 600), (2, None, 600), (1, 1, 300), (2, 1, 300)])
def test_ten_percent_loss_both_ways_still_decodes_95_percent_of_a_layer_with_temporal_layers(
    seed: int, temporal: int | None, frames: int
) -> None:
    """All temporal layers, or TL0 and TL1 (half the frame rate, as a bandwidth estimate may choose)."""
    net, router, publisher, subscriber, endpoints = lossy_simulcast.build(0.10, seed, seconds=20.0)
    router.set_target_layer("sub", router.tracks()[0].sid, 0, temporal)
    net.run_until(lambda: False, endpoints, max_time=22.0)  # the stream, then 2 s to settle
    decoded, _ = subscriber.decoded()
    stats = consumer_of(router, "sub").stats()
    assert net.lost > 0.08 * net.sent  # about 10 % of each direction was dropped: RTP, RTCP, NACKs and RTX alike
    assert publisher.retransmitted > 50 and router.counters["retransmitted"] > 20  # both legs repaired
    assert frames - 10 <= stats["frames"] <= frames * 1.15  # what the SFU sent (at TL1, some TL2 repairs too)
    assert decoded / stats["frames"] >= 0.95, f"{decoded} decoded; {stats}"


@pytest.mark.parametrize("seed", [1, 2])
def test_forwarding_only_the_base_layer_under_loss_no_higher_frame_reaches_the_subscriber(seed: int) -> None:
    """As a low bandwidth estimate has it: TL0 alone. A TL1/TL2 frame lost upstream and repaired later
    must not reach the subscriber either (it needs frames it never got, and takes a picture ID)."""
    net, router, publisher, subscriber, endpoints = lossy_simulcast.build(0.10, seed, seconds=20.0)
    router.set_target_layer("sub", router.tracks()[0].sid, 0, 0)
    net.run_until(lambda: False, endpoints, max_time=22.0)
    decoded, _ = subscriber.decoded()
    assert net.lost > 0.08 * net.sent and publisher.retransmitted > 50
    assert {frame.tid for frame in subscriber.frames.values()} == {0}  # nothing above the base layer
    sent = consumer_of(router, "sub").stats()["frames"]
    assert 140 <= sent <= 155  # a quarter of 600 frames: the TL0 frames, whole-lost ones included
    assert 0.95 * sent <= decoded <= sent


def test_without_temporal_layers_the_same_receiver_decodes_everything() -> None:
    """The receiver model against the stream Chrome sends without simulcast: it never skips, it waits."""
    net, _router, _publisher, subscriber, endpoints = lossy_simulcast.build(0.10, 1, 20.0, temporal_layers=False)
    net.run_until(lambda: False, endpoints, max_time=22.0)
    decoded, forwarded = subscriber.decoded()
    assert net.lost > 0.08 * net.sent and decoded == forwarded >= 590


def descriptor_of(packet: bytes) -> tuple[bool, bool, int, bool, int, int, int, int]:
    return vp8.read_descriptor(packet, header_length(packet))


def test_the_subscriber_sees_one_temporal_layer_and_so_do_its_retransmissions() -> None:
    router, publisher, downs, sid = setup()
    router.set_target_layer("sub0", sid, 0)  # one packet per frame, as Chrome's lowest layers mostly send
    run(router, publisher, 1.5)
    got = received(downs[0].rtp)
    assert {r.layer for r in got[-20:]} == {0}
    assert {r.tid for r in got} == {0}
    assert not any(descriptor_of(p)[vp8.LAYER_SYNC] for p in downs[0].rtp)  # no Y bit either
    assert_one_stream(got)  # TID 0 throughout: so TL0PICIDX goes up by one with every frame
    assert consumer_of(router).temporal_dropped == 0  # all of it forwarded, TL1 and TL2 frames too
    tl2 = next(i for i, r in enumerate(got) if r.begin and r.layer == 0 and TID_PATTERN[r.frame % 4] == 2)
    first = downs[0].rtp[tl2]
    nack = GenericNack(9, SUB_SSRC, (got[tl2].seq,)).serialize()
    router._on_subscriber_rtcp(router.participants["sub0"], nack)
    retransmission = downs[0].rtp[-1]
    assert RtpPacket.parse(retransmission).ssrc == SUB_RTX
    again = unwrap_rtx(retransmission, SUB_SSRC, first[1] & 0x7F)
    assert again[header_length(again) :] == first[header_length(first) :]  # the same descriptor as first sent


def nack_for(router: object, seq: int) -> None:
    nack = GenericNack(9, SUB_SSRC, (seq,)).serialize()
    router._on_subscriber_rtcp(router.participants["sub0"], nack)  # type: ignore[attr-defined]


def tids_after(got: list[Received], frame: int) -> set[int]:
    return {r.tid for r in got if r.begin and r.frame > frame}


def test_a_subscriber_waiting_for_a_packet_that_never_comes_gets_a_keyframe_and_the_real_layers() -> None:
    """A publisher that does not retransmit TL2 packets (libwebrtc's conditional retransmission on a long
    round trip): the subscriber, shown one temporal layer, would wait for that frame until a keyframe."""
    router, publisher, downs, sid = setup()
    router.set_target_layer("sub0", sid, 0)
    run(router, publisher, 1.0)
    q = publisher.layers[0]
    while TID_PATTERN[publisher.frame % 4] != 2:
        run(router, publisher, 1 / 30)
    publisher.drop.add((0, (q.seq + 1) & 0xFFFF))  # this TL2 frame's only packet is lost upstream, for good
    run(router, publisher, 0.1)
    seqs = [r.seq for r in received(downs[0].rtp)]
    hole = next(a + 1 for a, b in itertools.pairwise(seqs) if b - a == 2)
    plis_before = len(publisher.transport.plis())
    for _ in range(4):  # Chrome asks again every 100 ms (it knows no RTT as a receive-only peer)
        nack_for(router, hole)
        run(router, publisher, 0.1)
    assert consumer_of(router).stats()["stuck"] == 1  # asked for, 300 ms on, and not ours to send
    assert publisher.transport.plis()[plis_before:] == [q.ssrc]  # a keyframe ends the wait
    run(router, publisher, 0.5)
    got = received(downs[0].rtp)
    keyframe = next(r for r in got if r.keyframe_begin and r.seq > hole)
    assert tids_after(got, keyframe.frame) == {0, 1, 2} and consumer_of(router).stats()["single_temporal"] == 0
    assert {r.tid for r in got if r.frame < keyframe.frame} == {0}  # one layer until that keyframe
    assert_one_stream([r for r in got if r.seq > hole])  # TL0PICIDX and picture IDs continue across
    for _ in range(3):  # it does not ask again for the same wait
        nack_for(router, hole)
        run(router, publisher, 0.1)
    assert consumer_of(router).stats()["stuck"] == 1
    run(router, publisher, 10.0)  # after the hold, the next keyframe shows one temporal layer again
    router.request_keyframe(sid)
    mark = len(downs[0].rtp)
    run(router, publisher, 0.5)
    after = received(downs[0].rtp[mark:])
    keyframe = next(r for r in after if r.keyframe_begin)
    assert tids_after(after, keyframe.frame) == {0} and consumer_of(router).stats()["single_temporal"] == 1
    assert_one_stream(received(downs[0].rtp[:mark])[-3:] + after)
