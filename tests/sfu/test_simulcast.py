"""Simulcast through the router on a fake clock: three synthetic VP8 layers (or H.264), one or more
subscribers, layer switches driven by ``set_target_layer`` and ``set_bitrate_budget``.

What a subscriber must see (issue 14 item 2): switches only at keyframes of the new layer, the old
layer until then, one continuous stream (sequence numbers +1, timestamps advancing, VP8 picture ID
+1 per forwarded frame and TL0PICIDX +1 per forwarded TL0 frame), a lower frame rate when temporal
layers are dropped, keyframe requests within the throttle, and no flapping.
"""

from __future__ import annotations

import itertools

from roomcast.sfu.simulcast import SimulcastConsumer
from roomcast.wire.rtcp import GenericNack
from roomcast.wire.rtp import RtpPacket
from tests.sfu.simulcast_support import SUB_SSRC, TID_PATTERN, Received, received, run, setup


def consumer_of(router: object, owner: str = "sub0") -> SimulcastConsumer:
    media = router.participants[owner]  # type: ignore[attr-defined]
    consumer = next(iter(media.consumers.values()))[0]
    assert isinstance(consumer, SimulcastConsumer)
    return consumer


def assert_one_stream(got: list[Received]) -> None:
    """Sequence +1, timestamps never back, picture IDs +1 per frame, TL0PICIDX +1 per TL0 frame."""
    assert {r.ssrc for r in got} == {SUB_SSRC}
    for a, b in itertools.pairwise(got):
        assert (b.seq - a.seq) & 0xFFFF == 1, (a, b)
        assert (b.ts - a.ts) & 0xFFFFFFFF < 0x80000000, (a, b)
    frames = [r for r in got if r.begin]
    for a, b in itertools.pairwise(frames):
        assert (b.picture_id - a.picture_id) & 0x7FFF == 1, (a, b)
        assert b.ts != a.ts, (a, b)  # two pictures never share a timestamp
        step = (b.tl0 - a.tl0) & 0xFF
        assert step == (1 if b.tid == 0 else 0), (a, b)


def source_tid(r: Received) -> int:
    """The TID the publisher gave the frame: the subscriber sees every frame as TID 0 (sfu/temporal.py)."""
    return 0 if r.keyframe_begin else TID_PATTERN[r.frame % 4]


def switches(got: list[Received]) -> list[tuple[Received, Received]]:
    return [(a, b) for a, b in itertools.pairwise(got) if a.layer != b.layer and b.layer >= 0]


def test_layers_learn_their_ssrcs_from_the_rid_extension() -> None:
    router, publisher, _downs, _sid = setup()
    run(router, publisher, 0.5)
    track = router.tracks()[0]
    assert track.simulcast
    assert [(layer.rid, layer.ssrc) for layer in track.layers] == [("q", 0x1000), ("h", 0x2000), ("f", 0x3000)]
    publisher.resend(1, publisher.layers[1].seq)  # an RTX packet names its layer by repaired-rid
    assert track.layers[1].rtx_ssrc == 0x2001
    assert router.counters["unknown_ssrc"] == 0 and router.counters["rtx_recovered"] == 1


def test_padding_probes_on_a_layers_rtx_stream_are_padding_not_malformed() -> None:
    """libwebrtc probes bandwidth with RTX packets of padding alone (no original sequence number): counted as
    such, while an RTX packet whose padding runs past its payload is malformed (caught for every packet
    before the RTX path: ``rtp_malformed``)."""
    router, publisher, _downs, _sid = setup()
    run(router, publisher, 0.5)
    publisher.resend(1, publisher.layers[1].seq)  # the layer's RTX SSRC is known
    probe = RtpPacket(97, 7, 0, 0x2001, b"", padding=224).serialize()  # RTPSender::GeneratePadding
    lying = bytearray(RtpPacket(97, 8, 0, 0x2001, b"\x00\x01", padding=4).serialize())
    lying[-1] = 40  # more padding than the packet has
    for packet in (probe, probe, bytes(lying)):
        publisher.transport.on_rtp(packet)  # type: ignore[operator]
    assert router.counters["rtx_padding_dropped"] == 2 and router.counters["rtp_malformed"] == 1
    assert router.counters["rtx_recovered"] == 1  # nothing forwarded for them


def test_switches_happen_only_at_keyframes_and_the_stream_stays_continuous() -> None:
    router, publisher, downs, sid = setup()
    run(router, publisher, 1.0)
    for target in (0, 1, 2, 0):
        router.set_target_layer("sub0", sid, target)
        run(router, publisher, 1.0)
    got = received(downs[0].rtp)
    changes = switches(got)
    # the first picture comes from the lowest layer's keyframe, then the target's; then one per target
    assert [b.layer for _a, b in changes] == [2, 0, 1, 2, 0]
    assert all(b.keyframe_begin for _a, b in changes)
    assert_one_stream(got)
    assert consumer_of(router).switches == 5
    pictures = [r.frame for r in got if r.begin]
    assert sorted(set(pictures)) == list(range(5 * 30))  # every captured frame was shown ...
    # ... and twice only where an upswitch's keyframe came after the old layer's picture of that instant
    assert len(pictures) - len(set(pictures)) == sum(1 for a, b in changes if b.layer > a.layer)


def test_old_layer_keeps_flowing_until_the_keyframe_and_requests_repeat_with_back_off() -> None:
    router, publisher, downs, sid = setup(keyframe_delay=2.0)  # an encoder slow to honour PLIs
    publisher.layers[2].keyframe_at = None
    for layer in publisher.layers:
        layer.keyframe_at = 0.0 if layer.rid == "q" else None
    run(router, publisher, 1.0)
    assert consumer_of(router).current == 0  # on q; f's keyframe was asked for and is 2 s away
    publisher.handle_rtcp()
    asked_at = publisher.now
    plis_before = len(publisher.transport.plis())
    run(router, publisher, 3.0)
    got = received(downs[0].rtp)
    changes = switches(got)
    assert len(changes) == 1 and changes[0][1].layer == 2 and changes[0][1].keyframe_begin
    switch_frame = changes[0][1].frame
    assert switch_frame / 30 >= 2.0  # the keyframe came late ...
    frames = sorted({r.frame for r in got if r.begin})
    assert frames == list(range(frames[0], frames[-1] + 1))  # ... and no frame was missing meanwhile
    f_plis = [s for s in publisher.transport.plis()[plis_before:] if s == 0x3000]
    assert 1 <= len(f_plis) <= 3  # re-asked after 0.5 s, then 1 s: bounded back-off, not per packet
    assert asked_at < 1.1
    assert_one_stream(got)
    assert sid


def test_dropping_temporal_layers_halves_the_frame_rate_and_keeps_picture_ids_continuous() -> None:
    router, publisher, downs, sid = setup()
    run(router, publisher, 1.0)
    marks = [len(downs[0].rtp)]
    for temporal in (1, 0, 2):
        router.set_target_layer("sub0", sid, 2, temporal)
        run(router, publisher, 2.0)
        marks.append(len(downs[0].rtp))
    got = received(downs[0].rtp)
    windows = [received(downs[0].rtp[a:b]) for a, b in itertools.pairwise(marks)]
    rates = [len({r.frame for r in w if r.begin}) / 2.0 for w in windows]
    assert rates[0] == 15.0 and rates[1] == 7.5  # TL0+TL1 at 15 fps, TL0 alone at 7.5 fps
    assert 28.0 <= rates[2] <= 30.0  # back to 30 fps once the TL1 and TL2 layer sync frames came
    tids = [{source_tid(r) for r in w if r.begin} for w in windows]
    assert max(tids[0]) == 1 and max(tids[1]) == 0 and max(tids[2]) == 2
    assert {r.tid for r in got} == {0}  # shown as one temporal layer, whatever the SFU forwards of them
    assert switches(got)[-1][1].frame == 0  # no spatial switch: the frame rate went first
    assert_one_stream(got)
    assert consumer_of(router).temporal_dropped > 0


def test_a_higher_temporal_layer_starts_only_at_a_layer_sync_frame() -> None:
    router, publisher, downs, sid = setup()
    router.set_target_layer("sub0", sid, 2, 0)
    run(router, publisher, 1.0)
    start = len(downs[0].rtp)
    router.set_target_layer("sub0", sid, 2, 2)
    run(router, publisher, 1.0)
    added = [r for r in received(downs[0].rtp[start:]) if r.begin and source_tid(r) > 0]
    first_tl1 = next(r for r in added if source_tid(r) == 1)
    first_tl2 = next(r for r in added if source_tid(r) == 2)
    assert first_tl1.frame % 4 == 2  # TL1 frames with the Y bit are the ones right after TL0
    assert first_tl2.frame % 4 == 1 and first_tl2.frame > first_tl1.frame  # one TID at a time
    assert_one_stream(received(downs[0].rtp))


def test_pli_throttle_holds_while_many_subscribers_switch() -> None:
    router, publisher, downs, sid = setup(subscribers=20)
    run(router, publisher, 1.0)
    before = len(publisher.transport.plis())
    for step in range(40):  # every 100 ms for 4 s, each subscriber gets a new target and sends a PLI
        for i in range(20):
            router.set_target_layer(f"sub{i}", sid, (step + i) % 3)
        for down in downs[:5]:
            consumer = consumer_of(router, f"sub{downs.index(down)}")
            router._on_subscriber_rtcp(router.participants[f"sub{downs.index(down)}"], _pli(consumer.ssrc))
        run(router, publisher, 0.1)
    plis = publisher.transport.plis()[before:]
    for ssrc in (0x1000, 0x2000, 0x3000):
        assert plis.count(ssrc) <= 4 / 0.5 + 1, (hex(ssrc), plis.count(ssrc))  # one per 500 ms per layer
    assert router.counters["pli_throttled"] > 100
    assert sum(consumer_of(router, f"sub{i}").switches for i in range(20)) > 100  # they did switch


def _pli(ssrc: int) -> bytes:
    from roomcast.wire.rtcp import Pli

    return Pli(9, ssrc).serialize()


def test_a_budget_jittering_around_a_threshold_does_not_flap() -> None:
    router, publisher, _downs, sid = setup()
    run(router, publisher, 2.5)  # two full windows: every layer's bitrate is measured
    rates = router.tracks()[0].layer_bitrates()
    assert all(r[-1] > 0 for r in rates) and rates[0][-1] < rates[1][-1] < rates[2][-1]
    threshold = rates[2][-1]  # the full layer at every TID
    targets = []
    for step in range(100):  # 10 s of a budget 5 % either side of it, changing every 100 ms
        budget = threshold * (1.05 if step % 2 else 0.95)
        targets.append(router.set_bitrate_budget("sub0", sid, budget))
        run(router, publisher, 0.1)
    changes = sum(1 for a, b in itertools.pairwise(targets) if a != b)
    assert changes <= 1, targets  # down once, then held: up needs 15 % headroom for 2 s
    assert consumer_of(router).switches <= 1


def test_a_shrinking_budget_lowers_the_frame_rate_before_the_resolution() -> None:
    router, publisher, _downs, sid = setup()
    run(router, publisher, 2.5)
    rates = router.tracks()[0].layer_bitrates()
    budgets = (rates[2][2] * 0.99, rates[2][1] * 0.99, rates[2][0] * 0.99, rates[1][1] * 0.99)
    steps = [router.set_bitrate_budget("sub0", sid, budget) for budget in budgets]
    assert steps[0] == (2, 1)  # the full layer's frame rate goes first: 15 fps
    assert steps[1][0] < 2 and steps[3] <= steps[2] <= steps[1]  # then the resolution, not 7.5 fps of it
    for budget, (s, t) in zip(budgets, steps, strict=True):  # each time the best option that fits
        fitting = [
            (i, j)
            for i, layer in enumerate(rates)
            for j, rate in enumerate(layer)
            if rate <= budget and (i == 0 or j >= len(layer) - 2)  # half the frame rate at most, but lowest
        ]
        assert (s, t) == max(fitting) and rates[s][t] <= budget
    # and up again only after the hold time, with headroom
    assert router.set_bitrate_budget("sub0", sid, rates[2][2] * 2) == steps[3]
    run(router, publisher, 1.9)
    assert router.set_bitrate_budget("sub0", sid, rates[2][2] * 2) == steps[3]
    run(router, publisher, 0.2)
    assert router.set_bitrate_budget("sub0", sid, rates[2][2] * 2) == (2, 2)


def test_late_and_repaired_packets_take_the_slots_kept_for_them() -> None:
    router, publisher, downs, sid = setup()
    router.set_target_layer("sub0", sid, 2, 1)  # TL2 frames are dropped
    run(router, publisher, 1.0)
    f = publisher.layers[2].seq  # frames 30 (TID 1), 31 (TID 2), 32 (0), 33 (2), 34 (1): 4 packets each
    lost_tl1, lost_tl2 = (f + 2) & 0xFFFF, (f + 6) & 0xFFFF
    whole_frame_34 = [(f + k) & 0xFFFF for k in range(17, 21)]
    publisher.drop = {(2, s) for s in (lost_tl1, lost_tl2, *whole_frame_34)}
    run(router, publisher, 0.3)
    start = len(downs[0].rtp)
    for seq in (lost_tl1, lost_tl2, *whole_frame_34):
        publisher.resend(2, seq)  # RTX repairs arrive late
    late = received(downs[0].rtp[start:])
    assert [(r.layer, r.frame) for r in late] == [(2, 30), (-1, -1), (2, 34), (2, 34), (2, 34), (2, 34)]
    # in its slot; padding in the slot of a dropped frame's packet; a frame never seen where it belonged
    got = sorted(received(downs[0].rtp), key=lambda r: r.seq)
    assert [r.seq for r in got] == list(range(got[0].seq, got[0].seq + len(got)))  # no hole anywhere
    assert_one_stream(got)
    assert [r.frame for r in got if r.begin][-6:] == [28, 30, 32, 34, 36, 38]
    assert consumer_of(router).late_dropped == 0
    publisher.resend(2, lost_tl1)  # a second repair of the same packet is a duplicate: dropped
    assert consumer_of(router).late_dropped == 1


def test_a_retransmission_carries_the_rewritten_picture_id() -> None:
    router, publisher, downs, sid = setup()
    run(router, publisher, 1.0)
    router.set_target_layer("sub0", sid, 1)
    run(router, publisher, 0.5)
    sent = received(downs[0].rtp)
    target = next(r for r in reversed(sent) if r.begin and r.layer == 1)
    router._on_subscriber_rtcp(router.participants["sub0"], GenericNack(9, SUB_SSRC, (target.seq,)).serialize())
    rtx = RtpPacket.parse(downs[0].rtp[-1])
    assert rtx.ssrc == SUB_SSRC + 1111 and rtx.payload[:2] == target.seq.to_bytes(2, "big")
    original = RtpPacket(rtx.payload_type - 1, target.seq, rtx.timestamp, SUB_SSRC, rtx.payload[2:]).serialize()
    (again,) = received([original])
    assert (again.picture_id, again.tl0, again.frame) == (target.picture_id, target.tl0, target.frame)


def test_sender_reports_map_the_timestamp_of_the_new_layer() -> None:
    router, publisher, downs, sid = setup()
    run(router, publisher, 0.5)
    for index in range(3):
        publisher.sender_report(index)  # each layer's RTP timeline against the same NTP clock
    run(router, publisher, 0.5)
    router.set_target_layer("sub0", sid, 0)
    run(router, publisher, 1.0)
    got = received(downs[0].rtp)
    (_, (before, after)) = switches(got)
    assert before.layer == 2 and after.layer == 0
    last_f = max((r for r in got if r.layer == 2), key=lambda r: r.frame)
    assert (after.ts - last_f.ts) & 0xFFFFFFFF == 3000 * (after.frame - last_f.frame)  # exact, not guessed


def test_h264_simulcast_switches_at_idr_pictures() -> None:
    router, publisher, downs, sid = setup(codec="h264")
    run(router, publisher, 1.0)
    router.set_target_layer("sub0", sid, 1)
    run(router, publisher, 1.0)
    got = received(downs[0].rtp, codec="h264")
    changes = switches(got)
    assert [b.layer for _a, b in changes] == [2, 1]
    assert all(b.keyframe_begin for _a, b in changes)
    assert all((b.seq - a.seq) & 0xFFFF == 1 for a, b in itertools.pairwise(got))
    assert consumer_of(router).stats()["spatial"] == 1


def test_a_layer_that_stops_is_left_for_one_that_arrives_and_taken_back_when_it_returns() -> None:
    router, publisher, downs, sid = setup()
    run(router, publisher, 1.0)
    publisher.layers[2].sending = False  # the publisher's uplink got short: it stops its full layer
    run(router, publisher, 2.0)
    assert consumer_of(router).current == 1
    publisher.layers[2].sending = True
    run(router, publisher, 1.5)
    assert consumer_of(router).current == 2
    got = received(downs[0].rtp)
    assert [b.layer for _a, b in switches(got)] == [2, 1, 2]
    assert_one_stream(got)
    assert sid


def test_stats_show_layers_switches_and_keyframe_requests() -> None:
    router, publisher, _downs, sid = setup()
    run(router, publisher, 2.5)
    router.set_target_layer("sub0", sid, 0, 1)
    run(router, publisher, 0.5)
    stats = router.stats()
    track = stats["tracks"][0]  # type: ignore[index]
    assert track["simulcast"] and [layer["rid"] for layer in track["layers"]] == ["q", "h", "f"]
    assert all(layer["bitrate"] > 0 and len(layer["temporal_bitrates"]) == 3 for layer in track["layers"])
    (entry,) = stats["participants"]["viewer0"]["consumers"]  # type: ignore[index]
    assert entry["track"] == sid and entry["spatial"] == 0 and entry["temporal"] == 1
    assert entry["switches"] == 2 and entry["keyframe_requests"] == 2


def test_leaving_unregisters_every_consumer_from_every_layer() -> None:
    router, publisher, _downs, _sid = setup(subscribers=3)
    run(router, publisher, 0.5)
    layers = router.tracks()[0].layers
    assert any(layer.layer_consumers for layer in layers)
    for i in range(3):
        router.remove_participant(f"sub{i}")
    assert all(not layer.layer_consumers for layer in layers)
    assert not router.tracks()[0].consumers
    router.remove_participant("pub")
    assert not router.producers and not router.participants


def test_sequence_jumps_keep_a_bounded_memory_of_gaps() -> None:
    """A publisher jumping its sequence numbers costs one gap entry per jump and at most 16 of them."""
    router, publisher, downs, _sid = setup()
    run(router, publisher, 0.5)
    f = publisher.layers[2]
    first_gap = (f.seq + 1) & 0xFFFF
    for _ in range(20):  # each frame of f skips 500 sequence numbers (a gap is remembered until 16 newer ones)
        f.seq = (f.seq + 500) & 0xFFFF
        run(router, publisher, 1 / 30)
    consumer = consumer_of(router)
    assert sum(1 for size in consumer.gap_size if size) == 16  # the oldest gaps were forgotten ...
    sent = len(downs[0].rtp)
    template = publisher.sent[(f.ssrc, (f.seq - 3) & 0xFFFF)]
    publisher.sent[(f.ssrc, first_gap)] = template[:2] + first_gap.to_bytes(2, "big") + template[4:]
    publisher.resend(2, first_gap)  # a packet the first gap missed, repaired much later
    assert len(downs[0].rtp) == sent and consumer.late_dropped == 1  # ... so a packet from one is dropped


def test_a_publisher_leaving_first_leaves_its_subscribers_consumers_holding_nothing() -> None:
    router, publisher, _downs, sid = setup(subscribers=2)
    run(router, publisher, 0.5)
    consumer = consumer_of(router)
    router.remove_participant("pub")
    assert consumer.layers == ()
    router.tick(10.0)  # its subscribers' consumers are still listed until they renegotiate: no crash
    router._on_subscriber_rtcp(router.participants["sub0"], _pli(SUB_SSRC))
    assert not router.set_target_layer("sub0", sid, 0)
    assert router.set_bitrate_budget("sub0", sid, 1e6) is None
