"""SDP (RFC 8866) as WebRTC uses it: unified plan, BUNDLE, ICE and DTLS attributes (RFC 8829 §5).

A description keeps its lines in order (so unknown attributes survive a round trip) and decodes, when
it is built, what an SFU needs: BUNDLE groups (RFC 8843), ICE (RFC 8839) and DTLS (RFC 8122, 8842)
attributes, and per section codecs, extmap (RFC 8285), ssrc/ssrc-group (RFC 5576), rid/simulcast
(RFC 8851, 8853), sctp-port/max-message-size (RFC 8841); see :mod:`roomcast.wire.sdp_media`.

Offers come from the network, so :func:`parse` refuses anything over 64 KiB, 10,000 lines or 64 media
sections before doing real work, and raises only :class:`~roomcast.wire.ParseError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from roomcast.wire import ParseError
from roomcast.wire.sdp_media import (
    DIRECTIONS,
    Attribute,
    Candidate,
    Codec,
    Extmap,
    Fingerprint,
    MediaDescription,
    Rid,
    Simulcast,
    SsrcGroup,
    parse_fingerprint,
    to_int,
)

MAX_SDP_BYTES = 64 * 1024
MAX_LINES = 10_000
MAX_MEDIA = 64

# Where a line type sits in a session (RFC 8866 §5): before c=, after t=, just before the a= lines.
_SESSION_EARLY = "iuep"
_SESSION_AFTER_TIMING = "trz"
_SESSION_KEY = "k"
_MEDIA_EXTRA = "ik"


class Group(NamedTuple):
    """``a=group`` (RFC 5888 §5), e.g. ``BUNDLE 0 1 2`` (RFC 8843 §7)."""

    semantics: str
    mids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole description; fields after ``extra`` are decoded from the given ones (not compared)."""

    origin: str = "- 0 0 IN IP4 0.0.0.0"
    name: str = "-"
    timing: str = "0 0"
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = field(default_factory=tuple)
    connection: str | None = None
    bandwidths: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()  # other lines (i=, u=, e=, p=, extra t=, r=, z=, k=)

    groups: tuple[Group, ...] = field(init=False, repr=False, compare=False)
    ice_ufrag: str | None = field(init=False, repr=False, compare=False)
    ice_pwd: str | None = field(init=False, repr=False, compare=False)
    ice_lite: bool = field(init=False, repr=False, compare=False)
    ice_options: tuple[str, ...] = field(init=False, repr=False, compare=False)
    setup: str | None = field(init=False, repr=False, compare=False)
    extmap_allow_mixed: bool = field(init=False, repr=False, compare=False)
    _fingerprints: tuple[Fingerprint, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.media) > MAX_MEDIA:
            raise ParseError(f"more than {MAX_MEDIA} media sections")
        first: dict[str, str | None] = {}
        groups: list[Group] = []
        fingerprints: list[Fingerprint] = []
        for name, value in self.attributes:
            first.setdefault(name, value)
            if name == "group":
                semantics, *mids = (value or "").split() or [""]
                if not semantics:
                    raise ParseError("a=group needs semantics")
                groups.append(Group(semantics, tuple(mids)))
            elif name == "fingerprint":
                fingerprints.append(parse_fingerprint(value or ""))
        decoded: dict[str, object] = {
            "groups": tuple(groups),
            "ice_ufrag": first.get("ice-ufrag"),
            "ice_pwd": first.get("ice-pwd"),
            "ice_lite": "ice-lite" in first,
            "ice_options": tuple((first.get("ice-options") or "").split()),
            "setup": first.get("setup"),
            "extmap_allow_mixed": "extmap-allow-mixed" in first,
            "_fingerprints": tuple(fingerprints),
        }
        for name, decoded_value in decoded.items():
            object.__setattr__(self, name, decoded_value)

    def value(self, name: str) -> str | None:
        for k, v in self.attributes:
            if k == name:
                return v or ""
        return None

    def values(self, name: str) -> list[str]:
        return [v or "" for k, v in self.attributes if k == name]

    def bundle_mids(self) -> list[str]:
        """The first BUNDLE group's mids, the offerer-tagged one first (RFC 8843 §7.2)."""
        for group in self.groups:
            if group.semantics == "BUNDLE":
                return list(group.mids)
        return []

    @property
    def fingerprints(self) -> list[tuple[str, str]]:
        return list(self._fingerprints)

    @classmethod
    def parse(cls, text: str) -> SessionDescription:
        return parse(text)

    def serialize(self) -> str:
        """Lines in RFC 8866 §5 order, CRLF-terminated."""
        lines = ["v=0", f"o={self.origin}", f"s={self.name}"]
        lines += [f"{t}={v}" for t, v in self.extra if t in _SESSION_EARLY]
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines += [f"b={b}" for b in self.bandwidths]
        lines.append(f"t={self.timing}")
        lines += [f"{t}={v}" for t, v in self.extra if t in _SESSION_AFTER_TIMING]
        lines += [f"{t}={v}" for t, v in self.extra if t in _SESSION_KEY]
        lines += [_attr_line(a) for a in self.attributes]
        for m in self.media:
            lines.append(f"m={m.kind} {m.port} {m.proto} {' '.join(m.fmts)}".rstrip())
            lines += [f"{t}={v}" for t, v in m.extra if t == "i"]
            if m.connection is not None:
                lines.append(f"c={m.connection}")
            lines += [f"b={b}" for b in m.bandwidths]
            lines += [f"{t}={v}" for t, v in m.extra if t == "k"]
            lines += [_attr_line(a) for a in m.attributes]
        return "\r\n".join(lines) + "\r\n"


@dataclass
class _MediaBuilder:
    kind: str
    port: int
    proto: str
    fmts: tuple[str, ...]
    connection: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    bandwidths: list[str] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    def build(self) -> MediaDescription:
        extra = sorted(self.extra, key=lambda e: _MEDIA_EXTRA.index(e[0]))
        return MediaDescription(
            self.kind,
            self.port,
            self.proto,
            self.fmts,
            self.connection,
            tuple(self.attributes),
            tuple(self.bandwidths),
            tuple(extra),
        )


def parse(text: str) -> SessionDescription:
    """Parse an SDP body (CRLF or LF line ends), RFC 8866 §5; raises only :class:`ParseError`."""
    if not isinstance(text, str):
        raise ParseError("SDP must be text")
    if len(text) > MAX_SDP_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_SDP_BYTES:
        raise ParseError(f"SDP larger than {MAX_SDP_BYTES} bytes")
    lines = text.split("\n")
    if lines and not lines[-1].strip("\r"):
        lines.pop()
    if len(lines) > MAX_LINES:
        raise ParseError(f"SDP has more than {MAX_LINES} lines")
    session: dict[str, str] = {}
    session_attrs: list[Attribute] = []
    session_bandwidths: list[str] = []
    session_extra: list[tuple[str, str]] = []
    media: list[_MediaBuilder] = []
    for raw in lines:
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise ParseError(f"malformed SDP line {line[:40]!r}")
        if "\r" in line or "\0" in line:
            raise ParseError("SDP line contains CR or NUL")
        kind, value = line[0], line[2:]
        if not session:
            if line != "v=0":
                raise ParseError("SDP must start with v=0")
            session["v"] = "0"
            continue
        if kind == "m":
            if len(media) >= MAX_MEDIA:
                raise ParseError(f"more than {MAX_MEDIA} media sections")
            media.append(_media_line(value))
        elif kind == "a":
            name, sep, attr_value = value.partition(":")
            if not name or " " in name:
                raise ParseError(f"malformed attribute line {line[:40]!r}")
            (media[-1].attributes if media else session_attrs).append((name, attr_value if sep else None))
        elif media:
            if kind == "c":
                media[-1].connection = value
            elif kind == "b":
                media[-1].bandwidths.append(value)
            elif kind in _MEDIA_EXTRA:
                media[-1].extra.append((kind, value))
            else:
                raise ParseError(f"{kind}= line not allowed in a media section")
        elif kind in "ost" and kind not in session:
            session[kind] = value
        elif kind == "c":
            session["c"] = value
        elif kind == "b":
            session_bandwidths.append(value)
        elif kind in _SESSION_EARLY + _SESSION_AFTER_TIMING + _SESSION_KEY:
            session_extra.append((kind, value))
        else:
            raise ParseError(f"unexpected {kind}= line")
    if not session:
        raise ParseError("SDP must start with v=0")
    order = _SESSION_EARLY + _SESSION_AFTER_TIMING + _SESSION_KEY
    return SessionDescription(
        origin=session.get("o", "- 0 0 IN IP4 0.0.0.0"),
        name=session.get("s", "-"),
        timing=session.get("t", "0 0"),
        attributes=tuple(session_attrs),
        media=tuple(m.build() for m in media),
        connection=session.get("c"),
        bandwidths=tuple(session_bandwidths),
        extra=tuple(sorted(session_extra, key=lambda e: order.index(e[0]))),
    )


def _media_line(value: str) -> _MediaBuilder:
    """``m=<media> <port>[/<number>] <proto> <fmt> ...`` (RFC 8866 §5.14)."""
    parts = value.split(" ")
    if len(parts) < 3 or not all(parts[:3]):
        raise ParseError(f"malformed m= line {value[:60]!r}")
    port = to_int(parts[1].split("/")[0], "m= port", 0, 65535)
    return _MediaBuilder(parts[0], port, parts[2], tuple(p for p in parts[3:] if p))


def _attr_line(attr: Attribute) -> str:
    name, value = attr
    return f"a={name}" if value is None else f"a={name}:{value}"


__all__ = [
    "DIRECTIONS",
    "MAX_LINES",
    "MAX_MEDIA",
    "MAX_SDP_BYTES",
    "Attribute",
    "Candidate",
    "Codec",
    "Extmap",
    "Fingerprint",
    "Group",
    "MediaDescription",
    "Rid",
    "SessionDescription",
    "Simulcast",
    "SsrcGroup",
    "parse",
]
