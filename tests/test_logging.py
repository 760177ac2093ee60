"""agentfsm's log records: the standard ``logging`` module by default (silent until the
application configures it), structlog for applications that configured structlog, and the
``debug_print`` trace on stdout only when asked."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from agentfsm import tool
from agentfsm._log import get_logger
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls

from .conftest import AgentFactory

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _structlog_unconfigured() -> Iterator[None]:
    """Each test starts (and leaves) structlog as an application that never configured it:
    other tests' ``capture_logs`` leave it configured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@tool
def broken(city: str) -> str:
    """Always fails."""
    raise ValueError(f"no weather for {city}")


def _script(server: ScriptedOpenAIServer) -> None:
    server.add(tool_calls(call("broken", {"city": "Oslo"}, id="call_1")), text("Sorry."))


async def test_a_failing_tool_prints_nothing(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    """A run whose tool fails writes nothing to stdout or stderr when the application
    configured neither logging nor structlog."""
    _script(server)
    response = await make_agent(tool_registry=[broken]).send_message("hi", chat_id="c1")
    assert response.output == "Sorry."
    assert capfd.readouterr() == ("", "")


def test_a_program_without_logging_configuration_prints_nothing(tmp_path: Path) -> None:
    """A whole program — no pytest handlers on the root logger — with a failing tool and a
    retried request prints nothing at all: the ``agentfsm`` logger has a NullHandler, so
    the standard library's last-resort handler stays quiet too."""
    script = tmp_path / "quiet.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, logging

            from agentfsm import AsyncOpenAISimpleAgent, tool
            from agentfsm.testing import ScriptedOpenAIServer, call, fault, text, tool_calls

            @tool
            def broken(city: str) -> str:
                \"\"\"Always fails.\"\"\"
                raise ValueError(city)

            async def main():
                replies = [
                    fault.server_error(500),
                    tool_calls(call("broken", {"city": "Oslo"})),
                    text("Sorry."),
                ]
                async with ScriptedOpenAIServer(replies) as server:
                    async def no_wait(seconds):
                        pass
                    async with AsyncOpenAISimpleAgent(
                        model="m", api_key="k", base_url=server.base_url,
                        tool_registry=[broken], sleep=no_wait,
                    ) as agent:
                        response = await agent.send_message("hi")
                assert response.output == "Sorry.", response.output
                assert [h.__class__ for h in logging.getLogger("agentfsm").handlers] == [
                    logging.NullHandler
                ]

            asyncio.run(main())
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


def test_importing_agentfsm_loads_no_structlog() -> None:
    """structlog loads only when something uses it (``debug_print``, the CLI, your app)."""
    code = "import sys, agentfsm; print('structlog' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr


async def test_the_warning_reaches_logging_with_its_fields(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed tool call is a WARNING record of ``agentfsm.executor``: the event and its
    fields in the message, each field as a record attribute, all of them in ``fields``."""
    _script(server)
    with caplog.at_level(logging.WARNING, logger="agentfsm"):
        await make_agent(tool_registry=[broken]).send_message("hi", user_id="u1", chat_id="c1")
    records = [r for r in caplog.records if r.name.startswith("agentfsm")]
    assert [(r.name, r.levelno, r.getMessage()) for r in records] == [
        (
            "agentfsm.executor",
            logging.WARNING,
            "tool_call_failed tool=broken call_id=call_1 chat_id=c1 error_type=ValueError",
        )
    ]
    record: Any = records[0]
    assert (record.event, record.chat_id, record.tool, record.error_type) == (
        "tool_call_failed",
        "c1",
        "broken",
        "ValueError",
    )
    assert record.fields == {
        "tool": "broken",
        "call_id": "call_1",
        "chat_id": "c1",
        "error_type": "ValueError",
    }
    assert record.funcName == "_report_error"  # the record points at the caller, not _log


async def test_structlog_configured_by_the_application_receives_it_instead(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An application that configured structlog gets the same key-value event through its
    own processors, and no ``logging`` record besides."""
    _script(server)
    events: list[dict[str, Any]] = []

    def keep(_logger: Any, method: str, event: dict[str, Any]) -> Any:
        events.append({**event, "method": method})
        raise structlog.DropEvent

    structlog.configure(processors=[keep])
    with caplog.at_level(logging.DEBUG, logger="agentfsm"):
        await make_agent(tool_registry=[broken]).send_message("hi", user_id="u1", chat_id="c1")
    assert events == [
        {
            "event": "tool_call_failed",
            "tool": "broken",
            "call_id": "call_1",
            "chat_id": "c1",
            "error_type": "ValueError",
            "method": "warning",
        }
    ]
    assert [r for r in caplog.records if r.name.startswith("agentfsm")] == []


async def test_debug_print_still_prints_its_trace(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    """``debug_print=True`` is the one way agentfsm writes to stdout: asked for per run."""
    _script(server)
    await make_agent(tool_registry=[broken]).send_message("hi", chat_id="c1", debug_print=True)
    out, err = capfd.readouterr()
    assert "function_call_error" in out
    assert "chat_id=c1" in out
    assert err == ""


def test_fields_named_like_record_attributes_do_not_clash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A field named like a LogRecord attribute (``name``, ``message``) is kept with a
    trailing underscore instead of breaking the call; odd values are quoted."""
    log = get_logger("agentfsm.test")
    with caplog.at_level(logging.INFO, logger="agentfsm"):
        log.info("renamed", name="weather tool", message="", count=3)
    (record,) = caplog.records
    assert record.getMessage() == "renamed name='weather tool' message='' count=3"
    assert (record.name, record.name_, record.message_) == (  # type: ignore[attr-defined]
        "agentfsm.test",
        "weather tool",
        "",
    )


def test_records_below_the_level_are_not_built(caplog: pytest.LogCaptureFixture) -> None:
    """A disabled level costs a check: no record reaches any handler."""
    log = get_logger("agentfsm.test")
    with caplog.at_level(logging.WARNING, logger="agentfsm"):
        log.debug("hidden", value=1)
        log.error("shown", value=2)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("ERROR", "shown value=2")]
