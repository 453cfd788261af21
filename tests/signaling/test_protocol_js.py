"""web/sdk/protocol.js mirrors the signaling schema (signaling/messages.py): the same protocol version, message
types and fields (wire names). Read from the msgspec structs themselves, so a field added on one side only
fails here instead of surfacing as a field the browser silently drops."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import msgspec

from roomcast.signaling import messages

PROTOCOL_JS = Path(messages.__file__).parents[1] / "web" / "sdk" / "protocol.js"
Schema = dict[str, list[str]]


def _fields(cls: type[msgspec.Struct]) -> list[str]:
    """Wire names in declaration order; ``v`` is on every message (PROTOCOL_VERSION stands for it)."""
    return [f.encode_name for f in msgspec.structs.fields(cls) if f.encode_name != "v"]


def _by_tag(union: object) -> Schema:
    out: Schema = {}
    for cls in typing.get_args(union):
        tag = cls.__struct_config__.tag
        assert isinstance(tag, str) and tag not in out, cls
        out[tag] = _fields(cls)
    return out


def python_schema() -> dict[str, object]:
    structs = {
        name: _fields(cls)
        for name, cls in vars(messages).items()
        if isinstance(cls, type)
        and issubclass(cls, msgspec.Struct)
        and not issubclass(cls, messages.Message)
        and cls.__module__ == messages.__name__
    }
    return {
        "PROTOCOL_VERSION": messages.PROTOCOL_VERSION,
        "CLIENT_MESSAGES": _by_tag(messages.ClientMessage),
        "SERVER_MESSAGES": _by_tag(messages.ServerMessage),
        "STRUCTS": structs,
    }


def js_schema(text: str) -> dict[str, object]:
    """The exported constants of protocol.js: a number, or an object literal written as plain JSON."""
    out: dict[str, object] = {}
    for name, value in re.findall(r"^export const (\w+) = (\d+|\{.*?^\});", text, re.M | re.S):
        out[name] = json.loads(value)
    return out


def differences(py: dict[str, object], js: dict[str, object]) -> list[str]:
    problems = [f"{key}: only in messages.py" for key in py if key not in js]
    problems += [f"{key}: only in protocol.js" for key in js if key not in py]
    for key in py.keys() & js.keys():
        want, got = py[key], js[key]
        if isinstance(want, dict) and isinstance(got, dict):
            for name in want.keys() | got.keys():
                if want.get(name) != got.get(name):
                    problems.append(f"{key}.{name}: messages.py {want.get(name)} != protocol.js {got.get(name)}")
        elif want != got:
            problems.append(f"{key}: messages.py {want!r} != protocol.js {got!r}")
    return sorted(problems)


def test_protocol_js_mirrors_the_schema() -> None:
    js = js_schema(PROTOCOL_JS.read_text())
    assert set(js) == {"PROTOCOL_VERSION", "CLIENT_MESSAGES", "SERVER_MESSAGES", "STRUCTS"}, sorted(js)
    assert differences(python_schema(), js) == []


def test_a_field_missing_on_either_side_is_reported() -> None:
    py = python_schema()
    js = json.loads(json.dumps(py))
    js["CLIENT_MESSAGES"]["join"].remove("resume")
    js["SERVER_MESSAGES"]["shiny"] = []
    js["PROTOCOL_VERSION"] = 2
    assert differences(py, js) == [
        "CLIENT_MESSAGES.join: messages.py ['room', 'metadata', 'resume'] != protocol.js ['room', 'metadata']",
        "PROTOCOL_VERSION: messages.py 1 != protocol.js 2",
        "SERVER_MESSAGES.shiny: messages.py None != protocol.js []",
    ]
