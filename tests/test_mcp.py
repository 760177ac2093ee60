"""MCP tool servers: agentfsm.mcp against real MCP server processes, over stdio and HTTP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog

from agentfsm import (
    AsyncOpenAISimpleAgent,
    ConfigurationError,
    StopReason,
    Tool,
    ToolArgumentError,
    ToolContext,
    ToolDefinitionError,
)
from agentfsm.mcp import MCPServer, MCPServerError, MCPToolError
from agentfsm.testing import Reply, ScriptedOpenAIServer, call, text, tool_calls

SERVER_SCRIPT = Path(__file__).resolve().parent / "mcp_servers" / "tools_server.py"
CONTEXT = ToolContext(chat_id="chat-1", user_id="user-1", agent_name="tester", turn=1)
CANCELLED = "Cancelled: the run was stopped before this call finished."

Connect = Callable[..., MCPServer]


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """One streamable-HTTP server process for the module; it prints its port once listening."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT), "http"], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    try:
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"the HTTP MCP server did not start (exit {process.poll()})"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


@pytest.fixture(params=["stdio", "http"])
async def connect(request: pytest.FixtureRequest) -> AsyncIterator[Connect]:
    """Builds MCPServers for the test server over the parametrized transport; closes them after."""
    made: list[MCPServer] = []

    def make(**kwargs: Any) -> MCPServer:
        if request.param == "stdio":
            server = MCPServer.stdio(sys.executable, [str(SERVER_SCRIPT)], **kwargs)
        else:
            server = MCPServer.http(request.getfixturevalue("http_url"), **kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        await server.aclose()


@pytest.fixture
async def stdio() -> AsyncIterator[Connect]:
    """Builds stdio MCPServers for the test server (for what only a process can show)."""
    made: list[MCPServer] = []

    def make(**kwargs: Any) -> MCPServer:
        server = MCPServer.stdio(sys.executable, [str(SERVER_SCRIPT)], **kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        await server.aclose()


async def _tools(server: MCPServer) -> dict[str, Tool]:
    return {t.name: t for t in await server.list_tools()}


async def _invoke(tool: Tool, arguments: Mapping[str, Any], context: ToolContext = CONTEXT) -> Any:
    """What the executor does with one call: validate, then invoke with the context."""
    return await tool.invoke(tool.prepare(dict(arguments)), context)


# --------------------------------------------------------------------------- the module


def test_import_agentfsm_does_not_import_mcp() -> None:
    """`import agentfsm` loads neither agentfsm.mcp nor the mcp package."""
    code = (
        "import sys, agentfsm; "
        "assert 'agentfsm.mcp' not in sys.modules and 'mcp' not in sys.modules; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "ok", done.stderr


def test_module_exports() -> None:
    """agentfsm.mcp exports the server and its two errors."""
    import agentfsm.mcp

    assert set(agentfsm.mcp.__all__) == {"MCPServer", "MCPServerError", "MCPToolError"}
    assert {n for n in dir(MCPServer) if not n.startswith("_")} == {
        "stdio",
        "http",
        "name",
        "start",
        "list_tools",
        "refresh",
        "aclose",
    }


def test_constructors_refuse_bad_configuration() -> None:
    """Mistakes are ConfigurationErrors when the server is built, before anything runs."""
    cases: list[Callable[[], object]] = [
        lambda: MCPServer.stdio(""),
        lambda: MCPServer.stdio("python", "server.py"),  # args as one string
        lambda: MCPServer.stdio("python", [1]),  # type: ignore[list-item]
        lambda: MCPServer.stdio("python", env={"A": 1}),  # type: ignore[dict-item]
        lambda: MCPServer.stdio("python", name="has space"),
        lambda: MCPServer.stdio("python", inject={"user": "user"}),
        lambda: MCPServer.http("ftp://example.com/mcp"),
        lambda: MCPServer.http("https://example.com/mcp", headers={"A": 1}),  # type: ignore[dict-item]
    ]
    for make in cases:
        with pytest.raises(ConfigurationError):
            make()


def test_names_and_repr_without_secrets() -> None:
    """``name`` is the given name or the script's / host's; reprs never show env or headers."""
    stdio = MCPServer.stdio("python", ["-u", "tools/weather_server.py"], env={"KEY": "s3cret"})
    http = MCPServer.http(
        "https://user:pw@mcp.example.com:8443/mcp?token=s3cret",
        headers={"Authorization": "Bearer s3cret"},
        name="weather",
    )
    assert (stdio.name, http.name) == ("weather_server", "weather")
    assert MCPServer.http("https://mcp.example.com/mcp").name == "mcp.example.com"
    assert MCPServer.stdio("python", ["-m", "weather.server"]).name == "weather.server"
    assert MCPServer.stdio("/usr/bin/python3", ["-c", "print(1)"]).name == "python3"
    assert repr(stdio) == "MCPServer(name='weather_server', stdio='python')"
    assert repr(http) == "MCPServer(name='weather', url='https://mcp.example.com:8443/mcp')"


# --------------------------------------------------------------------------- listing


async def test_lists_the_servers_tools_as_agentfsm_tools(connect: Connect) -> None:
    """Every tool of the server is an ordinary Tool, with the server's schema."""
    server = connect()
    tools = await server.list_tools()
    assert [t.name for t in tools] == [
        "get_weather",
        "forecast",
        "chart",
        "cities",
        "media",
        "fail",
        "slow",
        "wait_started",
        "wait_cancelled",
        "whoami",
        "record",
        "math_add",
        "odd",
        "add_tool",
        "header",
        "pid",
        "crash",
    ]
    assert tools[0].to_openai() == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"title": "City", "type": "string"}},
                "required": ["city"],
                "title": "get_weatherArguments",
            },
        },
    }
    assert await server.list_tools() is tools  # cached


async def test_name_prefixes_tool_names(connect: Connect) -> None:
    """With ``name=``, tools are called ``f"{name}_{tool}"`` and still reach the server's tool."""
    server = connect(name="wx")
    tools = await _tools(server)
    assert server.name == "wx"
    assert {"wx_get_weather", "wx_math_add"} <= set(tools)
    assert await _invoke(tools["wx_get_weather"], {"city": "Oslo"}) == "Sunny, 22 °C in Oslo"


async def test_names_model_apis_refuse_are_cleaned(stdio: Connect) -> None:
    """``math.add`` (legal in MCP, not in chat APIs) is offered as ``math_add``."""
    with structlog.testing.capture_logs() as logs:
        tools = await _tools(stdio())
    assert await _invoke(tools["math_add"], {"a": 2, "b": 3}) == "5"
    assert {
        "event": "mcp_tool_renamed",
        "log_level": "warning",
        "server": "tools_server",
        "tool": "math.add",
        "name": "math_add",
    } in logs


async def test_schema_our_validator_refuses_is_still_offered(stdio: Connect) -> None:
    """A keyword our validator refuses leaves checking to the server, with a warning."""
    with structlog.testing.capture_logs() as logs:
        odd = (await _tools(stdio()))["odd"]
    assert odd.parameters == {
        "type": "object",
        "properties": {"data": {"title": "Data", "type": "object", "unevaluatedProperties": False}},
        "required": ["data"],
        "title": "oddArguments",
    }
    assert await _invoke(odd, {"data": {"b": 1, "a": 2}}) == "got ['a', 'b']"
    with pytest.raises(ToolArgumentError):  # still an object of the declared names
        odd.prepare("[1]")
    assert [e["event"] for e in logs if e.get("tool") == "odd"] == ["mcp_tool_schema_unchecked"]


async def test_refresh_lists_again_after_the_server_changed(connect: Connect) -> None:
    """The listing is cached; refresh() sees a tool the server added since."""
    server = connect()
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    tools = await _tools(server)
    assert await _invoke(tools["add_tool"], {"name": name}) == f"added {name}"
    assert name not in await _tools(server)
    refreshed = {t.name: t for t in await server.refresh()}
    assert await _invoke(refreshed[name], {}) == f"I am {name}"
    assert await server.list_tools() == tuple(refreshed.values())


# --------------------------------------------------------------------------- calls


async def test_call_returns_the_servers_text(connect: Connect) -> None:
    """A text result is the tool message's text as is."""
    tools = await _tools(connect())
    assert await _invoke(tools["get_weather"], {"city": "Oslo"}) == "Sunny, 22 °C in Oslo"


async def test_concurrent_calls_share_the_session(connect: Connect) -> None:
    """Calls running at once on one session each get their own answer."""
    weather = (await _tools(connect()))["get_weather"]
    cities = ["Oslo", "Rome", "Lima", "Pune"]
    results = await asyncio.gather(*(_invoke(weather, {"city": c}) for c in cities))
    assert results == [f"Sunny, 22 °C in {c}" for c in cities]


async def test_structured_result_is_compact_json(connect: Connect) -> None:
    """Structured content repeated as JSON text becomes compact JSON; other text stays."""
    tools = await _tools(connect())
    assert await _invoke(tools["forecast"], {"city": "Oslo", "days": 2}) == (
        '{"city": "Oslo", "days": 2, "temperatures": [21.5, 22.5]}'
    )
    # {"result": 5} as structured content, "5" as text: the text is what the model reads
    assert await _invoke(tools["math_add"], {"a": 2, "b": 3}) == "5"


async def test_image_result_is_a_placeholder(connect: Connect) -> None:
    """Tool results are text in the chat API: an image becomes its type and size."""
    tools = await _tools(connect())
    assert await _invoke(tools["chart"], {}) == "[image image/png, 1234 bytes]"


async def test_several_blocks_are_joined_as_lines(connect: Connect) -> None:
    """Each content block is a line: texts as is, binary content as placeholders."""
    tools = await _tools(connect())
    assert await _invoke(tools["cities"], {}) == "Oslo\nRome"
    assert await _invoke(tools["media"], {}) == (
        "[audio audio/wav, 100 bytes]\n"
        "the notes\n"
        "[resource file:///report.pdf, application/pdf, 2048 bytes]\n"
        "[resource file:///report.pdf]"
    )


async def test_error_result_raises_with_the_servers_text(connect: Connect) -> None:
    """``isError`` raises MCPToolError whose message is exactly what the server said."""
    tools = await _tools(connect(name="wx"))
    with pytest.raises(MCPToolError) as caught:
        await _invoke(tools["wx_fail"], {"reason": "the sky fell"})
    assert str(caught.value) == "Error executing tool fail: the sky fell"
    assert (caught.value.server, caught.value.tool) == ("wx", "fail")


async def test_arguments_are_checked_before_sending(connect: Connect) -> None:
    """Arguments that do not fit the schema never reach the server: the model reads why."""
    weather = (await _tools(connect()))["get_weather"]
    with pytest.raises(ToolArgumentError, match="city"):
        weather.prepare({"city": 5})
    with pytest.raises(ToolArgumentError, match="city"):
        weather.prepare({})
    with pytest.raises(ToolArgumentError, match="units"):  # a name the schema does not declare
        weather.prepare({"city": "Oslo", "units": "F"})


async def test_tools_have_a_strict_form(stdio: Connect) -> None:
    """An MCP tool can be sent in OpenAI's strict form (as ``strict_tools=True`` asks)."""
    tools = await _tools(stdio())
    weather = Tool.from_function(tools["forecast"], strict=True)
    chart = Tool.from_function(tools["chart"], strict=True)
    assert weather.to_openai()["function"]["strict"] is True
    assert weather.parameters["additionalProperties"] is False
    assert weather.parameters["required"] == ["city", "days"]
    assert chart.parameters == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }
    forecast = await _invoke(weather, {"city": "Oslo", "days": None})  # null: the default
    assert forecast == '{"city": "Oslo", "days": 2, "temperatures": [21.5, 22.5]}'
    assert await _invoke(chart, {}) == "[image image/png, 1234 bytes]"


async def test_cancelled_call_is_cancelled_on_the_server_and_session_goes_on(
    connect: Connect,
) -> None:
    """Cancelling the task of a call (what a stop does) cancels it on the server too, and the
    next call on the same session works."""
    tools = await _tools(connect())
    key = uuid.uuid4().hex
    running = asyncio.create_task(_invoke(tools["slow"], {"key": key}))
    assert await _invoke(tools["wait_started"], {"key": key}) == "started"
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await _invoke(tools["wait_cancelled"], {"key": key}) == "cancelled"
    assert await _invoke(tools["get_weather"], {"city": "Rome"}) == "Sunny, 22 °C in Rome"


# --------------------------------------------------------------------------- identity


async def test_ids_are_not_sent_unless_mapped(connect: Connect) -> None:
    """A server argument named user_id / chat_id is hidden from the model and never sent;
    one the model sends anyway is dropped."""
    with structlog.testing.capture_logs() as logs:
        record = (await _tools(connect()))["record"]
    assert record.parameters["properties"] == {
        "note": {"default": "", "title": "Note", "type": "string"}
    }
    prepared = record.prepare({"user_id": "evil", "chat_id": "evil", "note": "hi"})
    assert prepared.ignored == ("user_id", "chat_id")
    assert await record.invoke(prepared, CONTEXT) == (
        '{"user_id": null, "chat_id": null, "note": "hi"}'
    )
    assert [(e["event"], e["names"]) for e in logs if e.get("tool") == "record"] == [
        ("mcp_identity_argument_dropped", ["chat_id", "user_id"])
    ]


async def test_mapped_ids_are_filled_from_the_context(connect: Connect) -> None:
    """``inject`` fills the server's arguments from the ToolContext; the model neither sees
    nor sets them; a None field is left out."""
    server = connect(inject={"user": "user_id", "chat": "chat_id", "user_id": "user_id"})
    tools = await _tools(server)
    whoami, record = tools["whoami"], tools["record"]
    assert set(whoami.parameters["properties"]) == {"note"}
    prepared = whoami.prepare({"user": "evil", "note": "hi"})
    assert prepared.ignored == ("user",)
    assert await whoami.invoke(prepared, CONTEXT) == (
        '{"user": "user-1", "chat": "chat-1", "note": "hi"}'
    )
    anonymous = ToolContext(chat_id="chat-2", user_id=None, agent_name="tester", turn=1)
    assert await _invoke(whoami, {}, anonymous) == '{"user": null, "chat": "chat-2", "note": ""}'
    assert await _invoke(record, {}) == '{"user_id": "user-1", "chat_id": null, "note": ""}'


# --------------------------------------------------------------------------- lifecycle


async def test_start_is_idempotent_and_close_ends_the_process(stdio: Connect) -> None:
    """start() twice keeps one process; aclose() ends it; listed tools then fail."""
    server = stdio()
    await server.start()
    await server.start()
    tools = await _tools(server)
    pid = await _pid(tools)
    assert await _pid(await _tools(server)) == pid
    await server.aclose()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(MCPServerError, match="is not running"):
        await _invoke(tools["get_weather"], {"city": "Oslo"})
    await server.aclose()  # again: nothing to do


async def test_closing_fails_the_calls_still_running(connect: Connect) -> None:
    """aclose() does not wait for calls: one still running fails with MCPServerError."""
    server = connect()
    tools = await _tools(server)
    key = uuid.uuid4().hex
    running = asyncio.create_task(_invoke(tools["slow"], {"key": key}))
    await _invoke(tools["wait_started"], {"key": key})
    await server.aclose()
    with pytest.raises(MCPServerError, match="was closed during the call to 'slow'"):
        await running


async def test_a_closed_server_starts_again_when_started(connect: Connect) -> None:
    """After aclose(), start() (or list_tools) connects anew and the old tools work again."""
    server = connect()
    tools = await _tools(server)
    await server.aclose()
    async with server as started:
        assert started is server
        assert await _invoke(tools["get_weather"], {"city": "Oslo"}) == "Sunny, 22 °C in Oslo"
    with pytest.raises(MCPServerError):
        await _invoke(tools["get_weather"], {"city": "Oslo"})


async def test_a_crashed_server_is_reconnected_by_the_next_call(stdio: Connect) -> None:
    """The call that meets a dead connection fails; the next one starts the server again."""
    server = stdio()
    tools = await _tools(server)
    pid = await _pid(tools)
    with pytest.raises(MCPServerError, match="lost its connection during the call to 'crash'"):
        await _invoke(tools["crash"], {})
    assert await _invoke(tools["get_weather"], {"city": "Oslo"}) == "Sunny, 22 °C in Oslo"
    assert await _pid(tools) != pid


async def test_a_server_that_cannot_start_raises_MCPServerError(http_url: str) -> None:
    """A missing command or an unreachable URL is an MCPServerError saying why."""
    missing = MCPServer.stdio("/nonexistent/agentfsm-mcp-server")
    with pytest.raises(MCPServerError, match="could not start: FileNotFoundError"):
        await missing.list_tools()
    await missing.aclose()
    unreachable = MCPServer.http(http_url.replace("/mcp", "/not-mcp"))
    with pytest.raises(MCPServerError, match="could not start"):
        await unreachable.start()
    await unreachable.aclose()


async def test_a_start_cut_short_leaves_nothing_behind() -> None:
    """A start() cancelled during the handshake (here by a timeout, against a process that
    never answers) leaves no runner task and no process once aclose() returns."""
    silent = MCPServer.stdio(sys.executable, ["-c", "import sys; sys.stdin.read()"])
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(silent.start(), 0.2)
    await silent.aclose()
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("agentfsm-mcp-")] == []


async def test_http_headers_reach_the_server(http_url: str) -> None:
    """``headers=`` are sent with every HTTP request."""
    async with MCPServer.http(http_url, headers={"X-Test-Token": "s3cret"}) as server:
        header = (await _tools(server))["header"]
        assert await _invoke(header, {"name": "X-Test-Token"}) == "s3cret"


async def _pid(tools: Mapping[str, Tool]) -> int:
    """The server process's id, as the process reports it."""
    return int(await _invoke(tools["pid"], {}))


# --------------------------------------------------------------------------- with an agent


def _agent(server: ScriptedOpenAIServer, **kwargs: Any) -> AsyncOpenAISimpleAgent:
    return AsyncOpenAISimpleAgent(
        model="scripted-model", api_key="test-key", base_url=server.base_url, **kwargs
    )


async def test_agent_runs_listed_mcp_tools(connect: Connect) -> None:
    """Listed MCP tools work in an agent like any tool: the executor validates, injects and
    calls; an MCP error result is an error result the model reads."""
    mcp_server = connect(inject={"user": "user_id"})
    script: list[Reply] = [
        tool_calls(
            call("get_weather", {"city": "Tokyo"}),
            call("whoami", {"note": "hi"}),
            call("fail", {"reason": "no"}),
        ),
        text("Sunny in Tokyo."),
    ]
    tools = list(await mcp_server.list_tools())
    async with (
        ScriptedOpenAIServer(script) as scripted,
        _agent(scripted, tool_registry=tools) as agent,
    ):
        response = await agent.send_message("weather?", user_id="user-1", chat_id="chat-1")
    assert response.output == "Sunny in Tokyo."
    assert response.history[2:5] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 22 °C in Tokyo"},
        {
            "role": "tool",
            "tool_call_id": "call_2",
            "content": '{"user": "user-1", "chat": null, "note": "hi"}',
        },
        {
            "role": "tool",
            "tool_call_id": "call_3",
            "content": "Error: MCPToolError: Error executing tool fail: no",
        },
    ]


async def test_stop_cancels_an_in_flight_mcp_call(connect: Connect) -> None:
    """agent.request_stop() during an MCP call cancels it on the server; the chat and the
    session both go on."""
    mcp_server = connect()
    tools = await _tools(mcp_server)
    key = uuid.uuid4().hex
    script: list[Reply] = [
        tool_calls(call("slow", {"key": key})),
        tool_calls(call("get_weather", {"city": "Oslo"})),
        text("Sunny in Oslo."),
    ]
    async with (
        ScriptedOpenAIServer(script) as scripted,
        _agent(scripted, tool_registry=list(tools.values())) as agent,
    ):

        async def stop_button() -> None:
            await _invoke(tools["wait_started"], {"key": key})
            agent.request_stop("chat-1")

        response, _ = await asyncio.gather(
            agent.send_message("go", chat_id="chat-1"), stop_button()
        )
        assert response.stop_reason is StopReason.USER_STOP
        assert response.history[-1] == {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": CANCELLED,
        }
        assert await _invoke(tools["wait_cancelled"], {"key": key}) == "cancelled"
        response = await agent.send_message("and Oslo?", conversation=response.conversation)
    assert response.output == "Sunny in Oslo."
    assert response.history[-2]["content"] == "Sunny, 22 °C in Oslo"


async def test_agent_takes_an_mcp_server_in_its_tool_registry(connect: Connect) -> None:
    """``tool_registry=[server]``: each run lists the server's tools (cached, so a refresh
    shows in the next run), calls them with the run's ids, and closing the agent closes the
    server. Skipped until agents accept an MCPServer (issue 12)."""
    mcp_server = connect(name="wx", inject={"user": "user_id"})
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    script: list[Reply] = [
        tool_calls(call("wx_get_weather", {"city": "Tokyo"}), call("wx_whoami", {})),
        text("Sunny in Tokyo."),
        tool_calls(call(f"wx_{name}", {})),
        text("Done."),
    ]
    async with ScriptedOpenAIServer(script) as scripted:
        try:
            agent = _agent(scripted, tool_registry=[mcp_server])
        except ToolDefinitionError as exc:
            if "MCPServer" not in str(exc):
                raise
            pytest.skip("agents do not take an MCPServer in tool_registry yet (issue 12)")
        async with agent:
            response = await agent.send_message("weather?", user_id="user-1", chat_id="chat-1")
            assert response.output == "Sunny in Tokyo."
            assert [m["content"] for m in response.history[2:4]] == [
                "Sunny, 22 °C in Tokyo",
                '{"user": "user-1", "chat": null, "note": ""}',
            ]
            listed = {t["function"]["name"]: t for t in scripted.requests[0].tools}
            assert (
                listed["wx_get_weather"] == (await _tools(mcp_server))["wx_get_weather"].to_openai()
            )
            tools = await _tools(mcp_server)
            await _invoke(tools["wx_add_tool"], {"name": name})
            await mcp_server.refresh()
            response = await agent.send_message("more", conversation=response.conversation)
            assert response.history[-2]["content"] == f"I am {name}"
        with pytest.raises(MCPServerError, match="is not running"):
            await _invoke(tools["wx_get_weather"], {"city": "Oslo"})
