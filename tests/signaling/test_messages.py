import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomcast.signaling import messages as m


def test_join_round_trip() -> None:
    msg = m.decode_client('{"type": "join", "v": 1, "metadata": "x"}')
    assert isinstance(msg, m.Join)
    assert msg.metadata == "x"


def test_relayed_offer_uses_from_on_the_wire() -> None:
    out = json.loads(m.encode(m.RelayedOffer(sdp="v=0", sender="alice")))
    assert out == {"type": "offer", "v": 1, "sdp": "v=0", "from": "alice"}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('{"v": 1}', "invalid_message"),
        ('{"type": "explode", "v": 1}', "unknown_type"),
        ('{"type": 7, "v": 1}', "unknown_type"),
        ('{"type": "offer", "v": 1}', "invalid_message"),
        ('{"type": "offer", "v": 1, "sdp": 5}', "invalid_message"),
        ('{"type": "track_settings", "v": 1, "track_sid": 5}', "invalid_message"),  # every type is known
        ('{"type": "moderate", "v": 1, "identity": "a", "action": "explode"}', "invalid_message"),
        ('{"type": "ping", "v": 2}', "unsupported_version"),
        ('{"type": "data", "v": 1, "payload": "' + "x" * (m.MAX_DATA_PAYLOAD + 1) + '"}', "data_too_large"),
        ("[" * 100 + "]" * 100, "too_deep"),
        ('{"type":"ping","pad":"' + "x" * m.MAX_MESSAGE_BYTES + '"}', "message_too_large"),
    ],
)
def test_bad_input_gets_a_typed_code(raw: str, code: str) -> None:
    with pytest.raises(m.SchemaError) as info:
        m.decode_client(raw)
    assert info.value.code == code


def test_depth_ignores_brackets_inside_strings() -> None:
    assert m.json_depth(b'{"a": "[[[[[[[[[[{{{{{{{{"}') == 1
    assert m.json_depth(b'{"a": [[{"b": "\\"[["}]]}') == 4


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_only_raise_schema_error(data: bytes) -> None:
    with contextlib.suppress(m.SchemaError):
        m.decode_client(data)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    )
)
def test_arbitrary_json_only_raises_schema_error(value: object) -> None:
    with contextlib.suppress(m.SchemaError):
        m.decode_client(json.dumps(value))
