"""Keep access tokens out of the logs.

Tokens travel in URLs (``/rtc?access_token=``, ``/call?token=``) and so reach the access log, and a client
may percent-encode any character (``access%5Ftoken=``, ``%2E`` for the dots, even twice), so redacting by
parameter name misses them. Instead every formatted line is scanned: each run of URL-ish characters is
percent-decoded (until stable, at most three times) and replaced when the result contains anything shaped
like a JWT. The redaction wraps each handler's formatter, so it sees the final text: message, arguments
and tracebacks alike, from uvicorn's loggers and ours.
"""

from __future__ import annotations

import logging
import re
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
