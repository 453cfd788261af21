"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess

pytest_plugins = ["tests.support.browser_fixtures", "tests.support.canary", "tests.support.netns"]

ARTIFACTS = Path(os.environ.get("ROOMCAST_TEST_ARTIFACTS", "test-artifacts"))


def pytest_configure(config: pytest.Config) -> None:
    """With ROOMCAST_REQUIRE_NETNS=1 (set by scripts/test), refuse to run outside a private namespace."""
    if os.environ.get("ROOMCAST_REQUIRE_NETNS") == "1":
        interfaces = sorted(name for _, name in socket.if_nameindex())  # this namespace's, unlike /sys
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under scripts/test (ROOMCAST_NO_SKIPS=1) a skipped test fails the run: nothing passes by skipping."""
    if os.environ.get("ROOMCAST_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == 0:
        print(f"\nERROR: {skipped} test(s) skipped; the suite must run every test (ROOMCAST_NO_SKIPS=1)")
        session.exitstatus = 1
