"""Pure parsers and serialisers: bytes in, frozen dataclasses out, and back.

Every parser in this package raises only :class:`ParseError` on bad input.
"""


class ParseError(ValueError):
    """Raised by every ``wire`` parser on malformed input, and by nothing else."""


__all__ = ["ParseError"]
