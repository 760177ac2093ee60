"""The ``agentfsm`` command, run as a real subprocess: graph, inspect, chat, demo and errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from agentfsm import AsyncOpenAISimpleAgent, tool
from agentfsm.store import SQLiteStore
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls
from agentfsm.viz import machine_dot, machine_json, machine_mermaid, run_mermaid

ROOT = Path(__file__).resolve().parents[1]


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


async def _agentfsm(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    """Run ``python -m agentfsm ARGS`` without blocking the loop (a scripted server runs here)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentfsm",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(
        process.communicate(stdin.encode() if stdin is not None else None), 60
    )
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _stored_run(server: ScriptedOpenAIServer, path: Path) -> None:
    """One real run with a tool call, checkpointed in a SQLite file."""
    server.add(tool_calls(call("get_weather", {"city": "Tokyo"})), text("It is sunny in Tokyo."))
    async with SQLiteStore(path) as store:
        agent = AsyncOpenAISimpleAgent(
            model="scripted-model",
            api_key="k",
            base_url=server.base_url,
            tool_registry=[get_weather],
            store=store,
            context_handling_method="simple",
        )
        async with agent:
            await agent.send_message("weather in tokyo?", user_id="u1", chat_id="chat-1")


# --------------------------------------------------------------------------- graph


async def test_graph_prints_the_machine_in_every_format() -> None:
    """`graph` prints Mermaid (default), DOT and JSON, each generated from the table."""
    code, out, err = await _agentfsm("graph")
    assert (code, err) == (0, "")
    assert out == machine_mermaid()
    code, out, _ = await _agentfsm("graph", "--format", "dot")
    assert code == 0
    assert out == machine_dot()
    code, out, _ = await _agentfsm("graph", "--format", "json")
    assert code == 0
    assert json.loads(out) == machine_json()


async def test_graph_greys_the_edges_of_an_imported_agent(tmp_path: Path) -> None:
    """`graph --agent MODULE:NAME` draws the machine as that agent's configuration allows."""
    (tmp_path / "myagents.py").write_text(
        "from agentfsm import AsyncOpenAISimpleAgent\n"
        "agent = AsyncOpenAISimpleAgent(model='m', api_key='k', "
        "context_handling_method='simple')\n"
    )
    code, out, err = await _agentfsm("graph", "--agent", "myagents:agent", cwd=tmp_path)
    assert (code, err) == (0, "")
    assert "    class executing_tools impossible" in out
    code, _, err = await _agentfsm("graph", "--agent", "myagents:nothing", cwd=tmp_path)
    assert code == 1
    assert err == "agentfsm: error: --agent: myagents:nothing is not an agent (got NoneType)\n"


# --------------------------------------------------------------------------- inspect


async def test_inspect_shows_a_stored_conversation_and_its_run(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """`inspect` prints phase, messages, usage, cost and the run as a timeline."""
    await _stored_run(server, tmp_path / "chats.db")
    code, out, err = await _agentfsm(
        "inspect", "chat-1", "--store", "sqlite:///chats.db", cwd=tmp_path
    )
    assert (code, err) == (0, ""), err
    lines = out.splitlines()
    assert "chat      chat-1" in lines
    assert "user      u1" in lines
    assert "phase     done (stop_reason: response)" in lines
    assert "cost      $0" in lines
    assert any(line.startswith("usage     ") and "in 2 requests" in line for line in lines)
    assert "  [0] user      weather in tokyo?" in lines
    assert '  [1] assistant → get_weather({"city": "Tokyo"})' in lines
    assert "  [2] tool      get_weather: Sunny in Tokyo" in lines
    assert "  [3] assistant It is sunny in Tokyo." in lines
    assert "run (5 transitions)" in lines
    steps = [line.split() for line in lines[lines.index("run (5 transitions)") + 3 :]]
    assert [(s[0], s[2], s[3], s[4], s[5]) for s in steps] == [
        ("1", "trimming_context", "awaiting_model", "context_ready", "0"),
        ("2", "awaiting_model", "executing_tools", "tool_calls_requested", "1"),
        ("3", "executing_tools", "trimming_context", "tools_finished", "1"),
        ("4", "trimming_context", "awaiting_model", "context_ready", "1"),
        ("5", "awaiting_model", "done", "final_answer", "2"),
    ]
    assert steps[-1][-1] == "-"


async def test_inspect_mermaid_prints_the_run_diagram(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """`inspect --mermaid` prints exactly run_mermaid() of the stored conversation."""
    path = tmp_path / "chats.db"
    await _stored_run(server, path)
    async with SQLiteStore(path) as store:
        conversation = await store.load("chat-1")
    assert conversation is not None
    code, out, err = await _agentfsm(
        "inspect", "chat-1", "--store", f"sqlite:///{path}", "--mermaid"
    )
    assert (code, err) == (0, "")
    assert out == run_mermaid(conversation)
    assert '    n2["executing_tools<br/>get_weather"]' in out


async def test_inspect_an_unknown_chat_is_one_error_line(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """An unknown chat, a missing file or a bad store URL: one line on stderr, exit 1."""
    path = tmp_path / "chats.db"
    await _stored_run(server, path)
    url = f"sqlite:///{path}"
    code, out, err = await _agentfsm("inspect", "nope", "--store", url)
    assert (code, out) == (1, "")
    assert err == f"agentfsm: error: chat 'nope' is not in the store {url}\n"

    code, _, err = await _agentfsm("inspect", "x", "--store", f"sqlite:///{tmp_path}/missing.db")
    assert code == 1
    assert err.startswith("agentfsm: error: no database file at ")
    assert not (tmp_path / "missing.db").exists()

    code, _, err = await _agentfsm("inspect", "x", "--store", "mysql://db")
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("agentfsm: error: --store 'mysql://db' is not a store URL")


async def test_a_three_slash_sqlite_url_to_a_missing_file_says_four_slashes_are_absolute(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """sqlite:///tmp/x.db names the relative tmp/x.db: the error says an absolute path needs
    sqlite:////tmp/x.db, and that URL works."""
    path = tmp_path / "chats.db"
    await _stored_run(server, path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    relative = str(path).lstrip("/")
    code, out, err = await _agentfsm("inspect", "chat-1", "--store", f"sqlite:///{relative}",
                                     cwd=elsewhere)  # fmt: skip
    assert (code, out) == (1, "")
    assert err == (
        f"agentfsm: error: no database file at {relative!r} (--store sqlite:///{relative}); a "
        f"path after sqlite:/// is relative to {str(elsewhere)!r}, an absolute path needs four "
        f"slashes: sqlite:////{relative}\n"
    )
    code, out, err = await _agentfsm("inspect", "chat-1", "--store", f"sqlite:////{relative}",
                                     cwd=elsewhere)  # fmt: skip
    assert (code, err) == (0, "")
    assert "chat      chat-1" in out


async def test_store_and_input_errors_are_one_line(tmp_path: Path) -> None:
    """A store that is down (a multi-line driver message), a file that is not a database and
    a bad chat id each print one line, as typed agentfsm errors."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "notes.txt").write_text("not a database")
    cases = [
        ("x", f"postgresql://postgres@127.0.0.1:{port}/postgres",
         "agentfsm: error: StoreError: PostgresStore(table='agentfsm_conversations'): cannot "
         "reach PostgreSQL"),
        ("x", "sqlite:///notes.txt",
         "agentfsm: error: StoreError: SQLiteStore('notes.txt'): file is not a database"),
        ("a\x01" * 600, "sqlite:///notes.txt",
         "agentfsm: error: InvalidInputError: chat_id must be a non-empty string of at most 1024"),
    ]  # fmt: skip
    for chat_id, url, start in cases:
        code, out, err = await _agentfsm("inspect", chat_id, "--store", url, cwd=tmp_path)
        assert (code, out, err.count("\n")) == (1, "", 1), err
        assert err.startswith(start), err


async def test_debug_shows_the_traceback() -> None:
    """With --debug an error is raised with its traceback instead of the one-line message."""
    code, _, err = await _agentfsm("--debug", "inspect", "x", "--store", "mysql://db")
    assert code == 1
    assert "Traceback (most recent call last)" in err


# --------------------------------------------------------------------------- chat


async def test_chat_streams_two_answers_then_exits_at_end_of_input(
    server: ScriptedOpenAIServer,
) -> None:
    """`chat` streams each answer, keeps the conversation between messages, exits on EOF."""
    server.add(text("Hello there, human!"), text("Second answer here."))
    code, out, err = await _agentfsm(
        "chat",
        "--model",
        "scripted-model",
        "--base-url",
        server.base_url,
        "--api-key",
        "k",
        "--chat-id",
        "c1",
        stdin="hi\nand again\n",
    )
    assert (code, err) == (0, "")
    assert "agentfsm chat · scripted-model · chat c1" in out
    assert "assistant> Hello there, human!\n" in out
    assert "assistant> Second answer here.\n" in out
    assert all(request.stream for request in server.requests)
    assert [m["content"] for m in server.requests[1].messages] == [
        "hi",
        "Hello there, human!",
        "and again",
    ]


async def test_chat_shows_tool_calls_and_continues_a_stored_chat(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """With --store a second session continues the chat the first one left in the file."""
    await _stored_run(server, tmp_path / "chats.db")
    server.add(text("Still sunny."))
    code, out, err = await _agentfsm(
        "chat",
        "--model",
        "scripted-model",
        "--base-url",
        server.base_url,
        "--api-key",
        "k",
        "--store",
        "sqlite:///chats.db",
        "--chat-id",
        "chat-1",
        "--user-id",
        "u1",
        stdin="and now?\n",
        cwd=tmp_path,
    )
    assert (code, err) == (0, "")
    assert "continued: 4 messages so far" in out
    assert "assistant> Still sunny.\n" in out
    assert [m["role"] for m in server.requests[-1].messages] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX signals")
async def test_ctrl_c_during_an_answer_stops_the_run_not_the_program(
    server: ScriptedOpenAIServer,
) -> None:
    """Ctrl-C while the model writes stops that run; the next message is answered."""
    long = "word " * 400
    server.add(text(long, chunk_size=5, chunk_delay=0.02), text("After the stop."))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentfsm",
        "chat",
        "--model",
        "scripted-model",
        "--base-url",
        server.base_url,
        "--api-key",
        "k",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(b"tell me a long story\n")
    await process.stdin.drain()
    seen = b""
    while b"word word" not in seen:
        seen += await asyncio.wait_for(process.stdout.read(256), 30)
    process.send_signal(signal.SIGINT)
    while b"[stopped: user_stop]" not in seen:
        seen += await asyncio.wait_for(process.stdout.read(256), 30)
    process.stdin.write(b"and now?\n")
    process.stdin.close()
    rest, err = await asyncio.wait_for(process.communicate(), 30)
    out = (seen + rest).decode()
    assert process.returncode == 0, err.decode()
    assert "[stopping…]" in out
    assert "assistant> After the stop.\n" in out
    assert out.count("word") < 400


async def test_chat_without_an_api_key_is_one_error_line() -> None:
    """No --api-key and no OPENAI_API_KEY: the configuration error in one line, exit 1."""
    code, _, err = await _agentfsm("chat", "--model", "m", stdin="")
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("agentfsm: error: ConfigurationError: no API key")


_MY_AGENTS = """
from agentfsm import {cls}, tool


@tool
def get_weather(city: str) -> str:
    \"\"\"Current weather for a city.\"\"\"
    return f"Sunny in {{city}}"


agent = {cls}(
    model="scripted-model", api_key="k", base_url={base_url!r}, tool_registry=[get_weather],
    system_prompt="You are terse.", context_handling_method="simple",
)
"""


@pytest.mark.parametrize("cls", ["AsyncOpenAIStreamingAgent", "AsyncOpenAISimpleAgent"])
async def test_chat_with_your_own_agent_and_its_tools(
    server: ScriptedOpenAIServer, tmp_path: Path, cls: str
) -> None:
    """`chat --agent MODULE:NAME` talks to the user's agent: its tools run and show, its
    system prompt is sent; a streaming and a plain agent alike."""
    (tmp_path / "myagents.py").write_text(_MY_AGENTS.format(cls=cls, base_url=server.base_url))
    server.add(tool_calls(call("get_weather", {"city": "Tokyo"})), text("Sunny in Tokyo."))
    code, out, err = await _agentfsm(
        "chat", "--agent", "myagents:agent", "--chat-id", "c1", stdin="weather in tokyo?\n",
        cwd=tmp_path,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert "agentfsm chat · scripted-model · chat c1" in out
    assert '\n  → get_weather({"city": "Tokyo"})\n  ← get_weather: Sunny in Tokyo\n' in out
    assert out.endswith("Sunny in Tokyo.\nyou> \n")
    assert [m["role"] for m in server.requests[-1].messages] == [
        "system", "user", "assistant", "tool",
    ]  # fmt: skip
    assert server.requests[0].tools[0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--agent", "myagents:agent", "--model", "m", "--store", "sqlite:///x.db"],
            "--model, --store cannot be combined with --agent: the agent has its own settings",
        ),
        (["--agent", "myagents"], "--agent must be MODULE:NAME"),
        (["--agent", "no_such_module:agent"], "--agent: cannot import 'no_such_module'"),
        ([], "chat needs --model (or --agent MODULE:NAME for your own agent)"),
    ],
)
async def test_chat_agent_option_errors_are_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Options --agent replaces, a malformed or missing agent: one line saying what to do."""
    code, _, err = await _agentfsm("chat", *args, stdin="", cwd=tmp_path)
    assert (code, err.count("\n")) == (1, 1), err
    assert err.startswith(f"agentfsm: error: {message}"), err


# --------------------------------------------------------------------------- demo, logging


async def test_demo_prints_the_run_as_mermaid() -> None:
    """`demo` runs offline and ends with the Mermaid path of its run."""
    code, out, err = await _agentfsm("demo")
    assert code == 0, err
    assert "stop_reason: response" in out
    diagram = out[out.index("flowchart LR") :]
    assert '    n2["executing_tools<br/>get_weather"]' in diagram
    assert '    n5(["done<br/>stop_reason: response"])' in diagram
    assert diagram.endswith("    class n5 done\n")


async def test_importing_agentfsm_leaves_structlog_unconfigured() -> None:
    """Only the command configures structlog: importing the library (and the CLI) does not."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import agentfsm, agentfsm.viz, agentfsm.cli, structlog; print(structlog.is_configured())",
        stdout=asyncio.subprocess.PIPE,
        env=_env(),
    )
    out, _ = await process.communicate()
    assert out.decode().strip() == "False"


# --------------------------------------------------------------------------- docs tables

# The docs render the same tables `graph` does, at build time (mkdocs_hooks.py).


def _rendered(page: str) -> str:
    """A docs page as MkDocs hands it on, placeholders filled."""
    import mkdocs_hooks

    markdown = (ROOT / "docs" / page).read_text(encoding="utf-8")
    return mkdocs_hooks.on_page_markdown(markdown, page=None, config=None, files=None)


def test_the_hooks_page_lists_every_hook_with_its_event_and_fields() -> None:
    """docs/hooks.md shows one row per HOOK_EVENTS entry, with the event's own fields and
    their docstring descriptions; no placeholder is left."""
    import attrs

    from agentfsm.hooks import HOOK_EVENTS, Event, RetryEvent

    page = _rendered("hooks.md")
    rows = [line for line in page.splitlines() if line.startswith("| `on_")]
    assert [row.split(" | ")[:2] for row in rows] == [
        [f"| `{name}`", f"`{event.__name__}`"] for name, event in HOOK_EVENTS.items()
    ]
    for row, event in zip(rows, HOOK_EVENTS.values(), strict=True):
        common = {field.name for field in attrs.fields(Event)}
        for field in attrs.fields(event):
            assert (f"`{field.name}`" in row) is (field.name not in common), (row, field.name)
    retry = rows[list(HOOK_EVENTS.values()).index(RetryEvent)]
    assert "`delay`: seconds waited before the next attempt." in retry
    assert "<!--" not in page


def test_the_machine_page_lists_every_guard_and_edge_in_order() -> None:
    """docs/machine.md shows the guards in priority order and every edge of the machine."""
    import mkdocs_hooks
    from agentfsm.machine import EDGES, GUARDS, NEW_RUN

    page = _rendered("machine.md")
    rows = [line.split(" | ") for line in page.splitlines() if line.startswith("| `")]
    names = {guard.name for guard in GUARDS}
    first = [row[0].removeprefix("| `").removesuffix("`") for row in rows]
    assert [name for name in first if name in names] == [guard.name for guard in GUARDS]
    moves = {(row[0][3:-1], row[-1][1:-3]) for row in rows}
    expected = {(phase.value, target.value) for (phase, _), target in EDGES.items()}
    expected |= {
        ((key[0] if isinstance(key, tuple) else key).value, target.value)
        for key, target in NEW_RUN.items()
    }
    assert expected <= moves
    assert not any(placeholder in page for placeholder in mkdocs_hooks.TABLES)


async def test_the_docs_build_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict` passes: every generated table and diagram renders."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir",
        str(tmp_path / "site"), cwd=ROOT, env=_env(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, (out + err).decode()
    hooks = (tmp_path / "site" / "hooks" / "index.html").read_text(encoding="utf-8")
    assert "<td><code>on_budget_exceeded</code></td>" in hooks
