"""SDP (RFC 8866) as WebRTC uses it: unified plan, BUNDLE, ICE and DTLS attributes (RFC 8829 §5).

A description keeps its attribute lines in order (so unknown attributes survive a round trip) and
offers typed accessors for what an SFU needs: codecs (rtpmap/fmtp/rtcp-fb), extmap, ssrc and
ssrc-group, msid, rid/simulcast, ICE credentials, fingerprints, setup, candidates, sctp-port.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from roomcast.wire import ParseError

MAX_SDP_BYTES = 64 * 1024
MAX_LINES = 10_000
MAX_MEDIA = 64

Attribute = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class Codec:
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
        params: dict[str, str] = {}
        for item in (self.fmtp or "").split(";"):
            key, sep, value = item.strip().partition("=")
            if key:
                params[key.lower()] = value if sep else ""
        return params


@dataclass(frozen=True, slots=True)
class MediaDescription:
    kind: str
    port: int
    proto: str
    fmts: tuple[str, ...]
    connection: str | None = None
    attributes: tuple[Attribute, ...] = ()
    bandwidths: tuple[str, ...] = ()

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
    def mid(self) -> str | None:
        return self.value("mid")

    @property
    def direction(self) -> str:
        for k, _ in self.attributes:
            if k in ("sendrecv", "sendonly", "recvonly", "inactive"):
                return k
        return "sendrecv"

    @property
    def ice_ufrag(self) -> str | None:
        return self.value("ice-ufrag")

    @property
    def ice_pwd(self) -> str | None:
        return self.value("ice-pwd")

    @property
    def setup(self) -> str | None:
        return self.value("setup")

    @property
    def fingerprints(self) -> list[tuple[str, str]]:
        return _fingerprints(self.values("fingerprint"))

    @property
    def candidates(self) -> list[str]:
        return self.values("candidate")

    @property
    def rtcp_mux(self) -> bool:
        return self.has("rtcp-mux")

    def codecs(self) -> list[Codec]:
        """Codecs in the order of the m= line's payload types (preference order, RFC 8866 §5.14)."""
        rtpmap: dict[int, tuple[str, int, int | None]] = {}
        fmtp: dict[int, str] = {}
        feedback: dict[int, list[str]] = {}
        for value in self.values("rtpmap"):
            pt_text, _, encoding = value.partition(" ")
            parts = encoding.strip().split("/")
            try:
                pt = int(pt_text)
                rtpmap[pt] = (parts[0], int(parts[1]), int(parts[2]) if len(parts) > 2 else None)
            except (ValueError, IndexError):
                raise ParseError(f"bad a=rtpmap:{value[:60]}") from None
        for value in self.values("fmtp"):
            pt_text, _, params = value.partition(" ")
            if pt_text.isdigit():
                fmtp[int(pt_text)] = params.strip()
        for value in self.values("rtcp-fb"):
            pt_text, _, fb = value.partition(" ")
            if pt_text.isdigit():
                feedback.setdefault(int(pt_text), []).append(fb.strip())
            elif pt_text == "*":
                for pt in rtpmap:
                    feedback.setdefault(pt, []).append(fb.strip())
        out = []
        for fmt in self.fmts:
            if not fmt.isdigit() or int(fmt) not in rtpmap:
                continue
            pt = int(fmt)
            name, rate, channels = rtpmap[pt]
            out.append(Codec(pt, name, rate, channels, fmtp.get(pt), tuple(feedback.get(pt, ()))))
        return out

    def extmaps(self) -> list[tuple[int, str]]:
        out = []
        for value in self.values("extmap"):
            ident, _, rest = value.partition(" ")
            ident = ident.split("/")[0]
            if not ident.isdigit() or not rest:
                raise ParseError(f"bad a=extmap:{value[:60]}")
            out.append((int(ident), rest.split(" ")[0]))
        return out

    def ssrcs(self) -> dict[int, dict[str, str]]:
        out: dict[int, dict[str, str]] = {}
        for value in self.values("ssrc"):
            ssrc_text, _, attr = value.partition(" ")
            if not ssrc_text.isdigit() or int(ssrc_text) > 0xFFFFFFFF:
                raise ParseError(f"bad a=ssrc:{value[:60]}")
            name, _, attr_value = attr.partition(":")
            out.setdefault(int(ssrc_text), {})[name] = attr_value
        return out

    def ssrc_groups(self) -> list[tuple[str, tuple[int, ...]]]:
        out = []
        for value in self.values("ssrc-group"):
            semantics, *ssrcs = value.split()
            if not all(s.isdigit() for s in ssrcs):
                raise ParseError(f"bad a=ssrc-group:{value[:60]}")
            out.append((semantics, tuple(int(s) for s in ssrcs)))
        return out

    def rids(self) -> list[tuple[str, str]]:
        out = []
        for value in self.values("rid"):
            rid, _, rest = value.partition(" ")
            out.append((rid, rest.split(" ")[0] if rest else ""))
        return out


@dataclass(frozen=True, slots=True)
class SessionDescription:
    origin: str = "- 0 0 IN IP4 0.0.0.0"
    name: str = "-"
    timing: str = "0 0"
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = field(default_factory=tuple)

    def value(self, name: str) -> str | None:
        for k, v in self.attributes:
            if k == name:
                return v or ""
        return None

    def values(self, name: str) -> list[str]:
        return [v or "" for k, v in self.attributes if k == name]

    def bundle_mids(self) -> list[str]:
        for value in self.values("group"):
            semantics, *mids = value.split()
            if semantics == "BUNDLE":
                return mids
        return []

    @property
    def fingerprints(self) -> list[tuple[str, str]]:
        return _fingerprints(self.values("fingerprint"))

    @classmethod
    def parse(cls, text: str) -> SessionDescription:
        if len(text) > MAX_SDP_BYTES:
            raise ParseError(f"SDP larger than {MAX_SDP_BYTES} bytes")
        lines = text.replace("\r\n", "\n").split("\n")
        if len(lines) > MAX_LINES:
            raise ParseError(f"SDP has more than {MAX_LINES} lines")
        session: dict[str, str] = {}
        session_attrs: list[Attribute] = []
        media: list[_MediaBuilder] = []
        for raw in lines:
            line = raw.rstrip("\r")
            if not line:
                continue
            if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
                raise ParseError(f"malformed SDP line {line[:40]!r}")
            kind, value = line[0], line[2:]
            if kind == "m":
                if len(media) >= MAX_MEDIA:
                    raise ParseError(f"more than {MAX_MEDIA} media sections")
                parts = value.split()
                if len(parts) < 3 or not parts[1].split("/")[0].isdigit():
                    raise ParseError(f"malformed m= line {line[:60]!r}")
                port = int(parts[1].split("/")[0])
                if port > 65535:
                    raise ParseError("m= port out of range")
                media.append(_MediaBuilder(parts[0], port, parts[2], tuple(parts[3:])))
            elif kind == "a":
                name, sep, attr_value = value.partition(":")
                attr: Attribute = (name, attr_value if sep else None)
                (media[-1].attributes if media else session_attrs).append(attr)
            elif kind == "c" and media:
                media[-1].connection = value
            elif kind == "b" and media:
                media[-1].bandwidths.append(value)
            elif kind in "vostc":
                session.setdefault(kind, value)
        if session.get("v") != "0":
            raise ParseError("SDP must start with v=0")
        return cls(
            origin=session.get("o", "- 0 0 IN IP4 0.0.0.0"),
            name=session.get("s", "-"),
            timing=session.get("t", "0 0"),
            attributes=tuple(session_attrs),
            media=tuple(m.build() for m in media),
        )

    def serialize(self) -> str:
        lines = ["v=0", f"o={self.origin}", f"s={self.name}", f"t={self.timing}"]
        lines += [_attr_line(a) for a in self.attributes]
        for m in self.media:
            lines.append(f"m={m.kind} {m.port} {m.proto} {' '.join(m.fmts)}".rstrip())
            if m.connection is not None:
                lines.append(f"c={m.connection}")
            lines += [f"b={b}" for b in m.bandwidths]
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

    def build(self) -> MediaDescription:
        return MediaDescription(
            self.kind, self.port, self.proto, self.fmts, self.connection, tuple(self.attributes), tuple(self.bandwidths)
        )


def _attr_line(attr: Attribute) -> str:
    name, value = attr
    return f"a={name}" if value is None else f"a={name}:{value}"


def _fingerprints(values: list[str]) -> list[tuple[str, str]]:
    out = []
    for value in values:
        algorithm, _, digest = value.partition(" ")
        if not digest:
            raise ParseError("a=fingerprint needs an algorithm and a value")
        out.append((algorithm.lower(), digest.strip().upper()))
    return out
