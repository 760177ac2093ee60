"""Agents as tools: a child run per call, its answer as the result, its spend in the parent's
totals and budget, its events in the parent's hooks, a parent stop that stops it, and a
crashed parent that picks the child up instead of starting it again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from agentfsm import (
    Event,
    Phase,
    StopReason,
    ToolContext,
    TransitionEvent,
    Usage,
    child_chat_id,
    load_children,
    tool,
)
from agentfsm.store import SQLiteStore
from agentfsm.testing import (
    RecordedRequest,
    Reply,
    ScriptedOpenAIServer,
    call,
    fault,
    text,
    tool_calls,
)
from agentfsm.viz import run_mermaid

from .conftest import AgentFactory

ROOT = Path(__file__).resolve().parents[1]
PRICES = {"input_per_million": 1000, "output_per_million": 1000}  # $0.001 a token


@pytest.fixture
async def child_server() -> AsyncIterator[ScriptedOpenAIServer]:
    """The sub-agent's own model server (so each agent's script is its own)."""
    async with ScriptedOpenAIServer([]) as srv:
        yield srv


def researcher(make_agent: AgentFactory, child_server: ScriptedOpenAIServer, **kw: Any) -> Any:
    options: dict[str, Any] = {
        "agent_name": "researcher",
        "system_prompt": "Finds facts about cities.\nAnswer in one line.",
        "base_url": child_server.base_url,
    }
    options.update(kw)
    return make_agent(**options)


async def test_a_child_run_answers_the_tool_call(
    server: ScriptedOpenAIServer, child_server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """The model's ``input`` is the child's user message, its answer the tool's result; the
    child is its own chat, derived from the parent's chat and the call id, of the same user."""
    server.add(
        tool_calls(call("researcher", {"input": "population of Oslo?"}, id="call_1")),
        text("Oslo has about 700,000 people."),
    )
    child_server.add(text("About 700,000."))
    child_store = SQLiteStore(":memory:")
    child = researcher(make_agent, child_server, store=child_store)
    tool_ = child.as_tool()
    assert (tool_.name, tool_.description) == ("researcher", "Finds facts about cities.")
    assert list(tool_.parameters["properties"]) == ["input"]
    parent = make_agent(tool_registry=[tool_])

    response = await parent.send_message("how many people in Oslo?", chat_id="p1", user_id="u1")

    assert response.output == "Oslo has about 700,000 people."
    results = [m for m in response.conversation.messages if m.role == "tool"]
    assert [(r.content, r.is_error) for r in results] == [("About 700,000.", False)]
    asked = child_server.requests[0].messages
    assert asked[-1] == {"role": "user", "content": "population of Oslo?"}
    stored = await child_store.load("p1/call_1")
    assert stored is not None
    assert child_chat_id("p1", "call_1") == "p1/call_1"
    assert (stored.user_id, stored.phase, stored.agent_name) == ("u1", Phase.DONE, "researcher")
    await child_store.aclose()


async def test_the_childs_usage_and_cost_roll_up_into_the_parents(
    server: ScriptedOpenAIServer, child_server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Two child requests (a tool round inside the child) count in the parent's usage and
    cost, next to the parent's own two requests."""

    @tool
    def lookup(city: str) -> str:
        """Looks a city up."""
        return f"{city}: 700,000"

    server.add(tool_calls(call("researcher", {"input": "Oslo?"})), text("700k."))
    child_server.add(tool_calls(call("lookup", {"city": "Oslo"})), text("About 700,000."))
    child = researcher(make_agent, child_server, tool_registry=[lookup], pricing=PRICES)
    parent = make_agent(tool_registry=[child.as_tool()], pricing=PRICES)

    response = await parent.send_message("Oslo?", chat_id="p2")

    own = sum((r.usage for r in response.conversation.requests), Usage())
    own_cost = sum((r.cost for r in response.conversation.requests), Decimal(0))
    assert len(child_server.requests) == 2
    assert response.usage.requests == own.requests + 2 == 4
    assert response.usage.total_tokens > own.total_tokens
    assert response.cost > own_cost > 0
    # exactly the child's figures: each token is $0.001 on both agents
    extra_tokens = response.usage.total_tokens - own.total_tokens
    assert response.cost - own_cost == Decimal(extra_tokens) / 1000


async def test_a_parent_budget_cuts_the_child(
    server: ScriptedOpenAIServer, child_server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """The child gets what the parent has left: its loop stops ``budget_exceeded``, the parent's
    model reads that as an error result, and the parent, over budget, stops too."""

    @tool
    def lookup(city: str) -> str:
        """Looks a city up."""
        return "try again"

    server.add(tool_calls(call("researcher", {"input": "Oslo?"})), text("never sent"))
    child_server.add(*[tool_calls(call("lookup", {"city": "Oslo"})) for _ in range(20)])
    child = researcher(
        make_agent, child_server, tool_registry=[lookup], pricing=PRICES, max_turns=20
    )
    parent = make_agent(
        tool_registry=[child.as_tool()],
        pricing=PRICES,
        budget_control={"max_budget_for_this_chat": "0.5"},
    )

    response = await parent.send_message("Oslo?", chat_id="p3")

    result = next(m for m in response.conversation.messages if m.role == "tool")
    assert result.is_error
    assert "budget_exceeded" in result.content
    assert response.stop_reason is StopReason.BUDGET_EXCEEDED
    assert response.cost >= Decimal("0.5")
    assert 1 < len(child_server.requests) < 20
    assert len(server.requests) == 1


async def test_child_events_reach_the_parents_hooks_with_parent_and_depth(
    server: ScriptedOpenAIServer, child_server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Three levels: the grandchild's transitions reach the top agent's hooks, each event
    saying whose run it is, who called it and how deep it is."""
    async with ScriptedOpenAIServer([]) as grand_server:
        grand_server.add(text("fact"))
        child_server.add(tool_calls(call("checker", {"input": "check"}, id="c2")), text("ok"))
        server.add(tool_calls(call("researcher", {"input": "go"}, id="c1")), text("done"))
        seen: list[Event] = []
        grandchild = make_agent(agent_name="checker", base_url=grand_server.base_url)
        child = researcher(make_agent, child_server, tool_registry=[grandchild.as_tool()])
        parent = make_agent(
            agent_name="top", tool_registry=[child.as_tool()], hooks={"on_transition": seen.append}
        )

        response = await parent.send_message("go", chat_id="top")

    assert response.output == "done"
    by_chat = {(e.chat_id, e.parent_chat_id, e.depth, e.agent_name) for e in seen}
    assert by_chat == {
        ("top", None, 0, "top"),
        ("top/c1", "top", 1, "researcher"),
        ("top/c1/c2", "top/c1", 2, "checker"),
    }
    done = [e for e in seen if isinstance(e, TransitionEvent) and e.to_phase is Phase.DONE]
    assert [e.chat_id for e in done] == ["top/c1/c2", "top/c1", "top"]


async def test_a_parent_stop_stops_the_child_at_once_and_saves_it(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A stop while the child's request is at its model: the parent stops ``user_stop`` at
    once, the child's chat is saved stopped and can continue, and so can the parent."""
    arrived = asyncio.Event()

    def child_model(request: RecordedRequest) -> Reply:
        if not arrived.is_set():  # the first request hangs until the stop cuts it
            arrived.set()
            return fault.hang()
        return text("Oslo: 700k")

    server.add(tool_calls(call("researcher", {"input": "Oslo?"}, id="c1")))
    store = SQLiteStore(":memory:")
    async with ScriptedOpenAIServer(child_model) as child_server:
        child = researcher(make_agent, child_server, store=store)
        parent = make_agent(tool_registry=[child.as_tool()], store=store)

        run = asyncio.create_task(parent.send_message("Oslo?", chat_id="p4", user_id="u"))
        await asyncio.wait_for(arrived.wait(), timeout=10)
        parent.request_stop("p4")
        response = await asyncio.wait_for(run, timeout=10)

        assert response.stop_reason is StopReason.USER_STOP
        saved_child = await store.load("p4/c1")
        assert saved_child is not None
        assert (saved_child.phase, saved_child.stop_reason) == (
            Phase.STOPPED,
            StopReason.USER_STOP,
        )
        server.add(text("Here again."))
        again = await parent.send_message("still there?", chat_id="p4", user_id="u")
        assert again.output == "Here again."
        resumed_child = await child.send_message("Oslo again?", chat_id="p4/c1", user_id="u")
        assert resumed_child.output == "Oslo: 700k"
    await store.aclose()


async def test_a_typed_child_returns_its_output_as_json(
    server: ScriptedOpenAIServer, child_server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``input_type`` shapes the tool's argument (sent to the child as JSON) and
    ``output_type`` the child's answer (returned to the parent as JSON)."""

    class Query(BaseModel):
        city: str
        metric: str

    class Fact(BaseModel):
        city: str
        value: int

    server.add(
        tool_calls(call("facts", {"input": {"city": "Oslo", "metric": "population"}})),
        text("done"),
    )
    child_server.add(text('{"city": "Oslo", "value": 709000}'))
    child = researcher(make_agent, child_server)
    tool_ = child.as_tool("facts", "Looks up a fact.", input_type=Query, output_type=Fact)
    assert tool_.parameters["properties"]["input"]["properties"].keys() == {"city", "metric"}
    parent = make_agent(tool_registry=[tool_])

    response = await parent.send_message("Oslo population?")

    sent = child_server.requests[0].messages[-1]["content"]
    assert sent == '{"city": "Oslo", "metric": "population"}'
    assert child_server.requests[0].body["response_format"]["json_schema"]["name"] == "Fact"
    result = next(m for m in response.conversation.messages if m.role == "tool")
    assert result.content == '{"city": "Oslo", "value": 709000}'


async def test_a_child_that_finished_before_a_crash_is_not_run_again(
    server: ScriptedOpenAIServer, child_server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """The parent saved ``executing_tools``, the child finished, and the parent's worker died
    before saving the result: the resumed parent takes the child's stored answer, with no new
    request to the child's model."""
    store = SQLiteStore(":memory:")
    server.add(tool_calls(call("researcher", {"input": "Oslo?"}, id="c1")), text("Done."))
    child_server.add(text("About 700,000."))
    child = researcher(make_agent, child_server, store=store)
    parent = make_agent(tool_registry=[child.as_tool()], store=store)
    conv = parent.start("Oslo?", chat_id="p5", user_id="u")
    await store.save(conv, None)
    while conv.phase is not Phase.EXECUTING_TOOLS:
        conv = await parent.step(conv)
    # What the crashed worker's tool call got as far as: the child's whole run.
    await child.send_message("Oslo?", chat_id="p5/c1", user_id="u")
    assert len(child_server.requests) == 1

    final = await parent.resume("p5")

    assert final.stop_reason is StopReason.RESPONSE
    assert len(child_server.requests) == 1
    result = next(m for m in final.messages if m.role == "tool")
    assert result.content == "About 700,000."
    await store.aclose()


CRASHING_PARENT = textwrap.dedent(
    """
    import asyncio, sys
    from agentfsm import AsyncOpenAISimpleAgent, tool
    from agentfsm.store import SQLiteStore

    @tool
    async def lookup(city: str) -> str:
        \"\"\"Looks a city up.\"\"\"
        print("CHILD_TOOL_STARTED", flush=True)
        await asyncio.sleep(3600)
        return "never"

    async def main() -> None:
        store = SQLiteStore(sys.argv[3])
        child = AsyncOpenAISimpleAgent(
            agent_name="researcher", model="m", api_key="k", base_url=sys.argv[2],
            tool_registry=[lookup], store=store,
        )
        parent = AsyncOpenAISimpleAgent(
            model="m", api_key="k", base_url=sys.argv[1],
            tool_registry=[child.as_tool()], store=store,
        )
        await parent.send_message("Oslo?", user_id="u1", chat_id="trip")

    asyncio.run(main())
    """
)


async def test_a_crashed_parent_resumes_its_child_instead_of_restarting_it(
    server: ScriptedOpenAIServer,
    child_server: ScriptedOpenAIServer,
    make_agent: AgentFactory,
    tmp_path: Path,
) -> None:
    """SIGKILL while the child runs its own tool; another process resumes the parent, which
    resumes the child from its checkpoint: one user message in the child, its first request
    not repeated, and the parent's answer built on the child's."""
    server.add(tool_calls(call("researcher", {"input": "Oslo?"}, id="c1")), text("Parent done."))
    child_server.add(tool_calls(call("lookup", {"city": "Oslo"}, id="l1")), text("700,000."))
    db = tmp_path / "chats.db"
    script = tmp_path / "worker.py"
    script.write_text(CRASHING_PARENT)
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        server.base_url,
        child_server.base_url,
        str(db),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert worker.stdout is not None
    line = await asyncio.wait_for(worker.stdout.readline(), timeout=30)
    assert line.strip() == b"CHILD_TOOL_STARTED"
    worker.send_signal(signal.SIGKILL)
    await worker.wait()

    @tool
    def lookup(city: str) -> str:
        """Looks a city up."""
        return f"{city}: 700,000"

    async with SQLiteStore(db) as store:
        crashed_child = await store.load("trip/c1")
        assert crashed_child is not None
        assert crashed_child.phase is Phase.EXECUTING_TOOLS
        child = researcher(make_agent, child_server, tool_registry=[lookup], store=store)
        parent = make_agent(tool_registry=[child.as_tool()], store=store)
        final = await parent.resume("trip", user_id="u1")
        child_final = await store.load("trip/c1")
        children = await load_children(store, final)

    assert final.stop_reason is StopReason.RESPONSE
    assert final.messages[-1].content == "Parent done."
    assert child_final is not None
    assert [(m.role, m.content) for m in child_final.messages] == [
        ("user", "Oslo?"),
        ("assistant", None),
        ("tool", "Oslo: 700,000"),
        ("assistant", "700,000."),
    ]
    assert len(child_server.requests) == 2  # the first request was not repeated
    assert list(children) == ["trip/c1"]
    drawn = run_mermaid(final, children)
    assert 'subgraph nc1_box["researcher · c1"]' in drawn
    assert "nc1_0" in drawn
    assert "-.-> nc1_0" in drawn


async def test_charge_counts_a_tools_own_spend(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Any tool can report what it spent (a paid API, its own model call) through
    ``ToolContext.charge``; a bad figure is refused with a typed error the model reads."""

    @tool
    def paid(context: ToolContext) -> str:
        """Calls a paid API."""
        context.charge(Usage(total_tokens=10, requests=1), "0.25")
        return "ok"

    @tool
    def broken(context: ToolContext) -> str:
        """Reports nonsense."""
        context.charge(cost=-1)
        return "unreachable"

    server.add(
        tool_calls(call("paid", {}), call("broken", {})),
        text("done"),
    )
    agent = make_agent(tool_registry=[paid, broken], pricing=PRICES)
    response = await agent.send_message("go")
    own_cost = sum((r.cost for r in response.conversation.requests), Decimal(0))
    assert response.cost == own_cost + Decimal("0.25")
    assert response.usage.requests == 3
    results = {m.tool_name: m for m in response.conversation.messages if m.role == "tool"}
    assert results["broken"].is_error
    assert "InvalidInputError" in results["broken"].content
