"""Fixtures of the fault suite (RELIABILITY.md F1-F13): impaired loopback, servers with short timeouts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.lossy_lo import LossyLoopback


@pytest.fixture
def lossy_lo() -> Iterator[LossyLoopback]:
    """Random loss on ``lo`` (this namespace only); always healed when the test ends, pass or fail."""
    impairment = LossyLoopback()
    try:
        yield impairment
    finally:
        impairment.clear()
