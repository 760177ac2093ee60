"""The trimming_context phase in real runs: what is sent, summaries, overflow, hooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from agentfsm import Image, Phase, StopReason, UserMessage, tool
from agentfsm.context.counting import AccurateCounter
from agentfsm.testing import (
    RecordedRequest,
    Reply,
    ScriptedOpenAIServer,
    call,
    fault,
    text,
    tool_calls,
)

from .conftest import AgentFactory

ROOT = Path(__file__).resolve().parents[1]


def _history(turns: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(turns):
        out.append({"role": "user", "content": f"question {i} " + "word " * 20})
        out.append({"role": "assistant", "content": f"answer {i} " + "word " * 20})
    return out


async def test_dropping_changes_only_what_is_sent(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Old messages are left out of the request but stay in history and state; the hook says so."""
    server.add(text("fresh answer"))
    dropped: list[Any] = []
    agent = make_agent(
        system_prompt="Be brief.",
        max_messages_in_context=3,
        prompt_when_message_is_dropped="Earlier messages were left out.",
        hooks={"on_message_dropped": dropped.append},
    )
    history = _history(5)
    response = await agent.send_message("newest question", history=history)

    sent = server.requests[0].messages
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[1] == {"role": "system", "content": "Earlier messages were left out."}
    assert sent[2:] == [*history[-2:], {"role": "user", "content": "newest question"}]
    assert response.history == [
        *history,
        {"role": "user", "content": "newest question"},
        {"role": "assistant", "content": "fresh answer"},
    ]
    assert len(dropped) == 1
    assert [m.content for m in dropped[0].messages] == [m["content"] for m in history[:8]]
    assert dropped[0].strategy == "simple"
    assert response.conversation.context is not None
    assert response.conversation.context.dropped == 8


async def test_accurate_count_equals_what_the_server_counts(make_agent: AgentFactory) -> None:
    """The agent's count of the request equals the server's prompt_tokens (same encoding)."""
    counter = AccurateCounter("o200k_base")

    def count(messages: list[dict[str, Any]]) -> int:
        return sum(counter.count_wire(m) for m in messages) + counter.reply_overhead

    async with ScriptedOpenAIServer([text("ok")], token_counter=count) as srv:
        agent = make_agent(
            base_url=srv.base_url,
            model="gpt-4o-mini",
            system_prompt="You help.",
            max_context_length=10_000,
        )
        response = await agent.send_message("how many tokens is this?", history=_history(3))
    assert response.conversation.context is not None
    assert response.requests[0].usage.prompt_tokens == response.conversation.context.tokens


async def test_a_context_that_cannot_fit_stops_before_any_request(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """System prompt + newest message over the limit: overflow stop, nothing sent, clear error."""
    overflows: list[Any] = []
    agent = make_agent(
        system_prompt="rule " * 500,
        max_context_length=200,
        hooks={"on_context_overflow": overflows.append},
    )
    response = await agent.send_message("hi")
    assert response.stop_reason is StopReason.CONTEXT_OVERFLOW
    assert server.requests == []
    assert response.error is not None
    assert "max_context_length=200" in response.error.message
    assert [(o.limit, o.tokens_needed > 200) for o in overflows] == [(200, True)]
    assert [t.to_phase for t in response.conversation.transitions] == [
        Phase.AWAITING_MODEL,
        Phase.STOPPED,
    ]


async def test_long_tool_results_are_truncated_in_the_request_only(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """max_token_per_message cuts a huge tool result (head, tail, marker) in what is sent."""

    @tool
    def dump() -> str:
        """Returns a lot."""
        return "START " + "filler " * 2000 + " END"

    server.add(tool_calls(call("dump", {})), text("summarized"))
    response = await make_agent(tool_registry=[dump], max_token_per_message=100).send_message("go")
    sent_result = server.requests[1].messages[-1]["content"]
    assert sent_result.startswith("START")
    assert sent_result.endswith("END")
    assert "tokens cut" in sent_result
    assert len(sent_result) < 1000
    assert response.history[2]["content"] == dump()


def _summarizing_model(fail_summary: bool = False) -> Any:
    def answer(request: RecordedRequest) -> Reply:
        if request.model == "cheap-summarizer":
            if fail_summary:
                return fault.server_error(500)
            return text("User asked questions 0-3; assistant answered each.")
        return text("main answer")

    return answer


async def test_summary_dropping_folds_dropped_messages_into_a_summary(
    make_agent: AgentFactory,
) -> None:
    """summary_dropping asks the summary model, keeps the summary in state, sends it after the
    system prompt."""
    dropped: list[Any] = []
    async with ScriptedOpenAIServer(_summarizing_model()) as srv:
        agent = make_agent(
            base_url=srv.base_url,
            system_prompt="Be brief.",
            max_messages_in_context=3,
            dropping_strategy="summary_dropping",
            summary_model="cheap-summarizer",
            pricing={"input_per_million": 1, "output_per_million": 1},
            hooks={"on_message_dropped": dropped.append},
        )
        response = await agent.send_message("newest", history=_history(4))
        summary_request, main_request = srv.requests

    assert summary_request.model == "cheap-summarizer"
    assert "question 0" in summary_request.messages[-1]["content"]
    assert main_request.messages[1] == {
        "role": "system",
        "content": "Summary of earlier conversation: "
        "User asked questions 0-3; assistant answered each.",
    }
    assert response.conversation.summary == "User asked questions 0-3; assistant answered each."
    assert response.conversation.summary_upto == 6
    assert len(response.history) == 10
    assert dropped[0].summary == response.conversation.summary
    assert len(response.requests) == 2  # the summary request is recorded and priced too
    assert response.cost > 0


async def test_a_failed_summary_falls_back_to_simple_dropping(make_agent: AgentFactory) -> None:
    """A summary request that fails loses nothing: the turn drops simply, the hook reports it."""
    dropped: list[Any] = []
    async with ScriptedOpenAIServer(_summarizing_model(fail_summary=True)) as srv:
        agent = make_agent(
            base_url=srv.base_url,
            max_messages_in_context=3,
            dropping_strategy="summary_dropping",
            summary_model="cheap-summarizer",
            hooks={"on_message_dropped": dropped.append},
        )
        response = await agent.send_message("newest", history=_history(4))
    assert response.output == "main answer"
    assert response.conversation.summary is None
    assert response.conversation.summary_upto == 0
    assert dropped[0].error is not None
    assert dropped[0].error.status == 500
    assert len(response.history) == 10


async def test_finished_tool_groups_can_be_left_out_of_later_turns(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """keep_function_calls_in_context=False: last run's tool calls are not sent again."""

    @tool
    def lookup(q: str) -> str:
        """Looks up."""
        return "result"

    server.add(tool_calls(call("lookup", {"q": "a"})), text("first"), text("second"))
    agent = make_agent(tool_registry=[lookup], keep_function_calls_in_context=False)
    first = await agent.send_message("one")
    await agent.send_message("two", conversation=first.conversation)
    assert [m["role"] for m in server.requests[2].messages] == ["user", "assistant", "user"]
    assert [m["role"] for m in server.requests[1].messages] == ["user", "assistant", "tool"]


async def test_the_newest_messages_image_is_never_dropped(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Under a tight limit the newest user message keeps its image part."""
    server.add(text("a picture"))
    image = Image.from_url("https://example.com/cat.png", detail="low")
    agent = make_agent(max_context_length=400, max_messages_in_context=2)
    await agent.send_message(["what is this?", image], history=_history(6))
    last = server.requests[0].messages[-1]
    assert last["content"][1] == image.to_openai()
    assert isinstance(agent.start(["x", image]).messages[-1], UserMessage)


def test_an_unavailable_encoding_refuses_to_start_with_a_fix(tmp_path: Path) -> None:
    """No network and no cache: the agent builds without touching tiktoken, and the first
    message that needs counting is refused before anything is sent, saying how to fix it."""
    code = (
        "import sys\n"
        "from agentfsm import AsyncOpenAISimpleAgent\n"
        "agent = AsyncOpenAISimpleAgent(model='gpt-4o', api_key='k', max_context_length=1000)\n"
        "assert 'tiktoken' not in sys.modules, 'the agent was built without tiktoken'\n"
        "agent.start('hello')\n"
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env["HTTPS_PROXY"] = env["HTTP_PROXY"] = "http://127.0.0.1:9"  # no network, even if any
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode != 0
    assert "ConfigurationError" in done.stderr
    assert "TIKTOKEN_CACHE_DIR" in done.stderr
