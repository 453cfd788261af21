"""``application/trickle-ice-sdpfrag`` bodies (RFC 8840 §9, used by RFC 9725 §4.3): ICE credentials,
candidates and end-of-candidates of one PATCH, and the server's answer fragment to an ICE restart.

Pure text in, a frozen dataclass out; the only error is :class:`SdpFragError` (a ``ValueError``).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_FRAG_LINES = 1000
MAX_LINE = 4096


class SdpFragError(ValueError):
    """A body that is not an SDP fragment (RFC 8840 §9): the PATCH gets 400."""


@dataclass(frozen=True, slots=True)
class SdpFrag:
    """What a client PATCHes: ``ice_ufrag``/``ice_pwd`` (a new pair means an ICE restart, RFC 9725 §4.3.2),
    the candidates it trickles (RFC 9725 §4.3.1) and whether it said ``a=end-of-candidates``."""

    ice_ufrag: str | None
    ice_pwd: str | None
    candidates: tuple[str, ...]
    end_of_candidates: bool
    mids: tuple[str, ...]


def parse_sdpfrag(text: str) -> SdpFrag:
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if len(lines) > MAX_FRAG_LINES:
        raise SdpFragError(f"fragment has more than {MAX_FRAG_LINES} lines")
    ufrag: str | None = None
    pwd: str | None = None
    candidates: list[str] = []
    mids: list[str] = []
    end = False
    for line in lines:
        if len(line) > MAX_LINE or len(line) < 2 or line[1] != "=" or not line.isprintable():
            raise SdpFragError(f"not an SDP line: {line[:64]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            continue
        if kind != "a":
            if kind in "oscbtv":  # a whole description is not a fragment
                raise SdpFragError(f"'{kind}=' lines are not allowed in an SDP fragment")
            continue
        name, _, rest = value.partition(":")
        if name == "ice-ufrag":
            ufrag = rest.strip()
        elif name == "ice-pwd":
            pwd = rest.strip()
        elif name == "candidate":
            candidates.append(rest.strip())
        elif name == "end-of-candidates":
            end = True
        elif name == "mid":
            mids.append(rest.strip())
    if (ufrag is None) != (pwd is None):
        raise SdpFragError("a=ice-ufrag and a=ice-pwd must come together")
    if ufrag is None and not candidates and not end:
        raise SdpFragError("the fragment carries neither ICE credentials nor candidates")
    return SdpFrag(ufrag, pwd, tuple(candidates), end, tuple(mids))


def answer_sdpfrag(ufrag: str, pwd: str, candidates: list[str], mid: str | None) -> str:
    """The 200 body of an ICE restart (RFC 9725 §4.3.2): our new credentials and our candidates."""
    lines = [f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}"]
    if mid is not None:
        lines.append(f"a=mid:{mid}")
    lines += [f"a=candidate:{c}" for c in candidates]
    lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"
