"""Per-call checkpoints: each tool result is saved as it finishes, so a worker killed in the
middle of a batch leaves its finished results stored, and the resumed run runs only the calls
that had not finished, as attempt 2, with the same call ids."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

from agentfsm import Phase, StopReason, ToolContext, tool
from agentfsm.store import SQLiteStore
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls

from .conftest import AgentFactory

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from agentfsm import AsyncOpenAISimpleAgent, tool

    from agentfsm.store import SQLiteStore

    @tool
    async def quick(n: int) -> str:
        \"\"\"Answers at once.\"\"\"
        return f"quick {n}"

    @tool
    async def slow() -> str:
        \"\"\"Never answers in this process.\"\"\"
        await asyncio.sleep(3600)
        return "never"

    ended = []

    def on_end(event) -> None:  # fires after the result's checkpoint was saved
        ended.append(event.call_id)
        if len(ended) == 2:
            print("TWO_SAVED", flush=True)

    async def main() -> None:
        agent = AsyncOpenAISimpleAgent(
            model="m", api_key="k", base_url=sys.argv[1], store=SQLiteStore(sys.argv[2]),
            tool_registry=[quick, slow], hooks={"on_function_call_end": on_end},
        )
        await agent.send_message("go", user_id="u1", chat_id="batch")

    asyncio.run(main())
    """
)


async def test_a_killed_worker_reruns_only_the_unfinished_call(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, tmp_path: Path
) -> None:
    server.add(
        tool_calls(
            call("quick", {"n": 1}, id="q1"),
            call("slow", {}, id="s1"),
            call("quick", {"n": 2}, id="q2"),
        ),
        text("All three done."),
    )
    db = tmp_path / "chats.db"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        server.base_url,
        str(db),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert worker.stdout is not None
    line = await asyncio.wait_for(worker.stdout.readline(), timeout=30)
    assert line.strip() == b"TWO_SAVED"
    worker.send_signal(signal.SIGKILL)
    await worker.wait()

    ran: list[tuple[str, str | None, int]] = []

    @tool
    def quick(n: int, context: ToolContext) -> str:
        """Answers at once."""
        ran.append(("quick", context.call_id, context.attempt))
        return f"quick {n} again"

    @tool
    def slow(context: ToolContext) -> str:
        """Answers now."""
        ran.append(("slow", context.call_id, context.attempt))
        return "slow, at last"

    async with SQLiteStore(db) as store:
        crashed = await store.load("batch")
        assert crashed is not None
        assert crashed.phase is Phase.EXECUTING_TOOLS
        assert [(m.role, m.content) for m in crashed.messages[2:]] == [
            ("tool", "quick 1"),
            ("tool", "quick 2"),
        ]
        agent = make_agent(store=store, tool_registry=[quick, slow])
        final = await agent.resume("batch", user_id="u1")
        assert await store.load("batch") == final

    assert ran == [("slow", "s1", 2)]
    assert final.stop_reason is StopReason.RESPONSE
    results = {m.tool_call_id: m.content for m in final.messages if m.role == "tool"}
    assert results == {"q1": "quick 1", "q2": "quick 2", "s1": "slow, at last"}
    assert final.function_calls == 1  # the calls this process ran
    assert final.tool_attempt == 0


async def test_results_are_saved_as_they_finish_and_the_batch_keeps_call_order(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """While a slow call still runs, the store already holds the finished ones; the batch's
    results end up in call order in the history, and every call ran once, as attempt 1."""
    release = asyncio.Event()
    attempts: list[int] = []

    @tool
    async def fast(context: ToolContext) -> str:
        """Fast."""
        attempts.append(context.attempt)
        return "fast"

    @tool
    async def held(context: ToolContext) -> str:
        """Waits for the test."""
        attempts.append(context.attempt)
        await release.wait()
        return "held"

    seen_while_held: list[list[str]] = []
    store = SQLiteStore(":memory:")

    async def on_end(event: object) -> None:
        if getattr(event, "tool_name", None) == "fast":
            stored = await store.load("order")
            assert stored is not None
            seen_while_held.append([m.content for m in stored.messages if m.role == "tool"])
            release.set()

    server.add(tool_calls(call("held", {}, id="h"), call("fast", {}, id="f")), text("ok"))
    agent = make_agent(
        store=store, tool_registry=[fast, held], hooks={"on_function_call_end": on_end}
    )
    response = await agent.send_message("go", chat_id="order")

    assert seen_while_held == [["fast"]]
    assert [m.tool_call_id for m in response.conversation.messages if m.role == "tool"] == [
        "h",
        "f",
    ]
    assert attempts == [1, 1]
    assert await store.load("order") == response.conversation
    await store.aclose()
