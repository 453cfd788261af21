"""Real Chromium fixtures (a plugin loaded by tests/conftest.py): one browser, a context per participant."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.support.browser import CHROMIUM, chromium_args, csp_safe_waits

NewPage = Callable[[str], Awaitable[Page]]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args())
        yield b
        await b.close()


@pytest.fixture
async def new_page(browser: Browser, artifacts: Path, request: pytest.FixtureRequest) -> AsyncIterator[NewPage]:
    """Open pages in separate contexts (separate participants); screenshot them if the test fails."""
    contexts: list[BrowserContext] = []
    pages: list[Page] = []
    console: list[str] = []

    async def open_page(url: str) -> Page:
        context = await browser.new_context(permissions=["camera", "microphone"])
        contexts.append(context)
        page = csp_safe_waits(await context.new_page())
        page.on("console", lambda msg: console.append(f"[{len(pages)}] {msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: console.append(f"[{len(pages)}] pageerror: {exc}"))
        pages.append(page)
        await page.goto(url)
        return page

    yield open_page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
        for i, page in enumerate(pages):
            with contextlib.suppress(Exception):
                await page.screenshot(path=str(artifacts / f"{name}-{i}.png"))
        (artifacts / f"{name}-console.log").write_text("\n".join(console))
    for context in contexts:
        await context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
