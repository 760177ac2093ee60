"""Sync tools run on the agent's own threads: a stopped call's thread (which Python cannot
kill) never holds a slot another call needs, and the loop's default pool is left alone."""

from __future__ import annotations

import asyncio
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentfsm import ConfigurationError, StopReason, tool
from agentfsm.executor import CANCELLED_RESULT
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls

from .conftest import AgentFactory


async def test_stopped_sync_tools_do_not_starve_the_next_run(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Two sync calls stopped while their threads are stuck fill a two-thread agent's pool;
    a sync tool of the next run still runs at once, and the stuck calls' late results are
    discarded."""
    loop = asyncio.get_running_loop()
    hold = threading.Event()  # the stuck threads wait for it; released at the end
    both_in = asyncio.Event()
    arrivals = itertools.count(1)

    @tool
    def stuck(n: int) -> str:
        """Waits until released."""
        if next(arrivals) == 2:
            loop.call_soon_threadsafe(both_in.set)
        hold.wait()
        return "late"

    @tool
    def quick() -> str:
        """Answers at once."""
        return threading.current_thread().name

    server.add(
        tool_calls(call("stuck", {"n": 1}, id="s1"), call("stuck", {"n": 2}, id="s2")),
        tool_calls(call("quick", {}, id="q1")),
        text("done"),
    )
    agent = make_agent(tool_registry=[stuck, quick], tool_threads=2, agent_name="pooled")
    try:
        first = asyncio.create_task(agent.send_message("a", chat_id="A"))
        await both_in.wait()
        agent.request_stop("A")
        stopped = await first
        assert stopped.stop_reason is StopReason.USER_STOP
        assert [m["content"] for m in stopped.history if m["role"] == "tool"] == [
            CANCELLED_RESULT,
            CANCELLED_RESULT,
        ]

        second = await asyncio.wait_for(agent.send_message("b", chat_id="B"), 30)
        assert second.output == "done"
        ran_in = second.history[2]["content"]
        assert ran_in.startswith("agentfsm-pooled-tool")  # the agent's pool, not the loop's
    finally:
        hold.set()


async def test_sync_tools_never_use_the_loops_default_pool(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """With the loop's default pool fully taken (one thread, held from just before the tool
    starts until it ends), a sync tool still runs: it does not queue in that pool, which
    the event loop's own DNS lookups need."""
    loop = asyncio.get_running_loop()
    default = ThreadPoolExecutor(1)
    loop.set_default_executor(default)
    hold = threading.Event()
    taken: list[asyncio.Future[bool]] = []

    def take_the_default_pool(event: object) -> None:
        taken.append(loop.run_in_executor(None, hold.wait))

    def give_it_back(event: object) -> None:
        hold.set()

    @tool
    def where() -> str:
        """The thread it runs in."""
        return threading.current_thread().name

    server.add(tool_calls(call("where", {}, id="w1")), text("ok"))
    agent = make_agent(
        tool_registry=[where],
        hooks={
            "on_function_call_start": take_the_default_pool,
            "on_function_call_end": give_it_back,
        },
    )
    try:
        response = await asyncio.wait_for(agent.send_message("hi"), 30)
        assert response.history[2]["content"].startswith("agentfsm-agent-tool")
        assert len(taken) == 1
    finally:
        hold.set()
        await asyncio.gather(*taken)
        default.shutdown()


async def test_tool_threads_bounds_the_calls_running_at_once(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """With ``tool_threads=1`` two concurrent sync calls of one message share one thread."""

    @tool
    def where(n: int) -> str:
        """The thread it runs in."""
        return threading.current_thread().name

    server.add(
        tool_calls(call("where", {"n": 1}, id="w1"), call("where", {"n": 2}, id="w2")),
        text("ok"),
    )
    response = await make_agent(tool_registry=[where], tool_threads=1).send_message("hi")
    names = [m["content"] for m in response.history if m["role"] == "tool"]
    assert len(names) == 2
    assert names[0] == names[1]


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "4"])
def test_tool_threads_must_be_a_positive_integer(value: object) -> None:
    """A pool size that cannot work is refused when the agent is built."""
    from agentfsm import AsyncOpenAISimpleAgent

    with pytest.raises(ConfigurationError, match="tool_threads must be None or an integer"):
        AsyncOpenAISimpleAgent(model="m", api_key="k", tool_threads=value)
