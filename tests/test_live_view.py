"""The live view example, end to end in a real headless Chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
import uvicorn
from starlette.applications import Starlette

from agentfsm import Phase
from agentfsm.viz import machine_mermaid

try:
    from playwright.async_api import Page, Route, async_playwright, expect
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip(
        "the playwright package is not installed (pip install -e '.[dev]')",
        allow_module_level=True,
    )

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
    pytest.skip(
        f"{CHROMIUM} is missing (apt-get install chromium); Playwright's own browsers are "
        "never downloaded",
        allow_module_level=True,
    )

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "live_view" / "app.py"
SHOTS = ROOT / "test-output" / "live_view"  # git-ignored: for a human to look at
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOOL_SECONDS = 1.5  # the app's default: time enough to press Stop while get_weather runs


def _app_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("live_view_app", APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def app() -> Starlette:
    """The live view app, offline: it starts its own scripted model server."""
    return _app_module().create_app(tool_seconds=TOOL_SECONDS)


@pytest.fixture
async def base_url(app: Starlette) -> AsyncIterator[str]:
    """The app served by uvicorn on a free port of 127.0.0.1."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="none")
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    while not server.started:  # uvicorn offers no event to wait on
        if serving.done():
            serving.result()  # startup failed: raise why
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def page(base_url: str) -> AsyncIterator[Page]:
    """A page of a fresh headless Chromium that may reach the app and nothing else."""
    problems: list[str] = []

    async def offline(route: Route) -> None:
        if route.request.url.startswith(base_url):
            await route.continue_()
        else:
            problems.append(f"request outside the app: {route.request.url}")
            await route.abort()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            await context.route("**/*", offline)
            page = await context.new_page()
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on(
                "console",
                lambda message: (
                    problems.append(f"console {message.type}: {message.text}")
                    if message.type == "error"
                    else None
                ),
            )
            await page.goto(base_url)
            await expect(page.locator("body[data-ready=true]")).to_be_attached()
            yield page
            await context.close()
        finally:
            await browser.close()
    assert problems == []


async def _phases(page: Page) -> list[tuple[str, str]]:
    """The phase log of the current run: (phase, reason) per entry, in order."""
    entries = await page.locator("#phase-log li").evaluate_all(
        "items => items.map(li => [li.dataset.phase, li.dataset.reason])"
    )
    return [(phase, reason) for phase, reason in entries]


async def _send(page: Page, message: str) -> None:
    await page.fill("#message", message)
    await page.click("#send")


async def test_machine_is_drawn_from_the_transition_table(page: Page, app: Starlette) -> None:
    """The diagram has one box per phase, one arrow per edge, and ``machine_mermaid``'s text."""

    drawn = await page.locator("#machine .state").evaluate_all(
        "states => states.map(s => s.dataset.phase)"
    )
    assert drawn == [phase.value for phase in Phase]
    edges = await page.locator("#edges .edge").evaluate_all(
        "edges => edges.map(e => `${e.dataset.from} -> ${e.dataset.to}`)"
    )
    assert edges == [
        "trimming_context -> awaiting_model",
        "trimming_context -> stopped",
        "awaiting_model -> executing_tools",
        "awaiting_model -> done",
        "awaiting_model -> stopped",
        "awaiting_model -> trimming_context",
        "executing_tools -> trimming_context",
        "executing_tools -> stopped",
        "done -> trimming_context",
        "stopped -> trimming_context",
    ]
    await page.click("#mermaid-source summary")
    await expect(page.locator("#mermaid")).to_be_visible()
    shown = await page.locator("#mermaid").text_content()
    assert shown == machine_mermaid(app.state.agent)
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SHOTS / "01-machine.png", full_page=True)


async def test_chat_lights_phases_in_order_and_stop_ends_the_run(page: Page) -> None:
    """A weather question walks the machine to ``done``; Stop during the tool gives user_stop."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    await _send(page, "what is the weather in tokyo")

    await expect(page.locator(".state.active[data-phase=executing_tools]")).to_be_visible()
    tool_call = page.locator(".tool-call[data-call-id]").first
    await expect(tool_call).to_have_attribute("data-status", "running")
    await expect(tool_call).to_contain_text('get_weather({"city": "Tokyo"})')
    await page.screenshot(path=SHOTS / "02-tool-running.png", full_page=True)

    await expect(page.locator("#stop-reason")).to_have_text("response")
    await expect(page.locator(".bubble.assistant").last).to_have_text(
        "It is sunny and 22 °C in Tokyo."
    )
    await expect(tool_call).to_have_attribute("data-status", "done")
    await expect(page.locator(".state.active")).to_have_attribute("data-phase", "done")
    assert await _phases(page) == [
        ("trimming_context", ""),
        ("awaiting_model", "context_ready"),
        ("executing_tools", "tool_calls_requested"),
        ("trimming_context", "tools_finished"),
        ("awaiting_model", "context_ready"),
        ("done", "final_answer"),
    ]
    await page.screenshot(path=SHOTS / "03-answered.png", full_page=True)

    await _send(page, "and in paris?")
    running = page.locator('.tool-call[data-status="running"]')
    await expect(running).to_contain_text('get_weather({"city": "Paris"})')
    await page.click("#stop")

    await expect(page.locator("#stop-reason")).to_have_text("user_stop")
    await expect(running).to_have_count(0)
    cancelled = page.locator(".tool-call[data-call-id]").last
    await expect(cancelled).to_have_attribute("data-status", "error")
    await expect(cancelled).to_contain_text("Cancelled")
    await expect(page.locator(".state.active")).to_have_attribute("data-phase", "stopped")
    await expect(page.locator("#send")).to_be_enabled()
    assert await _phases(page) == [
        ("done", ""),
        ("trimming_context", "user_message"),
        ("awaiting_model", "context_ready"),
        ("executing_tools", "tool_calls_requested"),
        ("stopped", "user_stop"),
    ]
    await page.screenshot(path=SHOTS / "04-stopped.png", full_page=True)
