"""Logs: tokens kept out of them; text or JSON lines with per-event fields; floods of one event cut short.

Keep access tokens out of the logs.

Tokens travel in URLs (``/rtc?access_token=``, ``/call?token=``) and so reach the access log, and a client
may percent-encode any character (``access%5Ftoken=``, ``%2E`` for the dots, even twice), so redacting by
parameter name misses them. Instead every formatted line is scanned: each run of URL-ish characters is
percent-decoded (until stable, at most three times) and replaced when the result contains anything shaped
like a JWT. The redaction wraps each handler's formatter, so it sees the final text: message, arguments
and tracebacks alike, from uvicorn's loggers and ours.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from urllib.parse import unquote

REDACTED = "[redacted]"
_RUN = re.compile(r"[A-Za-z0-9_.%\-]{20,}")  # the shortest JWT is longer than this
# A JWS in compact form: base64url(JSON header) . payload . signature; the header starts with "{" → "ey"/"ew".
_JWT = re.compile(r"e[wy][A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")


def _decoded(text: str) -> str:
    for _ in range(3):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


def _replace(match: re.Match[str]) -> str:
    run = match.group(0)
    return REDACTED if _JWT.search(_decoded(run)) else run


def redact(text: str) -> str:
    """``text`` with every JWT-shaped value (plain or percent-encoded) replaced by ``[redacted]``."""
    return _RUN.sub(_replace, text)


class RedactingFormatter(logging.Formatter):
    """Formats with the handler's own formatter, then redacts the result."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def install_redaction(logger_names: tuple[str, ...] = ("", "uvicorn", "uvicorn.error", "uvicorn.access")) -> None:
    """Wrap the formatter of every handler of these loggers (call after logging is configured)."""
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            if not isinstance(handler.formatter, RedactingFormatter):
                handler.setFormatter(RedactingFormatter(handler.formatter))


# ---------------------------------------------------------------------- structured logs (issue 18 item 4)

# The fields an event may carry (``log.info(..., extra=fields(room=..., participant=..., sid=...))``), and
# ``node``, which every line gets. The text format appends them as ``key=value``; JSON has them as keys.
EVENT_FIELDS = ("room", "participant", "sid", "node", "target", "reason", "remote", "code")
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_RESERVED = _STANDARD | {"message", "asctime", "repeated", "color_message"}  # color_message: uvicorn's


def fields(**values: object) -> dict[str, object]:
    """``extra=`` for a log call: only the fields that have a value."""
    return {k: v for k, v in values.items() if v is not None and v != ""}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg``, the event's fields,
    ``repeated`` (how many similar lines were suppressed before this one), ``exc`` (a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            out[key] = value if isinstance(value, int | float | bool | str) or value is None else str(value)
        repeated = getattr(record, "repeated", 0)
        if repeated:
            out["repeated"] = repeated
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


JsonFormatter.converter = time.gmtime


class TextFormatter(logging.Formatter):
    """The usual line, then the event's fields as ``key=value`` (and ``repeated=N``)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = [f"{k}={v}" for k, v in _extras(record).items()]
        repeated = getattr(record, "repeated", 0)
        if repeated:
            pairs.append(f"repeated={repeated}")
        if not pairs:
            return line
        head, sep, tail = line.partition("\n")  # a traceback stays below the fields
        return head + " " + " ".join(pairs) + sep + tail


class NodeFilter(logging.Filter):
    """Stamps every record with this node's name (several nodes share one log pipeline)."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "node"):
            record.node = self.node
        return True


class RepeatFilter(logging.Filter):
    """At most ``burst`` lines per ``interval`` seconds of one kind, so a flood of one event cannot fill the
    disk; the next line of that kind after a quiet spell carries ``repeated=N``, the count suppressed
    meanwhile. A kind is the message *template* for warnings and errors (one failure hitting many peers is
    one flood) and the *formatted* message below that (joins of different participants are all kept; the
    same line again and again is not)."""

    def __init__(self, burst: int = 10, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self._windows: dict[tuple[str, int, str], list[float]] = {}  # key -> [window start, count, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        text = str(record.msg) if record.levelno >= logging.WARNING else record.getMessage()
        key = (record.name, record.levelno, text)
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.interval:
            suppressed = int(window[2]) if window is not None else 0
            if len(self._windows) > 4096:  # bounded: forget quiet kinds
                self._windows = {k: w for k, w in self._windows.items() if now - w[0] < self.interval}
            self._windows[key] = [now, 1, 0]
            if suppressed:
                record.repeated = suppressed
            return True
        if window[1] < self.burst:
            window[1] += 1
            return True
        window[2] += 1
        return False


def configure_logging(
    log_format: str,
    node: str,
    logger_names: tuple[str, ...] = ("", "uvicorn", "uvicorn.error", "uvicorn.access"),
    repeats: RepeatFilter | None = None,
) -> None:
    """Give every handler of these loggers the chosen format (``json`` or ``text``), the node stamp and the
    repeat limit, then the token redaction (call after logging and uvicorn are configured)."""
    node_filter = NodeFilter(node)
    repeats = repeats or RepeatFilter()
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            if name == "uvicorn.access" and log_format == "text":
                pass  # keep uvicorn's own access line; the filters still apply
            else:
                handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
            # the access log's template is one for every request: limiting its repeats would drop requests
            for f in (node_filter,) if name == "uvicorn.access" else (node_filter, repeats):
                if f not in handler.filters:
                    handler.addFilter(f)
    install_redaction(logger_names)
