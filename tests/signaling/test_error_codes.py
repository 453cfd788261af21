"""Every error code a client can see is in the one registry (``roomcast.errors.CODES``), and every registered
code is used: the Python server and SDK (read from the source's syntax tree) and the JS SDK (its throws)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import roomcast
from roomcast.errors import CODES, CodedError, http_status
from roomcast.rooms.model import RoomError
from roomcast.rooms.tokens import TokenError
from roomcast.rtc.api import MediaError
from roomcast.sdk import RoomcastError
from roomcast.signaling.messages import SchemaError

SRC = Path(roomcast.__file__).parent
CODE = re.compile(r"^[a-z][a-z_]*[a-z]$")
# calls whose first string argument (or code= keyword) is an error code
CODED_CALLS = {
    "CodedError", "RoomError", "MediaError", "TokenError", "SchemaError", "RoomcastError", "WhipError",
    "_error", "error",
}


def _raised_codes() -> dict[str, set[str]]:
    """code -> files, for every coded call with a literal code in the Python source."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            literals = [a for a in node.args[:2] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if name == "Error":  # the signaling schema's error message: Error(code=..., message=...)
                literals = [k.value for k in node.keywords if k.arg == "code" and isinstance(k.value, ast.Constant)]
            elif name == "_refuse":  # sfu/datachannels: _refuse(participant, code, message, now)
                literals = [a for a in node.args[1:2] if isinstance(a, ast.Constant)] if len(node.args) >= 3 else []
            elif name not in CODED_CALLS:
                continue
            for literal in literals[:1]:
                assert isinstance(literal, ast.Constant)
                if isinstance(literal.value, str) and CODE.match(literal.value):
                    found.setdefault(literal.value, set()).add(str(path.relative_to(SRC)))
    return found


def _js_codes() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (SRC / "web").rglob("*.js"):  # the pages' scripts and the SDK's modules (web/sdk/)
        for code in re.findall(r"RoomcastError\('([a-z_]+)'", path.read_text()):
            found.setdefault(code, set()).add(str(path.relative_to(SRC / "web")))
    return found


def test_every_python_code_is_registered() -> None:
    raised = _raised_codes()
    assert len(raised) >= 40, f"the scan found only {sorted(raised)}: has the error style changed?"
    missing = {code: sorted(files) for code, files in raised.items() if code not in CODES}
    assert not missing, f"error codes raised but not in roomcast/errors.py CODES: {missing}"


def test_every_js_sdk_code_is_registered() -> None:
    thrown = _js_codes()
    assert len(thrown) >= 8, f"the scan found only {sorted(thrown)} in web/**/*.js"
    missing = {code: sorted(files) for code, files in thrown.items() if code not in CODES}
    assert not missing, f"codes thrown by the JS SDK but not in roomcast/errors.py CODES: {missing}"


def test_every_registered_code_is_used() -> None:
    text = "\n".join(p.read_text() for p in [*SRC.rglob("*.py"), *(SRC / "web").rglob("*.js")] if p.name != "errors.py")
    unused = [code for code in CODES if f'"{code}"' not in text and f"'{code}'" not in text]
    assert not unused, f"registered codes nothing raises (remove them or use them): {unused}"


@pytest.mark.parametrize("cls", [RoomError, MediaError, TokenError, SchemaError, RoomcastError])
def test_each_error_class_is_a_coded_error(cls: type[CodedError]) -> None:
    exc = cls("room_not_found", "no such room")
    assert isinstance(exc, CodedError)
    assert (exc.code, exc.message) == ("room_not_found", "no such room")


def test_http_status_comes_from_the_registry() -> None:
    assert http_status("room_not_found") == 404
    assert http_status("body_too_large") == 413
    assert http_status("token_expired") == 401
    assert http_status("no_such_code_anywhere") == 400
    assert all(100 <= status < 600 and meaning for status, meaning in CODES.values())
