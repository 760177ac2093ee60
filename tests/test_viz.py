"""The machine and one conversation's run, drawn and tabulated from the code and the state."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from agentfsm import AsyncOpenAISimpleAgent, Guard, Phase, StopReason, loop_breaker, tool
from agentfsm.machine import EDGES, GUARDS, NEW_RUN, GuardTripped
from agentfsm.testing import FakeClock, ScriptedOpenAIServer, call, fault, text, tool_calls
from agentfsm.viz import (
    machine_dot,
    machine_json,
    machine_mermaid,
    run_mermaid,
    run_timeline,
    snapshot,
)

from .conftest import AgentFactory

SNAPSHOT = Path(__file__).with_name("snapshots") / "machine.mmd"


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}"


@tool
def get_time(city: str) -> str:
    """Local time in a city."""
    return f"12:00 in {city}"


def _agent(**kwargs: Any) -> AsyncOpenAISimpleAgent:
    """An agent for drawing only: it never sends a request."""
    options: dict[str, Any] = {
        "model": "m",
        "api_key": "k",
        "base_url": "http://127.0.0.1:9/v1",
        "context_handling_method": "simple",
    }
    options.update(kwargs)
    return AsyncOpenAISimpleAgent(**options)


def _impossible(agent: AsyncOpenAISimpleAgent | None) -> set[tuple[str, str, str, str]]:
    return {
        (e["from"], e["to"], e["label"], e["impossible_because"])
        for e in machine_json(agent)["edges"]
        if not e["possible"]
    }


# --------------------------------------------------------------------------- the machine


def test_machine_mermaid_matches_the_pinned_snapshot() -> None:
    """The generated diagram is pinned: `python -m agentfsm graph > tests/snapshots/machine.mmd`."""
    assert machine_mermaid() == SNAPSHOT.read_text()


def test_machine_mermaid_has_every_table_edge() -> None:
    """Every action edge carries its outcome's reason, every guard its stop reason."""
    lines = machine_mermaid().splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert "    [*] --> trimming_context" in lines
    assert "    done --> [*]" in lines
    assert "    stopped --> [*]" in lines
    for (source, outcome), target in EDGES.items():
        if outcome is GuardTripped:
            continue
        assert f"    {source.value} --> {target.value}: {outcome.reason}" in lines
    for guard in GUARDS:
        for phase in guard.phases:
            expected = f"    {phase.value} --> stopped: {guard.stop_reason.value}"
            assert expected in lines
    assert "    awaiting_model --> stopped: max_turns" in lines
    assert "impossible" not in machine_mermaid()


def test_machine_json_lists_phases_and_unmerged_edges() -> None:
    """machine_json has every phase and one edge per action outcome and per guard."""
    data = machine_json()
    json.dumps(data)
    assert data["initial"] == "trimming_context"
    assert [p["name"] for p in data["phases"]] == [p.value for p in Phase]
    assert all(p["possible"] for p in data["phases"])
    actions = sum(1 for _, outcome in EDGES if outcome is not GuardTripped)
    guards = sum(len(g.phases) for g in GUARDS)
    assert len(data["edges"]) == actions + guards + len(NEW_RUN)
    assert {e["kind"] for e in data["edges"]} == {"action", "guard", "new_run"}
    assert {
        "from": "executing_tools",
        "to": "stopped",
        "label": "max_function_calls",
        "kind": "guard",
        "possible": True,
        "impossible_because": None,
    } in data["edges"]


def test_machine_dot_is_a_digraph_of_the_same_edges() -> None:
    """machine_dot draws the same edges as Graphviz, terminals with a double border."""
    dot = machine_dot()
    assert dot.startswith("digraph agentfsm {")
    assert dot.rstrip().endswith("}")
    assert '    awaiting_model -> stopped [label="max_turns"];' in dot
    assert "    done [peripheries=2];" in dot
    assert "dashed" not in dot


def test_a_bare_agent_greys_tools_budget_function_calls_and_overflow() -> None:
    """No tools, budget, pricing, max_function_calls or context limit: those edges are out."""
    agent = _agent()
    assert _impossible(agent) == {
        ("awaiting_model", "executing_tools", "tool_calls_requested", "no tools"),
        ("awaiting_model", "stopped", "budget_exceeded", "no budget"),
        ("awaiting_model", "stopped", "context_overflow", "no context limits"),
        ("executing_tools", "trimming_context", "tools_finished", "no tools"),
        ("executing_tools", "stopped", "user_stop", "no tools"),
        ("executing_tools", "stopped", "max_function_calls", "no tools"),
        ("awaiting_model", "stopped", "guard", "no guards"),
        ("executing_tools", "stopped", "guard", "no tools"),
        ("executing_tools", "stopped", "worker_lost", "no tools"),
    }
    mermaid = machine_mermaid(agent)
    assert "    awaiting_model --> stopped: budget_exceeded (impossible, no budget)" in mermaid
    assert "    %% impossible (no budget)" in mermaid
    assert "    class executing_tools impossible" in mermaid
    assert "    awaiting_model --> stopped: user_stop\n" in mermaid  # request_stop works
    phases = {p["name"]: p["possible"] for p in machine_json(agent)["phases"]}
    assert phases == {p.value: p is not Phase.EXECUTING_TOOLS for p in Phase}
    dot = machine_dot(agent)
    assert "executing_tools [" in dot
    assert "dashed" in dot


def test_tools_without_a_function_call_limit_grey_only_that_guard() -> None:
    """With tools but no max_function_calls, only that guard (and budget, overflow) is out."""
    agent = _agent(tool_registry=[get_weather])
    assert _impossible(agent) == {
        ("awaiting_model", "stopped", "budget_exceeded", "no budget"),
        ("awaiting_model", "stopped", "context_overflow", "no context limits"),
        ("executing_tools", "stopped", "max_function_calls", "no max_function_calls"),
        ("awaiting_model", "stopped", "guard", "no guards"),
        ("executing_tools", "stopped", "guard", "no guards"),
    }
    assert "class executing_tools" not in machine_mermaid(agent)


def test_a_fully_configured_agent_greys_nothing() -> None:
    """Tools, a function-call limit, a budget, a context limit and guards make every edge
    possible; the guard edges carry the guards' names."""
    agent = _agent(
        tool_registry=[get_weather],
        max_function_calls=5,
        pricing={"input_per_million": 1, "output_per_million": 2},
        budget_control={"max_budget_for_this_chat": 1},
        max_context_length=8000,
        guards=[Guard("cap", lambda ctx: False), loop_breaker()],
    )
    assert _impossible(agent) == set()
    drawn = machine_mermaid(agent)
    assert "impossible" not in drawn
    assert drawn.replace("guard cap", "guard").replace("guard loop_breaker", "guard") == (
        machine_mermaid()
    )


def test_pricing_alone_keeps_the_budget_edge_for_per_call_budgets() -> None:
    """With pricing, send_message(budget_control=...) can stop a run: budget_exceeded stays."""
    agent = _agent(pricing={"input_per_million": 1, "output_per_million": 2})
    assert ("awaiting_model", "stopped", "budget_exceeded", "no budget") not in _impossible(agent)
    warn_only = _agent(
        pricing={"input_per_million": 1, "output_per_million": 2},
        budget_control={"max_budget_for_this_chat": 1, "stop_on_budget_exceeded": False},
    )
    assert ("awaiting_model", "stopped", "budget_exceeded", "no budget") in _impossible(warn_only)


# --------------------------------------------------------------------------- one run


async def test_run_mermaid_and_timeline_of_tools_a_retry_and_max_turns(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """The path shows turns, the tools each step ran, the retry, and the max_turns stop."""
    server.add(
        tool_calls(call("get_weather", {"city": "Tokyo"}), call("get_time", {"city": "Tokyo"})),
        fault.server_error(500),
        tool_calls(call("get_weather", {"city": "Osaka"}), call("get_weather", {"city": "Kyoto"})),
    )
    clock = FakeClock()
    agent = make_agent(
        tool_registry=[get_weather, get_time],
        max_turns=2,
        clock=clock,
        sleep=clock.sleep,
        retry_strategy={"jitter": False},
        context_handling_method="simple",
    )
    response = await agent.send_message("weather?", chat_id="c1")
    conv = response.conversation
    assert response.stop_reason is StopReason.MAX_TURNS
    assert [r.attempts for r in conv.requests] == [1, 2]

    assert run_mermaid(conv) == (
        "flowchart LR\n"
        '    n0["trimming_context"]\n'
        '    n1["awaiting_model<br/>turn 1"]\n'
        '    n2["executing_tools<br/>get_weather, get_time"]\n'
        '    n3["trimming_context"]\n'
        '    n4["awaiting_model<br/>turn 2<br/>1 retry"]\n'
        '    n5["executing_tools<br/>get_weather ×2"]\n'
        '    n6["trimming_context"]\n'
        '    n7["awaiting_model"]\n'
        '    n8(["stopped<br/>stop_reason: max_turns"])\n'
        '    n0 -->|"1 · context_ready · turn 0"| n1\n'
        '    n1 -->|"2 · tool_calls_requested · turn 1"| n2\n'
        '    n2 -->|"3 · tools_finished · turn 1"| n3\n'
        '    n3 -->|"4 · context_ready · turn 1"| n4\n'
        '    n4 -->|"5 · tool_calls_requested · turn 2"| n5\n'
        '    n5 -->|"6 · tools_finished · turn 2"| n6\n'
        '    n6 -->|"7 · context_ready · turn 2"| n7\n'
        '    n7 -->|"8 · max_turns · turn 2"| n8\n'
        "    classDef done fill:#dff3e3,stroke:#3a8f50\n"
        "    classDef stopped fill:#fbe3e3,stroke:#b94a48\n"
        "    classDef current stroke-width:3px\n"
        "    class n8 stopped\n"
    )

    start = 1_700_000_000.0
    backoff = clock.sleeps[0]
    steps = [
        ("trimming_context", "awaiting_model", "context_ready", 0),
        ("awaiting_model", "executing_tools", "tool_calls_requested", 1),
        ("executing_tools", "trimming_context", "tools_finished", 1),
        ("trimming_context", "awaiting_model", "context_ready", 1),
        ("awaiting_model", "executing_tools", "tool_calls_requested", 2),
        ("executing_tools", "trimming_context", "tools_finished", 2),
        ("trimming_context", "awaiting_model", "context_ready", 2),
        ("awaiting_model", "stopped", "max_turns", 2),
    ]
    times = [start] * 4 + [start + backoff] * 4
    durations: list[float | None] = [0.0, 0.0, 0.0, backoff, 0.0, 0.0, 0.0, None]
    timeline = run_timeline(conv)
    assert timeline == [
        {"from": f, "to": t, "reason": r, "turn": turn, "at": at, "duration": d}
        for (f, t, r, turn), at, d in zip(steps, times, durations, strict=True)
    ]
    assert json.loads(json.dumps(timeline)) == timeline


async def test_run_mermaid_joins_runs_and_notes_dropped_messages(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A continued chat shows both runs; the last context window's drops are noted."""
    server.add(text("one"), text("two"))
    agent = make_agent(max_messages_in_context=2, context_handling_method="simple")
    history = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]
    first = await agent.send_message("e", history=history, chat_id="c2")
    second = await agent.send_message("f", conversation=first.conversation)
    conv = second.conversation
    assert conv.context is not None
    dropped = conv.context.dropped
    assert dropped > 0

    diagram = run_mermaid(conv)
    assert '    n2(["done<br/>stop_reason: response"])' in diagram
    assert '    n2 -->|"3 · user_message · turn 0"| n3' in diagram
    plural = "s" if dropped != 1 else ""
    assert f'    n3["trimming_context<br/>dropped {dropped} message{plural}"]' in diagram
    assert '    n0["trimming_context"]' in diagram  # earlier windows are not kept
    assert '    n1["awaiting_model<br/>turn 1"]' in diagram
    assert "    class n5 done" in diagram
    assert [step["reason"] for step in run_timeline(conv)] == [
        "context_ready",
        "final_answer",
        "user_message",
        "context_ready",
        "final_answer",
    ]


async def test_run_mermaid_of_an_unfinished_conversation_marks_the_current_phase(
    make_agent: AgentFactory,
) -> None:
    """Before any step there is one node, the current phase, and an empty timeline."""
    agent = make_agent(context_handling_method="simple")
    conv = agent.start("hi", chat_id="c3")
    assert run_mermaid(conv) == (
        "flowchart LR\n"
        '    n0["trimming_context"]\n'
        "    classDef done fill:#dff3e3,stroke:#3a8f50\n"
        "    classDef stopped fill:#fbe3e3,stroke:#b94a48\n"
        "    classDef current stroke-width:3px\n"
        "    class n0 current\n"
    )
    assert run_timeline(conv) == []


# --------------------------------------------------------------------------- snapshot


async def test_snapshot_tells_a_ui_where_the_run_is(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """snapshot() has phase, calls in flight, turns, tokens, limits, cost and budget."""
    server.add(tool_calls(call("get_weather", {"city": "Tokyo"}, id="call_w")), text("Sunny."))
    agent = make_agent(
        tool_registry=[get_weather],
        max_turns=4,
        max_function_calls=3,
        max_context_length=8000,
        pricing={"input_per_million": 1_000, "output_per_million": 2_000},
        budget_control={"max_budget_for_this_chat": "5"},
        context_handling_method="simple",
    )
    conv = agent.start("weather?", chat_id="c4", user_id="u1")
    conv = await agent.step(conv)  # trimming_context -> awaiting_model
    conv = await agent.step(conv)  # awaiting_model -> executing_tools
    assert conv.phase is Phase.EXECUTING_TOOLS
    assert conv.context is not None
    mid = snapshot(conv, agent)
    assert mid == {
        "chat_id": "c4",
        "phase": "executing_tools",
        "finished": False,
        "stop_reason": None,
        "error": None,
        "tool_calls_in_flight": [{"id": "call_w", "name": "get_weather"}],
        "turns": 1,
        "max_turns": 4,
        "function_calls": 0,
        "max_function_calls": 3,
        "tokens": {"context": conv.context.tokens, "total": conv.usage.total_tokens},
        "context_limit": 8000,
        "cost": str(conv.cost),
        "budget": "5",
        "version": conv.version,
    }
    assert conv.cost > 0
    assert json.loads(json.dumps(mid)) == mid

    conv = await agent.run(conv)
    done = snapshot(conv, agent)
    assert (done["phase"], done["finished"], done["stop_reason"]) == ("done", True, "response")
    assert done["tool_calls_in_flight"] == []
    assert done["function_calls"] == 1
    assert Decimal(done["cost"]) == conv.cost

    bare = snapshot(conv)
    assert (bare["max_turns"], bare["context_limit"], bare["budget"]) == (None, None, None)


async def test_snapshot_shows_the_runs_own_budget_and_the_error(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A per-call budget wins over the agent's; a failed request's error is spelled out."""
    server.add(fault.server_error(500, "boom"))
    agent = make_agent(
        pricing={"input_per_million": 1, "output_per_million": 1},
        retry_strategy={"server_error": {"max_retries": 0}},
        context_handling_method="simple",
    )
    response = await agent.send_message("hi", budget_control={"max_budget_for_this_chat": 2})
    data = snapshot(response.conversation, agent)
    assert data["stop_reason"] == "error"
    assert data["budget"] == "2"
    assert data["error"] == {"type": "InternalServerError", "message": "boom", "status": 500}
    assert data["tokens"] == {"context": None, "total": 0}
