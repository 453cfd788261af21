"""Debian Chromium through Playwright, with a fake camera and microphone (see shared TESTING.md)."""

from __future__ import annotations

import asyncio
import functools
import shutil
from pathlib import Path
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
]


def chromium_args(fake_video: Path | None = None) -> list[str]:
    args = list(CHROMIUM_ARGS)
    if fake_video is not None:
        args.append(f"--use-file-for-fake-video-capture={fake_video}")
    return args


async def _csp_safe_wait_for_function(
    page: Page, expression: str, *, arg: Any = None, timeout: float | None = None, polling: Any = None
) -> None:
    """``page.wait_for_function`` without ``eval()``. Playwright's own evaluates its predicate with
    ``globalThis.eval``, which the pages' Content-Security-Policy refuses; compiling the predicate into the
    function given to ``page.evaluate`` (through the DevTools protocol) is not subject to the CSP, so the
    e2e tests keep running every page under its real policy. Navigations during the wait are retried."""
    interval = polling if isinstance(polling, int | float) else 100
    script = f"""async (arg) => {{
      const predicate = () => {{ const r = ({expression}); return typeof r === 'function' ? r(arg) : r; }};
      while (!predicate()) await new Promise((resolve) => setTimeout(resolve, {interval}));
    }}"""
    deadline = asyncio.get_running_loop().time() + (30_000 if timeout is None else timeout) / 1000
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(page.evaluate(script, arg), max(remaining, 0.001))
            return
        except TimeoutError:
            raise PlaywrightTimeoutError(f"wait_for_function({expression!r}) timed out") from None
        except PlaywrightError as exc:
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise


def csp_safe_waits(page: Page) -> Page:
    """Give ``page`` a CSP-compatible ``wait_for_function`` (see above); returns the page."""
    page.wait_for_function = functools.partial(_csp_safe_wait_for_function, page)  # type: ignore[method-assign,assignment]
    return page
