"""OpenTelemetry spans (``agentfsm.otel.Tracing``), read back from the SDK's in-memory
exporter after real runs against the scripted server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agentfsm import AsyncOpenAIStreamingAgent, ConfigurationError, StopReason, tool
from agentfsm.otel import Tracing
from agentfsm.testing import ScriptedOpenAIServer, call, fault, text, tool_calls

from .conftest import AgentFactory

ROOT = Path(__file__).resolve().parents[1]
PRICES = {"input_per_million": 1.0, "output_per_million": 2.0}


class Traces:
    """A tracer provider exporting to memory, and ways to read what it got."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracing = Tracing(tracer_provider=self.provider)
        self.tracer = self.provider.get_tracer("tests")

    @property
    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they started."""
        return sorted(self.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)

    def tree(self) -> list[tuple[str, str | None]]:
        """Every span as (name, its parent's name), in start order."""
        names = {s.context.span_id: s.name for s in self.spans if s.context is not None}
        return [(s.name, names.get(s.parent.span_id) if s.parent else None) for s in self.spans]

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]


@pytest.fixture
def traces() -> Iterator[Traces]:
    found = Traces()
    yield found
    found.provider.shutdown()


@tool
def get_weather(city: str, user_id: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}"


async def test_a_run_nests_under_the_callers_span_with_genai_attributes(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, traces: Traces
) -> None:
    """A tool call then an answer: the run under the caller's span, one span per transition,
    model request and tool call, with the GenAI attributes, usage, cost and identity."""
    server.add(tool_calls(call("get_weather", {"city": "Oslo"}, id="call_1")), text("Sunny."))
    agent = make_agent(
        tool_registry=[get_weather],
        agent_name="weather",
        agent_description="Tells the weather",
        pricing=PRICES,
        temperature=0.5,
        tracing=traces.tracing,
    )
    with traces.tracer.start_as_current_span("caller"):
        response = await agent.send_message("weather?", user_id="u1", chat_id="c1")

    assert traces.tree() == [
        ("caller", None),
        ("invoke_agent weather", "caller"),
        ("trimming_context", "invoke_agent weather"),
        ("awaiting_model", "invoke_agent weather"),
        ("chat scripted-model", "awaiting_model"),
        ("executing_tools", "invoke_agent weather"),
        ("execute_tool get_weather", "executing_tools"),
        ("trimming_context", "invoke_agent weather"),
        ("awaiting_model", "invoke_agent weather"),
        ("chat scripted-model", "awaiting_model"),
    ]
    assert len({s.context.trace_id for s in traces.spans if s.context is not None}) == 1
    assert all(s.status.status_code is StatusCode.UNSET for s in traces.spans)
    identity = {
        "gen_ai.conversation.id": "c1",
        "agentfsm.chat_id": "c1",
        "agentfsm.user_id": "u1",
        "gen_ai.agent.name": "weather",
    }
    (run,) = traces.named("invoke_agent weather")
    usage = response.usage
    assert dict(run.attributes or {}) == {
        **identity,
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": "openai",
        "gen_ai.agent.description": "Tells the weather",
        "gen_ai.request.model": "scripted-model",
        "agentfsm.operation": "run",
        "agentfsm.phase": "done",
        "agentfsm.turns": 2,
        "agentfsm.stop_reason": "response",
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
        "agentfsm.cost": float(response.cost),
    }
    port = urlsplit(server.base_url).port
    requests = traces.named("chat scripted-model")
    assert [dict(s.attributes or {}) for s in requests] == [
        {
            **identity,
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "scripted-model",
            "gen_ai.request.temperature": 0.5,
            "server.address": "127.0.0.1",
            "server.port": port,
            "gen_ai.response.model": "scripted-model",
            "gen_ai.response.finish_reasons": (record.finish_reason,),
            "gen_ai.usage.input_tokens": record.usage.prompt_tokens,
            "gen_ai.usage.output_tokens": record.usage.completion_tokens,
            "agentfsm.cost": float(record.cost),
        }
        for record in response.requests
    ]
    assert [r.finish_reason for r in response.requests] == ["tool_calls", "stop"]
    (tool_span,) = traces.named("execute_tool get_weather")
    assert dict(tool_span.attributes or {}) == {
        **identity,
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.call.id": "call_1",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.description": "Current weather for a city.",
    }
    transitions = [
        (
            s.name,
            (s.attributes or {})["agentfsm.phase.to"],
            (s.attributes or {})["agentfsm.transition.reason"],
        )
        for s in traces.spans
        if "agentfsm.phase.from" in (s.attributes or {})
    ]
    assert transitions == [
        ("trimming_context", "awaiting_model", "context_ready"),
        ("awaiting_model", "executing_tools", "tool_calls_requested"),
        ("executing_tools", "trimming_context", "tools_finished"),
        ("trimming_context", "awaiting_model", "context_ready"),
        ("awaiting_model", "done", "final_answer"),
    ]


async def test_what_a_tool_starts_nests_under_its_tool_call(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, traces: Traces
) -> None:
    """Spans a tool starts — in an async tool, in a sync tool's thread — and a sub-agent's
    whole run started inside a tool nest under that tool call's span."""
    child = make_agent(agent_name="child", tracing=traces.tracing)

    @tool
    async def ask_child(question: str) -> str:
        """Asks the child agent."""
        with traces.tracer.start_as_current_span("inside ask_child"):
            pass
        answer = await child.send_message(question, chat_id="child-chat")
        return answer.output

    @tool
    def sync_work() -> str:
        """Works in a thread."""
        with traces.tracer.start_as_current_span("inside sync_work"):
            return threading.current_thread().name

    server.add(
        tool_calls(
            call("ask_child", {"question": "2+2?"}, id="a1"), call("sync_work", {}, id="s1")
        ),
        text("4"),
        text("The child says 4."),
    )
    parent = make_agent(
        tool_registry=[ask_child, sync_work], agent_name="parent", tracing=traces.tracing
    )
    response = await parent.send_message("ask", chat_id="parent-chat")
    assert response.output == "The child says 4."

    tree = traces.tree()
    assert ("inside ask_child", "execute_tool ask_child") in tree
    assert ("invoke_agent child", "execute_tool ask_child") in tree
    assert ("inside sync_work", "execute_tool sync_work") in tree
    assert [(n, p) for n, p in tree if p == "invoke_agent child"] == [
        ("trimming_context", "invoke_agent child"),
        ("awaiting_model", "invoke_agent child"),
    ]
    assert len({s.context.trace_id for s in traces.spans if s.context is not None}) == 1
    (child_run,) = traces.named("invoke_agent child")
    assert (child_run.attributes or {})["agentfsm.chat_id"] == "child-chat"


async def test_an_agent_as_a_tool_runs_under_its_tool_call(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, traces: Traces
) -> None:
    """``child.as_tool()``: the child's whole run is a span under the parent's tool call,
    with the child chat's id."""
    child = make_agent(agent_name="child", tracing=traces.tracing)
    parent = make_agent(
        agent_name="parent", tool_registry=[child.as_tool()], tracing=traces.tracing
    )
    server.add(tool_calls(call("child", {"input": "2+2?"}, id="k1")), text("4"), text("done"))
    response = await parent.send_message("ask", chat_id="p")
    assert response.output == "done"
    assert traces.tree()[5:10] == [
        ("execute_tool child", "executing_tools"),
        ("invoke_agent child", "execute_tool child"),
        ("trimming_context", "invoke_agent child"),
        ("awaiting_model", "invoke_agent child"),
        ("chat scripted-model", "awaiting_model"),
    ]
    (child_run,) = traces.named("invoke_agent child")
    assert (child_run.attributes or {})["agentfsm.chat_id"] == "p/k1"


async def test_a_user_stop_is_not_an_error(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, traces: Traces
) -> None:
    """A run stopped by ``request_stop`` mid-tool: the tool span ends cancelled, the run
    span says ``user_stop``; no span is marked failed."""
    started = asyncio.Event()

    @tool
    async def wait_forever() -> str:
        """Never answers."""
        started.set()
        await asyncio.Event().wait()
        return "never"

    server.add(tool_calls(call("wait_forever", {}, id="w1")))
    agent = make_agent(tool_registry=[wait_forever], tracing=traces.tracing)
    run = asyncio.create_task(agent.send_message("go", chat_id="c1"))
    await started.wait()
    agent.request_stop("c1")
    response = await run
    assert response.stop_reason is StopReason.USER_STOP

    assert [s.status.status_code for s in traces.spans] == [StatusCode.UNSET] * len(traces.spans)
    (tool_span,) = traces.named("execute_tool wait_forever")
    assert (tool_span.attributes or {})["agentfsm.cancelled"] is True
    (run_span,) = traces.named("invoke_agent agent")
    assert (run_span.attributes or {})["agentfsm.stop_reason"] == "user_stop"
    (executing,) = traces.named("executing_tools")
    assert (executing.attributes or {})["agentfsm.phase.to"] == "stopped"
    assert (executing.attributes or {})["agentfsm.stop_reason"] == "user_stop"


async def test_a_failing_request_marks_its_spans_failed(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, traces: Traces
) -> None:
    """Each failed attempt is an ERROR span with the HTTP status as ``error.type`` and the
    exception recorded; the run that ends in ``error`` is an ERROR span too."""

    async def no_wait(seconds: float) -> None:
        pass

    server.add(fault.server_error(500), fault.server_error(503))
    agent = make_agent(
        retry_strategy={"server_error": {"max_retries": 1}},
        sleep=no_wait,
        tracing=traces.tracing,
    )
    response = await agent.send_message("hi", chat_id="c1")
    assert response.stop_reason is StopReason.ERROR

    attempts = traces.named("chat scripted-model")
    assert [
        (s.status.status_code, (s.attributes or {})["error.type"], [e.name for e in s.events])
        for s in attempts
    ] == [
        (StatusCode.ERROR, "500", ["exception"]),
        (StatusCode.ERROR, "503", ["exception"]),
    ]
    (run,) = traces.named("invoke_agent agent")
    assert run.status.status_code is StatusCode.ERROR
    assert (run.attributes or {})["error.type"] == "503"
    assert (run.attributes or {})["agentfsm.stop_reason"] == "error"
    (awaiting,) = traces.named("awaiting_model")
    assert awaiting.status.status_code is StatusCode.ERROR


async def test_each_step_call_is_a_span_of_its_own(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, traces: Traces
) -> None:
    """Driving a run with ``step()`` gives one ``invoke_agent`` span per call (operation
    ``step``), each holding its one transition."""
    server.add(text("hello"))
    agent = make_agent(tracing=traces.tracing)
    conversation = agent.start("hi", chat_id="c1")
    with traces.tracer.start_as_current_span("request 1"):
        conversation = await agent.step(conversation)
    with traces.tracer.start_as_current_span("request 2"):
        conversation = await agent.step(conversation)
    assert conversation.stop_reason is StopReason.RESPONSE
    assert traces.tree() == [
        ("request 1", None),
        ("invoke_agent agent", "request 1"),
        ("trimming_context", "invoke_agent agent"),
        ("request 2", None),
        ("invoke_agent agent", "request 2"),
        ("awaiting_model", "invoke_agent agent"),
        ("chat scripted-model", "awaiting_model"),
    ]
    first, second = traces.named("invoke_agent agent")
    assert [(s.attributes or {})["agentfsm.operation"] for s in (first, second)] == [
        "step",
        "step",
    ]
    assert "agentfsm.stop_reason" not in (first.attributes or {})
    assert (second.attributes or {})["agentfsm.stop_reason"] == "response"


async def test_a_streamed_run_nests_under_the_consumers_span(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, traces: Traces
) -> None:
    """``stream_message`` runs in a task of its own; its run still nests under the span
    current where the stream is consumed."""
    server.add(text("streamed answer"))
    agent = make_agent(AsyncOpenAIStreamingAgent, tracing=traces.tracing)
    with traces.tracer.start_as_current_span("consumer"):
        events = [e async for e in agent.stream_message("hi", chat_id="c1")]
    assert events
    assert ("invoke_agent agent", "consumer") in traces.tree()
    (request,) = traces.named("chat scripted-model")
    assert (request.attributes or {})["gen_ai.response.finish_reasons"] == ("stop",)


async def test_the_global_tracer_provider_is_the_default(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``Tracing()`` without a provider uses the global one (a no-op until the application
    sets one): runs work and nothing is recorded anywhere."""
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    server.add(text("hello"))
    response = await make_agent(tracing=Tracing()).send_message("hi")
    assert response.output == "hello"


def test_tracing_must_be_a_tracing_object() -> None:
    """Anything but a ``Tracing`` (something with ``bind``) is refused when the agent is
    built."""
    from agentfsm import AsyncOpenAISimpleAgent

    with pytest.raises(ConfigurationError, match=r"tracing must be agentfsm\.otel\.Tracing"):
        AsyncOpenAISimpleAgent(model="m", api_key="k", tracing=object())


def test_the_otel_module_exports_tracing_only() -> None:
    """``agentfsm.otel``'s public surface is ``Tracing``."""
    import agentfsm.otel

    assert agentfsm.otel.__all__ == ["Tracing"]


def test_opentelemetry_is_not_imported_without_the_extra() -> None:
    """``import agentfsm`` and building an agent import no OpenTelemetry module."""
    code = (
        "import sys; import agentfsm; "
        "agentfsm.AsyncOpenAISimpleAgent(model='m', api_key='k'); "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.stdout.strip() == "[]", done.stderr
