"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess

ARTIFACTS = Path(os.environ.get("ROOMCAST_TEST_ARTIFACTS", "test-artifacts"))


def pytest_configure(config: pytest.Config) -> None:
    """With ROOMCAST_REQUIRE_NETNS=1 (set by scripts/test), refuse to run outside a private namespace."""
    if os.environ.get("ROOMCAST_REQUIRE_NETNS") == "1":
        interfaces = sorted(os.listdir("/sys/class/net"))
        outside = [i for i in interfaces if i not in ("lo", "jlo0")]
        if outside:
            raise pytest.UsageError(
                f"tests must run in a private network namespace, but interfaces {outside} exist; use scripts/test"
            )


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def server(artifacts: Path) -> Iterator[ServerProcess]:
    """A dev-mode server (built-in devkey/devsecret), as a newcomer runs it."""
    proc = ServerProcess(artifacts)
    yield proc
    code = proc.stop()
    assert code == 0, f"server did not shut down cleanly on SIGTERM (exit {code}):\n{proc.log()[-3000:]}"
    assert "Traceback" not in proc.log(), proc.log()[-5000:]
