"""SDP media sections and the typed attribute values WebRTC puts in them.

A :class:`MediaDescription` stores its lines as given (so unknown attributes survive a round trip, and
equality is equality of those lines) and decodes every attribute an SFU needs once, at construction:
a malformed known attribute raises :class:`~roomcast.wire.ParseError` there, never later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from roomcast.wire import ParseError

Attribute = tuple[str, str | None]
"""One ``a=`` line: ``(name, value)``; ``value`` is ``None`` for a flag such as ``a=rtcp-mux``."""

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_DIGITS = re.compile(r"[0-9]{1,10}")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 8866 §9 token-char
_FOUNDATION = re.compile(r"[A-Za-z0-9+/]{1,32}")  # RFC 8839 §5.1 1*32ice-char
# RFC 3551 §6: static payload types may come without a=rtpmap.
_STATIC_PT = {0: ("PCMU", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1)}


def to_int(text: str, what: str, low: int = 0, high: int = 0xFFFFFFFF) -> int:
    """ASCII decimal in ``[low, high]``; bounded length keeps ``int()`` cheap and exception-free."""
    if not _DIGITS.fullmatch(text):
        raise ParseError(f"bad {what}: {text[:40]!r}")
    value = int(text)
    if not low <= value <= high:
        raise ParseError(f"{what} {value} out of range")
    return value


class Fingerprint(NamedTuple):
    """``a=fingerprint`` (RFC 8122 §5): hash name in lower case, hex digest in upper case."""

    algorithm: str
    value: str


class SsrcGroup(NamedTuple):
    """``a=ssrc-group`` (RFC 5576 §4.2), e.g. ``FID`` (RFC 4588 §8) or ``SIM``."""

    semantics: str
    ssrcs: tuple[int, ...]


class Rid(NamedTuple):
    """``a=rid`` (RFC 8851 §10): an RTP stream id, its direction and restrictions (``pt=``, ``max-width=``)."""

    id: str
    direction: str
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Extmap:
    """``a=extmap`` (RFC 8285 §8): header extension ``id`` → ``uri``, optionally with a direction."""

    id: int
    uri: str
    direction: str | None = None
    attributes: str = ""


@dataclass(frozen=True, slots=True)
class Simulcast:
    """``a=simulcast`` (RFC 8853 §5.1): streams per direction, each a list of alternative rids.

    A rid keeps its ``~`` prefix when it starts paused.
    """

    send: tuple[tuple[str, ...], ...] = ()
    recv: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class Candidate:
    """``a=candidate`` (RFC 8839 §5.1); ``address`` may be an IP or an mDNS ``.local`` name."""

    foundation: str
    component: int
    transport: str
    priority: int
    address: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    extensions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, value: str) -> Candidate:
        parts = value.split()
        if len(parts) < 8 or parts[6] != "typ" or not _FOUNDATION.fullmatch(parts[0]):
            raise ParseError(f"bad a=candidate:{value[:60]}")
        rest = parts[8:]
        related_address: str | None = None
        related_port: int | None = None
        if rest[:1] == ["raddr"] and len(rest) >= 2:
            related_address, rest = rest[1], rest[2:]
        if rest[:1] == ["rport"] and len(rest) >= 2:
            related_port, rest = to_int(rest[1], "candidate rport", 0, 65535), rest[2:]
        if len(rest) % 2:
            raise ParseError(f"a=candidate extension without a value: {value[:60]}")
        return cls(
            foundation=parts[0],
            component=to_int(parts[1], "candidate component", 1, 256),
            transport=parts[2].lower(),
            priority=to_int(parts[3], "candidate priority"),
            address=parts[4],
            port=to_int(parts[5], "candidate port", 0, 65535),
            type=parts[7],
            related_address=related_address,
            related_port=related_port,
            extensions=tuple(zip(rest[::2], rest[1::2], strict=True)),
        )

    def serialize(self) -> str:
        """The attribute value (without ``a=candidate:``)."""
        out = [self.foundation, str(self.component), self.transport, str(self.priority)]
        out += [self.address, str(self.port), "typ", self.type]
        if self.related_address is not None:
            out += ["raddr", self.related_address]
        if self.related_port is not None:
            out += ["rport", str(self.related_port)]
        for name, value in self.extensions:
            out += [name, value]
        return " ".join(out)


@dataclass(frozen=True, slots=True)
class Codec:
    """One payload type: ``a=rtpmap`` + ``a=fmtp`` + ``a=rtcp-fb`` (RFC 8866 §6.6, RFC 4585 §4.2)."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int | None = None
    fmtp: str | None = None
    rtcp_fb: tuple[str, ...] = ()

    @property
    def mime(self) -> str:
        return self.name.lower()

    def fmtp_params(self) -> dict[str, str]:
        """``a=fmtp`` as ``key → value`` (keys lower-cased; a bare key maps to ``""``)."""
        params: dict[str, str] = {}
        for item in (self.fmtp or "").split(";"):
            key, sep, value = item.strip().partition("=")
            if key:
                params[key.lower()] = value.strip() if sep else ""
        return params

    @property
    def params(self) -> dict[str, str]:
        return self.fmtp_params()


def parse_fingerprint(value: str) -> Fingerprint:
    algorithm, _, digest = value.strip().partition(" ")
    if not algorithm or not digest.strip():
        raise ParseError("a=fingerprint needs an algorithm and a value")
    return Fingerprint(algorithm.lower(), digest.strip().upper())


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section (RFC 8866 §5.14) with its ``c=``, ``b=`` and ``a=`` lines.

    Only ``kind … extra`` are given; every other field is decoded from ``attributes`` and excluded
    from equality (two sections are equal when their lines are).
    """

    kind: str
    port: int
    proto: str
    fmts: tuple[str, ...]
    connection: str | None = None
    attributes: tuple[Attribute, ...] = ()
    bandwidths: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()  # other lines (i=, k=) as (type, value)

    mid: str | None = field(init=False, repr=False, compare=False)
    direction: str = field(init=False, repr=False, compare=False)
    ice_ufrag: str | None = field(init=False, repr=False, compare=False)
    ice_pwd: str | None = field(init=False, repr=False, compare=False)
    ice_options: tuple[str, ...] = field(init=False, repr=False, compare=False)
    setup: str | None = field(init=False, repr=False, compare=False)
    rtcp_mux: bool = field(init=False, repr=False, compare=False)
    rtcp_rsize: bool = field(init=False, repr=False, compare=False)
    end_of_candidates: bool = field(init=False, repr=False, compare=False)
    ice_candidates: tuple[Candidate, ...] = field(init=False, repr=False, compare=False)
    header_extensions: tuple[Extmap, ...] = field(init=False, repr=False, compare=False)
    msid: str | None = field(init=False, repr=False, compare=False)
    rid_list: tuple[Rid, ...] = field(init=False, repr=False, compare=False)
    simulcast: Simulcast | None = field(init=False, repr=False, compare=False)
    sctp_port: int | None = field(init=False, repr=False, compare=False)
    max_message_size: int | None = field(init=False, repr=False, compare=False)
    _fingerprints: tuple[Fingerprint, ...] = field(init=False, repr=False, compare=False)
    _codecs: tuple[Codec, ...] = field(init=False, repr=False, compare=False)
    _ssrcs: tuple[tuple[int, tuple[tuple[str, str], ...]], ...] = field(init=False, repr=False, compare=False)
    _ssrc_groups: tuple[SsrcGroup, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ParseError(f"m= port {self.port} out of range")
        first: dict[str, str | None] = {}
        direction = "sendrecv"
        fingerprints: list[Fingerprint] = []
        candidates: list[Candidate] = []
        extmaps: list[Extmap] = []
        rids: list[Rid] = []
        ssrcs: dict[int, list[tuple[str, str]]] = {}
        groups: list[SsrcGroup] = []
        for name, value in self.attributes:
            first.setdefault(name, value)
            text = value or ""
            if name in DIRECTIONS:
                direction = name
            elif name == "fingerprint":
                fingerprints.append(parse_fingerprint(text))
            elif name == "candidate":
                candidates.append(Candidate.parse(text))
            elif name == "extmap":
                extmaps.append(_parse_extmap(text))
            elif name == "rid":
                rids.append(_parse_rid(text))
            elif name == "ssrc":
                ssrc_text, _, attr = text.partition(" ")
                attr_name, _, attr_value = attr.partition(":")
                entry = ssrcs.setdefault(to_int(ssrc_text, "a=ssrc"), [])
                if attr_name:
                    entry.append((attr_name, attr_value))
            elif name == "ssrc-group":
                semantics, *members = text.split() or [""]
                if not semantics:
                    raise ParseError("a=ssrc-group needs semantics")
                groups.append(SsrcGroup(semantics, tuple(to_int(s, "a=ssrc-group ssrc") for s in members)))
        decoded: dict[str, object] = {
            "mid": first.get("mid"),
            "direction": direction,
            "ice_ufrag": first.get("ice-ufrag"),
            "ice_pwd": first.get("ice-pwd"),
            "ice_options": tuple((first.get("ice-options") or "").split()),
            "setup": first.get("setup"),
            "rtcp_mux": "rtcp-mux" in first,
            "rtcp_rsize": "rtcp-rsize" in first,
            "end_of_candidates": "end-of-candidates" in first,
            "ice_candidates": tuple(candidates),
            "header_extensions": tuple(extmaps),
            "msid": first.get("msid"),
            "rid_list": tuple(rids),
            "simulcast": _parse_simulcast(first["simulcast"] or "") if "simulcast" in first else None,
            "sctp_port": _optional_int(first, "sctp-port", 65535),
            "max_message_size": _optional_int(first, "max-message-size", 2**64 - 1),
            "_fingerprints": tuple(fingerprints),
            "_codecs": _parse_codecs(self.fmts, self.attributes),
            "_ssrcs": tuple((ssrc, tuple(attrs)) for ssrc, attrs in ssrcs.items()),
            "_ssrc_groups": tuple(groups),
        }
        for key, decoded_value in decoded.items():
            object.__setattr__(self, key, decoded_value)

    # -------------------------------------------------------------- generic access

    def values(self, name: str) -> list[str]:
        return [v or "" for k, v in self.attributes if k == name]

    def value(self, name: str) -> str | None:
        for k, v in self.attributes:
            if k == name:
                return v or ""
        return None

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.attributes)

    # -------------------------------------------------------------- typed access

    @property
    def fingerprints(self) -> list[tuple[str, str]]:
        return list(self._fingerprints)

    @property
    def candidates(self) -> list[str]:
        """Raw ``a=candidate`` values; :attr:`ice_candidates` has them parsed."""
        return self.values("candidate")

    def codecs(self) -> list[Codec]:
        """Codecs in the order of the m= line's payload types (preference order, RFC 8866 §5.14)."""
        return list(self._codecs)

    def extmaps(self) -> list[tuple[int, str]]:
        """``(id, uri)`` pairs; :attr:`header_extensions` also has directions."""
        return [(e.id, e.uri) for e in self.header_extensions]

    def ssrcs(self) -> dict[int, dict[str, str]]:
        """SSRC → its source attributes (``cname``, ``msid``, …), RFC 5576 §4.1."""
        return {ssrc: dict(attrs) for ssrc, attrs in self._ssrcs}

    def ssrc_groups(self) -> list[SsrcGroup]:
        return list(self._ssrc_groups)

    def rids(self) -> list[Rid]:
        return list(self.rid_list)


def _optional_int(first: dict[str, str | None], name: str, high: int) -> int | None:
    if name not in first:
        return None
    text = first[name] or ""
    if len(text) > 20 or not text.isascii() or not text.isdigit():
        raise ParseError(f"bad a={name}:{text[:40]}")
    value = int(text)
    if value > high:
        raise ParseError(f"a={name} out of range")
    return value


def _parse_codecs(fmts: tuple[str, ...], attributes: tuple[Attribute, ...]) -> tuple[Codec, ...]:
    rtpmap: dict[int, tuple[str, int, int | None]] = dict(_STATIC_PT)
    fmtp: dict[int, str] = {}
    feedback: dict[int, list[str]] = {}
    wildcard: list[str] = []
    for name, value in attributes:
        text = value or ""
        if name == "rtpmap":
            pt_text, _, encoding = text.partition(" ")
            parts = encoding.strip().split("/")
            if len(parts) not in (2, 3) or not parts[0]:
                raise ParseError(f"bad a=rtpmap:{text[:60]}")
            channels = to_int(parts[2], "rtpmap channels", 1, 255) if len(parts) == 3 else None
            rtpmap[to_int(pt_text, "rtpmap payload type", 0, 127)] = (
                parts[0],
                to_int(parts[1], "rtpmap clock rate", 1),
                channels,
            )
        elif name == "fmtp":
            pt_text, _, params = text.partition(" ")
            fmtp[to_int(pt_text, "fmtp payload type", 0, 127)] = params.strip()
        elif name == "rtcp-fb":
            pt_text, _, fb = text.partition(" ")
            if pt_text == "*":
                wildcard.append(fb.strip())
            else:
                feedback.setdefault(to_int(pt_text, "rtcp-fb payload type", 0, 127), []).append(fb.strip())
    out: list[Codec] = []
    for fmt in fmts:
        if not _DIGITS.fullmatch(fmt) or int(fmt) not in rtpmap:
            continue
        pt = int(fmt)
        encoding, rate, channels = rtpmap[pt]
        out.append(Codec(pt, encoding, rate, channels, fmtp.get(pt), tuple(wildcard + feedback.get(pt, []))))
    return tuple(out)


def _parse_extmap(value: str) -> Extmap:
    head, _, rest = value.partition(" ")
    ident, _, direction = head.partition("/")
    uri, _, attributes = rest.strip().partition(" ")
    if not uri or (direction and direction not in DIRECTIONS):
        raise ParseError(f"bad a=extmap:{value[:60]}")
    return Extmap(to_int(ident, "extmap id", 1, 4351), uri, direction or None, attributes.strip())


def _parse_rid(value: str) -> Rid:
    parts = value.split(None, 2)
    if len(parts) < 2 or parts[1] not in ("send", "recv") or not _TOKEN.fullmatch(parts[0]):
        raise ParseError(f"bad a=rid:{value[:60]}")
    params: list[tuple[str, str]] = []
    if len(parts) == 3:
        for item in parts[2].split(";"):
            key, _, param = item.strip().partition("=")
            if key:
                params.append((key, param))
    return Rid(parts[0], parts[1], tuple(params))


def _parse_simulcast(value: str) -> Simulcast:
    """``send <streams> [recv <streams>]``: streams split by ``;``, alternatives by ``,``."""
    parts = value.split()
    if len(parts) not in (2, 4):
        raise ParseError(f"bad a=simulcast:{value[:60]}")
    found: dict[str, tuple[tuple[str, ...], ...]] = {}
    for direction, streams in zip(parts[::2], parts[1::2], strict=True):
        if direction not in ("send", "recv") or direction in found:
            raise ParseError(f"bad a=simulcast:{value[:60]}")
        parsed = tuple(tuple(alt.split(",")) for alt in streams.split(";"))
        if any(not rid or rid == "~" for alts in parsed for rid in alts):
            raise ParseError(f"bad a=simulcast:{value[:60]}")
        found[direction] = parsed
    return Simulcast(found.get("send", ()), found.get("recv", ()))
