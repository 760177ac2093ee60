"""An agent with a store: checkpoints, ownership, one run at a time, resume after a crash."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agentfsm import (
    ChatAccessError,
    InvalidInputError,
    Phase,
    RunInProgressError,
    StopReason,
    tool,
)
from agentfsm.store import ConcurrentUpdateError, MemoryStore, SQLiteStore
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls

from .conftest import AgentFactory

ROOT = Path(__file__).resolve().parents[1]


@tool
def lookup(q: str) -> str:
    """Looks up q."""
    return f"found {q}"


async def test_messages_to_a_stored_chat_continue_it(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, tmp_path: Path
) -> None:
    """The first message creates the chat; the next loads it by chat_id and continues."""
    server.add(text("hello"), text("again"))
    async with SQLiteStore(tmp_path / "chats.db") as store:
        agent = make_agent(store=store)
        await agent.send_message("hi", user_id="u1", chat_id="c1")
        second = await agent.send_message("and now?", user_id="u1", chat_id="c1")
        stored = await store.load("c1")

    assert second.history == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "and now?"},
        {"role": "assistant", "content": "again"},
    ]
    assert stored == second.conversation
    assert server.requests[1].messages[:2] == second.history[:2]


async def test_every_transition_is_checkpointed(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """After each step the store holds exactly the state the step returned."""
    server.add(tool_calls(call("lookup", {"q": "x"})), text("done"))
    store = MemoryStore()
    agent = make_agent(store=store, tool_registry=[lookup])
    conv = agent.start("go", user_id="u1", chat_id="c1")
    await store.save(conv, None)
    seen = []
    while not conv.finished:
        conv = await agent.step(conv)
        stored = await store.load("c1")
        assert stored == conv
        seen.append(stored.phase if stored else None)
    assert seen == [
        Phase.AWAITING_MODEL,
        Phase.EXECUTING_TOOLS,
        Phase.TRIMMING_CONTEXT,
        Phase.AWAITING_MODEL,
        Phase.DONE,
    ]


async def test_history_for_a_stored_chat_is_refused(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """One source of truth: history= for a chat the store already holds is an error."""
    server.add(text("hello"))
    agent = make_agent(store=MemoryStore())
    await agent.send_message("hi", chat_id="c1")
    with pytest.raises(InvalidInputError, match="already in the store"):
        await agent.send_message("x", history=[{"role": "user", "content": "y"}], chat_id="c1")


async def test_another_users_chat_is_refused(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A chat belongs to its user: loading it with another user_id is refused."""
    server.add(text("hello"))
    agent = make_agent(store=MemoryStore())
    await agent.send_message("hi", user_id="alice", chat_id="c1")
    with pytest.raises(ChatAccessError, match="belongs to another user"):
        await agent.send_message("let me in", user_id="mallory", chat_id="c1")
    with pytest.raises(ChatAccessError):
        await agent.resume("c1", user_id="mallory")
    assert len(server.requests) == 1


async def test_a_message_for_a_running_chat_is_refused(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """While a run is in progress (here or on another worker) a new message is refused."""
    release = asyncio.Event()
    entered = asyncio.Event()

    @tool
    async def slow() -> str:
        """Waits."""
        entered.set()
        await release.wait()
        return "ok"

    server.add(tool_calls(call("slow", {})), text("done"))
    store = MemoryStore()
    agent = make_agent(store=store, tool_registry=[slow])
    run = asyncio.ensure_future(agent.send_message("go", chat_id="c1"))
    await entered.wait()
    with pytest.raises(RunInProgressError, match="resume"):
        await agent.send_message("hurry", chat_id="c1")
    release.set()
    assert (await run).output == "done"


async def test_racing_messages_to_one_chat_have_one_winner(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, tmp_path: Path
) -> None:
    """20 concurrent messages to one chat: one runs, the others are refused, none is lost."""
    server.add(text("first"), *[text(f"answer {i}") for i in range(20)])
    async with SQLiteStore(tmp_path / "race.db") as store:
        agent = make_agent(store=store)
        await agent.send_message("start", chat_id="c1")
        results = await asyncio.gather(
            *(agent.send_message(f"message {i}", chat_id="c1") for i in range(20)),
            return_exceptions=True,
        )
        stored = await store.load("c1")

    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(e, (RunInProgressError, ConcurrentUpdateError)) for e in losers)
    assert stored is not None
    user_texts = [m.content for m in stored.messages if m.role == "user"]
    assert user_texts[0] == "start"
    assert len(user_texts) == 2
    assert stored == winners[0].conversation  # type: ignore[union-attr]


async def test_resume_takes_over_and_the_old_worker_loses_its_next_save(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """resume() finishes a chat at once; the worker that still runs it gets a conflict."""
    release = asyncio.Event()
    entered = asyncio.Event()

    @tool
    async def lookup(q: str) -> str:
        """Hangs on the first worker."""
        entered.set()
        await release.wait()
        return "stale"

    @tool(name="lookup")
    def quick_lookup(q: str) -> str:
        """Answers at once on the second worker."""
        return f"fresh {q}"

    server.add(tool_calls(call("lookup", {"q": "a"})), text("finished by B"))
    store = MemoryStore()
    worker_a = make_agent(store=store, tool_registry=[lookup])
    worker_b = make_agent(store=store, tool_registry=[quick_lookup])
    run_a = asyncio.ensure_future(worker_a.send_message("go", chat_id="c1"))
    await entered.wait()

    final = await worker_b.resume("c1")
    assert final.phase is Phase.DONE
    release.set()
    with pytest.raises(ConcurrentUpdateError):
        await run_a
    stored = await store.load("c1")
    assert stored == final
    assert [m.content for m in final.messages if m.role == "tool"] == ["fresh a"]


CRASHING_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from agentfsm import AsyncOpenAISimpleAgent, tool
    from agentfsm.store import SQLiteStore

    @tool
    async def book_flight(city: str) -> str:
        \"\"\"Books a flight.\"\"\"
        print("TOOL_STARTED", flush=True)
        await asyncio.sleep(3600)
        return "booked"

    async def main() -> None:
        store = SQLiteStore(sys.argv[2])
        agent = AsyncOpenAISimpleAgent(
            model="scripted-model", api_key="k", base_url=sys.argv[1],
            tool_registry=[book_flight], store=store,
        )
        await agent.send_message("book me to Rome", user_id="u1", chat_id="trip")

    asyncio.run(main())
    """
)


async def test_a_worker_killed_mid_tool_is_resumed_by_another_process(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, tmp_path: Path
) -> None:
    """SIGKILL during a tool; a second process resumes; every message is there exactly once."""
    server.add(tool_calls(call("book_flight", {"city": "Rome"}, id="call_b")), text("Booked."))
    db = tmp_path / "chats.db"
    script = tmp_path / "worker.py"
    script.write_text(CRASHING_WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        server.base_url,
        str(db),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert worker.stdout is not None
    line = await asyncio.wait_for(worker.stdout.readline(), timeout=30)
    assert line.strip() == b"TOOL_STARTED"
    worker.send_signal(signal.SIGKILL)
    await worker.wait()

    @tool
    def book_flight(city: str) -> str:
        """Books a flight."""
        return f"booked to {city}"

    async with SQLiteStore(db) as store:
        crashed = await store.load("trip")
        assert crashed is not None
        assert crashed.phase is Phase.EXECUTING_TOOLS
        agent = make_agent(store=store, tool_registry=[book_flight])
        final = await agent.resume("trip", user_id="u1")
        assert await store.load("trip") == final

    assert final.stop_reason is StopReason.RESPONSE
    assert [(m.role, getattr(m, "content", None)) for m in final.messages] == [
        ("user", "book me to Rome"),
        ("assistant", None),
        ("tool", "booked to Rome"),
        ("assistant", "Booked."),
    ]


async def test_a_cancelled_caller_leaves_a_stored_chat_that_can_continue(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A request handler cancelled mid-tool: the stored chat is stopped, not stuck mid-phase;
    the call that finished keeps its result, the one running is recorded cancelled (with its
    error hook), and the stop says it came from a cancel."""
    entered = asyncio.Event()

    @tool
    async def slow() -> str:
        """Takes long."""
        entered.set()
        await asyncio.sleep(3600)
        return "never"

    @tool
    def quick() -> str:
        """Answers at once."""
        return "quick result"

    server.add(
        tool_calls(call("quick", {}, id="call_q"), call("slow", {}, id="call_s")), text("next run")
    )
    store = MemoryStore()
    errors: list[Any] = []
    stops: list[Any] = []
    agent = make_agent(
        store=store,
        tool_registry=[quick, slow],
        execute_function_concurrently=False,  # quick has finished when slow starts
        hooks={"on_function_call_error": errors.append, "on_manual_stop": stops.append},
    )
    run = asyncio.ensure_future(agent.send_message("go", chat_id="c1"))
    await entered.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    stored = await store.load("c1")
    assert stored is not None
    assert (stored.phase, stored.stop_reason) == (Phase.STOPPED, StopReason.USER_STOP)
    assert [(m.role, getattr(m, "content", None)) for m in stored.messages[-2:]] == [
        ("tool", "quick result"),
        ("tool", "Cancelled: the run was stopped before this call finished."),
    ]
    assert [(e.call_id, type(e.error).__name__) for e in errors] == [("call_s", "CancelledError")]
    assert [(s.source, s.phase) for s in stops] == [("cancelled", Phase.EXECUTING_TOOLS)]
    again = await agent.send_message("still there?", chat_id="c1")
    assert again.output == "next run"


async def test_a_stream_cancelled_by_an_anyio_scope_still_stops_cleanly(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A web framework's cancel scope (re-cancelling at every await) still ends in user_stop."""
    import anyio

    from agentfsm import AsyncOpenAIStreamingAgent, ToolCallEvent

    @tool
    async def slow() -> str:
        """Takes long."""
        await asyncio.sleep(3600)
        return "never"

    server.add(tool_calls(call("slow", {})), text("later"))
    store = MemoryStore()
    agent = make_agent(AsyncOpenAIStreamingAgent, store=store, tool_registry=[slow])

    async def consume(scope: anyio.CancelScope) -> None:
        async for event in agent.stream_message("go", chat_id="c1"):
            if isinstance(event, ToolCallEvent):
                scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(consume, group.cancel_scope)

    for _ in range(200):  # the run finishes its stop on its own, shielded from the scope
        stored = await store.load("c1")
        if stored is not None and stored.finished:
            break
        await asyncio.sleep(0.01)
    assert stored is not None
    assert (stored.phase, stored.stop_reason) == (Phase.STOPPED, StopReason.USER_STOP)
    assert (await agent.send_message("again", chat_id="c1")).output == "later"
