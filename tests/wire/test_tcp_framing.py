"""RFC 4571 framing: frames survive any split of the stream; bad lengths break the stream, and only it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomcast.wire import ParseError
from roomcast.wire.tcp_framing import MAX_FRAME, FrameDecoder, FramingError, encode_frame

datagrams = st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=20)


def test_encode_prefixes_the_length_in_network_order() -> None:
    assert encode_frame(b"abc") == b"\x00\x03abc"
    assert encode_frame(b"x" * 258)[:2] == b"\x01\x02"
    with pytest.raises(FramingError):
        encode_frame(b"")
    with pytest.raises(FramingError):
        encode_frame(b"x" * (MAX_FRAME + 1))


def test_frames_split_across_reads_come_out_whole_and_in_order() -> None:
    stream = encode_frame(b"first") + encode_frame(b"second") + encode_frame(b"\x00\x01")
    decoder = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(stream)):  # one byte per read: the worst split there is
        out += decoder.feed(stream[i : i + 1])
    assert out == [b"first", b"second", b"\x00\x01"]
    assert decoder.buffered == 0
    assert decoder.frames_in == 3


@given(datagrams, st.lists(st.integers(0, 4000), max_size=30))
def test_any_split_gives_back_the_same_datagrams(sent: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(d) for d in sent)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    decoder = FrameDecoder(max_frame=300)
    got: list[bytes] = []
    for start, end in itertools.pairwise(points):
        got += decoder.feed(stream[start:end])
    assert got == sent


def test_an_oversized_length_is_refused_before_its_body_arrives() -> None:
    decoder = FrameDecoder(max_frame=1500)
    assert decoder.feed(encode_frame(b"ok")) == [b"ok"]
    with pytest.raises(FramingError, match="1501"):
        decoder.feed(b"\x05\xdd")  # 1501: only the prefix has arrived
    assert decoder.broken and decoder.buffered == 0
    with pytest.raises(FramingError):  # a broken stream stays broken: the connection must close
        decoder.feed(encode_frame(b"later"))


def test_a_zero_length_frame_breaks_the_stream() -> None:
    with pytest.raises(FramingError):
        FrameDecoder().feed(b"\x00\x00")


def test_framing_errors_are_parse_errors() -> None:
    assert issubclass(FramingError, ParseError)
    with pytest.raises(ValueError):
        FrameDecoder(max_frame=0)


@given(st.binary(max_size=2000), st.integers(1, MAX_FRAME))
def test_garbage_raises_only_framing_errors_and_buffers_at_most_one_frame(data: bytes, limit: int) -> None:
    decoder = FrameDecoder(max_frame=limit)
    try:
        for frame in decoder.feed(data):
            assert 0 < len(frame) <= limit
    except FramingError:
        return
    assert decoder.buffered < 2 + limit
