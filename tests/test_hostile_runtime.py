"""Hostile replies, tool calls and races: every one ends in a typed error or a stopped,
continuable chat, never a raw Python exception, a hang or a lost message."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfsm import (
    AsyncOpenAISimpleAgent,
    AsyncOpenAIStreamingAgent,
    Phase,
    RunInProgressError,
    StopReason,
    tool,
)
from agentfsm.store import MemoryStore
from agentfsm.testing import ScriptedOpenAIServer, call, fault, text, tool_calls

from .conftest import AgentFactory

NO_RETRIES = {
    "rate_limit": {"max_retries": 0},
    "server_error": {"max_retries": 0},
    "timeout": {"max_retries": 0},
    "connection_error": {"max_retries": 0},
}


def _completion(message: Any, **extra: Any) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "model": "scripted-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        **extra,
    }


MALFORMED_BODIES: list[tuple[object, str]] = [
    ("not json at all", "the reply is not JSON"),
    (b'{"choices": "\xff\xfe"}', "the reply is not UTF-8"),
    ([1, 2], "the reply is not an object"),
    ({"choices": "x"}, "choices is not a list"),
    ({"choices": [{"index": 0, "finish_reason": "stop"}]}, "choices[0].message is missing"),
    ({"choices": [5]}, "choices[0] is not an object"),
    (_completion({"role": "assistant", "content": 5}), "content is neither a string nor null"),
    (
        _completion({"role": "assistant", "content": "hi"}, usage={"prompt_tokens": "x"}),
        "usage.prompt_tokens is not a token count",
    ),
    (
        _completion({"role": "assistant", "content": "hi"}, usage={"completion_tokens": -3}),
        "usage.completion_tokens is not a token count",
    ),
    (
        _completion({"role": "assistant", "tool_calls": [{"function": {"name": 7}}]}),
        "function.name is not a string",
    ),
    ("[" * 100_000 + "]" * 100_000, "nested too deep"),
]


@pytest.mark.parametrize(("body", "says"), MALFORMED_BODIES)
async def test_a_200_that_is_not_a_chat_completion_stops_with_error(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, body: object, says: str
) -> None:
    """A malformed reply is not retried (the server would answer the same), stops the run
    with ``error`` naming what was wrong, and the chat continues."""
    server.add(fault.raw(body), text("fine now"))
    agent = make_agent()
    response = await agent.send_message("hi")
    assert response.stop_reason is StopReason.ERROR
    assert response.error is not None
    assert response.error.type == "MalformedReplyError"
    assert says in response.error.message
    assert len(server.requests) == 1  # not retried
    again = await agent.send_message("again", conversation=response.conversation)
    assert again.output == "fine now"


STREAM_FAULTS: list[tuple[list[object], str]] = [
    (["{oops"], "a stream event is not JSON"),
    ([b"data: \xff\xfe\n\n"], "a stream event is not UTF-8"),
    (["[1]"], "the stream event is not an object"),
    ([{"choices": [{"index": 0, "delta": {"content": 5}}]}], "is neither a string nor null"),
]


@pytest.mark.parametrize(("events", "says"), STREAM_FAULTS)
async def test_a_stream_event_that_is_not_a_chunk_stops_with_error(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, events: list[object], says: str
) -> None:
    """A broken SSE event is a malformed reply: ``error``, not retried, chat continues."""
    server.add(fault.raw_stream(*events), text("fine now"))
    agent = make_agent(agent_class=AsyncOpenAIStreamingAgent)
    response = await agent.send_message("hi")
    assert (response.stop_reason, response.error and response.error.type) == (
        StopReason.ERROR,
        "MalformedReplyError",
    )
    assert response.error is not None
    assert says in response.error.message
    again = await agent.send_message("again", conversation=response.conversation)
    assert again.output == "fine now"


def _delta(content: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": content}}]}


async def test_a_truncated_stream_is_retried_not_returned_as_the_answer(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A stream that ends without finish_reason and without [DONE] is a broken connection:
    retried, and the retry's whole answer is the output."""
    server.add(fault.raw_stream(_delta("Partial answ")), text("The whole answer."))
    retries: list[Any] = []
    agent = make_agent(
        agent_class=AsyncOpenAIStreamingAgent,
        hooks={"on_retry": retries.append},
        retry_strategy={"initial_delay": 0, "jitter": False},
    )
    response = await agent.send_message("hi")
    assert (response.stop_reason, response.output) == (StopReason.RESPONSE, "The whole answer.")
    assert [r.error_class for r in retries] == ["connection_error"]


async def test_a_truncated_stream_that_never_recovers_ends_in_error(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """With its retries spent, a stream cut every time ends ``error``, not ``response``."""
    server.add(fault.raw_stream(_delta("Partial")))
    agent = make_agent(agent_class=AsyncOpenAIStreamingAgent, retry_strategy=NO_RETRIES)
    response = await agent.send_message("hi")
    assert response.stop_reason is StopReason.ERROR
    assert response.error is not None
    assert "stream ended before the answer was complete" in response.error.message


async def test_a_stream_ended_by_done_without_finish_reason_is_complete(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``[DONE]`` closes a stream properly even when a server sends no finish_reason."""
    server.add(fault.raw_stream(_delta("All "), _delta("there."), "[DONE]"))
    agent = make_agent(agent_class=AsyncOpenAIStreamingAgent)
    response = await agent.send_message("hi")
    assert (response.stop_reason, response.output) == (StopReason.RESPONSE, "All there.")


async def test_a_stop_during_the_retry_pause_keeps_no_failed_text(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A stop pressed while a retry waits ends ``user_stop`` with no assistant message from
    the failed attempt (its text was streamed, then the stream was cut)."""
    server.add(fault.raw_stream(_delta("Partial answ")), text("never asked"))
    pausing = asyncio.Event()
    agent: Any = None

    async def sleep(delay: float) -> None:
        pausing.set()
        await asyncio.sleep(3600)

    agent = make_agent(agent_class=AsyncOpenAIStreamingAgent, sleep=sleep)
    run = asyncio.ensure_future(agent.send_message("hi", chat_id="c1"))
    await pausing.wait()
    agent.request_stop("c1")
    response = await run
    assert (response.stop_reason, response.output, response.interrupted) == (
        StopReason.USER_STOP,
        "",
        False,
    )
    assert [m.role for m in response.conversation.messages] == ["user"]


# ---------------------------------------------------------------------- tool calls


async def test_two_calls_with_one_id_are_each_answered_once(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A server repeating a call id: both calls run, the repeat gets a unique id in the
    recorded message, and the history sent back pairs every call with one result."""

    @tool
    def echo(word: str) -> str:
        """Says the word back."""
        return word

    server.add(
        tool_calls(
            call("echo", {"word": "one"}, id="dup"), call("echo", {"word": "two"}, id="dup")
        ),
        text("ok"),
    )
    response = await make_agent(tool_registry=[echo]).send_message("go")
    assistant = response.history[1]
    ids = [c["id"] for c in assistant["tool_calls"]]
    assert ids == ["dup", "dup_2"]
    results = {m["tool_call_id"]: m["content"] for m in response.history if m["role"] == "tool"}
    assert results == {"dup": "one", "dup_2": "two"}
    second_request = server.requests[1].messages
    assert [m["tool_call_id"] for m in second_request if m["role"] == "tool"] == ids


async def test_hostile_arguments_and_results_become_error_results(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Arguments nested 100,000 deep, a result nested 100,000 deep, a result whose __str__
    raises: each an error result the model reads; the run goes on to its answer."""

    class Nasty:
        def __str__(self) -> str:
            raise RuntimeError("no string for you")

    @tool
    def deep_result() -> object:
        """Returns something absurd."""
        value: Any = []
        for _ in range(100_000):
            value = [value]
        return value

    @tool
    def nasty() -> object:
        """Returns an object that cannot be shown."""
        return Nasty()

    @tool
    def takes(data: dict[str, Any]) -> str:
        """Takes data."""
        return "took it"

    deep_args = '{"data": ' + "[" * 100_000 + "]" * 100_000 + "}"
    server.add(
        tool_calls(call("takes", deep_args), call("deep_result", {}), call("nasty", {})),
        text("recovered"),
    )
    response = await make_agent(tool_registry=[takes, deep_result, nasty]).send_message("go")
    assert response.output == "recovered"
    results = [m for m in response.history if m["role"] == "tool"]
    assert all(m["content"].startswith("Error") for m in results), results


# ---------------------------------------------------------------------- races and stops


async def test_a_refused_message_does_not_wipe_the_running_runs_stop(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Stop pressed through a shared stop signal, then a second message arrives and is
    refused (a run is in progress): the first run still ends ``user_stop``."""
    entered = asyncio.Event()
    release = asyncio.Event()

    class SharedSignal:  # what RedisStopSignal looks like to the agent
        def __init__(self) -> None:
            self.pressed: set[str] = set()

        def __call__(self, chat_id: str) -> bool:
            return chat_id in self.pressed

        async def clear(self, chat_id: str) -> None:
            self.pressed.discard(chat_id)

    @tool
    async def slow() -> str:
        """Takes a while."""
        entered.set()
        await release.wait()
        return "done"

    signal = SharedSignal()
    server.add(tool_calls(call("slow", {})), text("answer"))
    agent = make_agent(
        store=MemoryStore(),
        tool_registry=[slow],
        manual_stop_signal_function=signal,
        check_for_stop_signal_time=3600,  # seen at the next guard check, not by polling
    )
    first = asyncio.ensure_future(agent.send_message("go", chat_id="c1"))
    await entered.wait()
    signal.pressed.add("c1")
    with pytest.raises(RunInProgressError):
        await agent.send_message("second", chat_id="c1")
    release.set()
    response = await first
    assert response.stop_reason is StopReason.USER_STOP


async def test_a_cancel_during_the_first_save_leaves_a_continuable_chat(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A caller cancelled while the run's first checkpoint is being written: the save lands,
    the stored chat is stopped from it (not left running), and the next message works."""
    server.add(text("next run"))
    saving = asyncio.Event()
    proceed = asyncio.Event()

    class SlowStore(MemoryStore):
        async def save(self, conversation: Any, expected_version: int | None) -> None:
            if conversation.phase is Phase.TRIMMING_CONTEXT and conversation.version == 0:
                saving.set()
                await proceed.wait()
            await super().save(conversation, expected_version)

    store = SlowStore()
    stops: list[Any] = []
    agent = make_agent(store=store, hooks={"on_manual_stop": stops.append})
    run = asyncio.ensure_future(agent.send_message("go", chat_id="c1"))
    await saving.wait()
    run.cancel()
    proceed.set()
    with pytest.raises(asyncio.CancelledError):
        await run
    stored = await store.load("c1")
    assert stored is not None
    assert (stored.phase, stored.stop_reason) == (Phase.STOPPED, StopReason.USER_STOP)
    assert [s.source for s in stops] == ["cancelled"]
    again = await agent.send_message("still there?", chat_id="c1")
    assert again.output == "next run"


# ---------------------------------------------------------------------- fuzzing

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def _mutations() -> st.SearchStrategy[object]:
    """Real completions with one part replaced by a random JSON value, and random values."""
    good = _completion(
        {
            "role": "assistant",
            "content": "hi",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    )
    paths = [
        ("choices",),
        ("choices", 0),
        ("choices", 0, "message"),
        ("choices", 0, "message", "content"),
        ("choices", 0, "message", "tool_calls"),
        ("choices", 0, "message", "tool_calls", 0),
        ("choices", 0, "message", "tool_calls", 0, "function"),
        ("choices", 0, "message", "tool_calls", 0, "function", "arguments"),
        ("choices", 0, "finish_reason"),
        ("usage",),
        ("usage", "prompt_tokens"),
        ("model",),
    ]

    def mutate(path: tuple[Any, ...], value: object) -> object:
        body: Any = json.loads(json.dumps(good))
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return body

    return st.one_of(
        st.builds(mutate, st.sampled_from(paths), _json_values),
        _json_values,
        st.binary(max_size=40),
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=_mutations())
async def test_fuzzed_replies_end_in_a_response_or_a_typed_error(body: object) -> None:
    """Whatever a server answers with, the run ends done or stopped with a valid history
    (never a raw exception), and the chat can continue."""
    async with (
        ScriptedOpenAIServer([fault.raw(body), text("after")]) as srv,
        AsyncOpenAISimpleAgent(
            model="m", api_key="k", base_url=srv.base_url, retry_strategy=NO_RETRIES
        ) as agent,
    ):
        response = await agent.send_message("hi")
        assert response.conversation.phase in (Phase.DONE, Phase.STOPPED)
        if response.stop_reason is StopReason.ERROR:
            assert response.error is not None
        again = await agent.send_message("again", conversation=response.conversation)
        assert again.stop_reason in (StopReason.RESPONSE, StopReason.ERROR)


@settings(max_examples=100, deadline=None)
@given(
    events=st.lists(
        st.one_of(
            st.builds(
                lambda c: {"choices": [{"index": 0, "delta": {"content": c}}]}, st.text(max_size=5)
            ),
            _json_values,
            st.binary(max_size=20),
            st.just("[DONE]"),
        ),
        max_size=5,
    )
)
async def test_fuzzed_streams_end_in_a_response_or_a_typed_error(events: list[object]) -> None:
    """Whatever a stream carries, a streamed run ends done or stopped, never raising."""
    async with (
        ScriptedOpenAIServer([fault.raw_stream(*events), text("after")]) as srv,
        AsyncOpenAIStreamingAgent(
            model="m", api_key="k", base_url=srv.base_url, retry_strategy=NO_RETRIES
        ) as agent,
    ):
        response = await agent.send_message("hi")
        assert response.conversation.phase in (Phase.DONE, Phase.STOPPED)
        again = await agent.send_message("again", conversation=response.conversation)
        assert again.conversation.phase in (Phase.DONE, Phase.STOPPED)


async def test_a_callers_cancel_wins_over_a_stop_that_came_with_it(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A stop and the caller's own cancel land together: the caller's cancel propagates (it
    is never swallowed as our stop), and the stored chat is still left stopped."""
    server.add(tool_calls(call("slow", {})), text("next run"))
    run: asyncio.Future[Any] | None = None
    agent: Any = None

    @tool
    async def slow() -> str:
        """Presses stop and cancels its own caller, then waits."""
        agent.request_stop("c1")
        assert run is not None
        run.cancel()
        await asyncio.sleep(3600)
        return "never"

    store = MemoryStore()
    agent = make_agent(store=store, tool_registry=[slow])
    run = asyncio.ensure_future(agent.send_message("go", chat_id="c1"))
    with pytest.raises(asyncio.CancelledError):
        await run
    stored = await store.load("c1")
    assert stored is not None
    assert (stored.phase, stored.stop_reason) == (Phase.STOPPED, StopReason.USER_STOP)
    again = await agent.send_message("again", chat_id="c1")
    assert again.output == "next run"


@pytest.mark.parametrize("annotation", ["int", "list[str]", "dict[str, str]"])
def test_an_injected_id_annotated_as_another_type_is_refused(annotation: str) -> None:
    """``user_id: int`` would receive a string: the tool is refused when it is defined."""
    from agentfsm import ToolDefinitionError

    namespace: dict[str, Any] = {}
    exec(  # a tool defined with the annotation under test
        f"def f(city: str, user_id: {annotation}) -> str:\n    '''Weather.'''\n    return city\n",
        namespace,
    )
    with pytest.raises(ToolDefinitionError, match="annotate it 'str \\| None'"):
        tool(namespace["f"])


def test_injected_ids_annotated_as_strings_are_accepted() -> None:
    """``user_id: str | None`` and ``chat_id: str`` (or no annotation) stay injected."""

    @tool
    def f(city: str, user_id: str | None, chat_id: str, context=None) -> str:  # type: ignore[no-untyped-def]
        """Weather."""
        return city

    assert set(f.parameters["properties"]) == {"city"}


async def test_an_answer_cut_by_the_token_limit_says_so(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """``finish_reason: "length"`` is on the response, the answer and its request record, so
    a caller can tell a cut answer from a full one; it survives dumps/loads."""
    from agentfsm import dumps, loads

    server.add(text("The answer was cut he", finish_reason="length"))
    response = await make_agent(max_completion_tokens=5).send_message("hi")
    assert response.finish_reason == "length"
    assert response.requests[-1].finish_reason == "length"
    last = response.conversation.messages[-1]
    assert getattr(last, "finish_reason", None) == "length"
    assert "finish_reason" not in response.history[-1]  # never sent back to a server
    assert loads(dumps(response.conversation)) == response.conversation


async def test_a_server_answering_a_stream_request_with_json_is_understood(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A server that ignores ``stream: true`` and answers a whole completion: the answer is
    taken (and handed to the token stream in one piece), not retried as a cut stream."""
    body = {
        "id": "x",
        "object": "chat.completion",
        "model": "scripted-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Whole."},
                "finish_reason": "stop",
            }
        ],
    }
    server.add(fault.raw(body))
    tokens: list[str] = []
    agent = make_agent(
        agent_class=AsyncOpenAIStreamingAgent,
        hooks={"on_token_received": lambda e: tokens.append(e.delta)},
    )
    response = await agent.send_message("hi")
    assert (response.stop_reason, response.output, tokens) == (
        StopReason.RESPONSE,
        "Whole.",
        ["Whole."],
    )
    assert len(server.requests) == 1


@tool
def _typed(
    city: str, days: int = 1, units: Literal["c", "f"] = "c", tags: list[str] | None = None
) -> str:
    """A tool with a few typed parameters."""
    return city


@settings(max_examples=200, deadline=None)
@given(
    arguments=st.one_of(
        st.text(max_size=30),
        _json_values.map(json.dumps),
        st.dictionaries(
            st.sampled_from(["city", "days", "units", "tags", "user_id", "x"]), _json_values
        ).map(json.dumps),
        st.integers(1, 3000).map(lambda n: '{"city": ' + "[" * n + "]" * n + "}"),
    )
)
def test_fuzzed_tool_arguments_are_accepted_or_refused_for_the_model(arguments: str) -> None:
    """Whatever arguments a model sends, preparing the call either succeeds or raises the
    ToolArgumentError the model reads; nothing else escapes."""
    from agentfsm import ToolArgumentError

    try:
        prepared = _typed.prepare(arguments)
    except ToolArgumentError as error:
        message = str(error)
    else:
        message = ""
        assert isinstance(prepared.arguments["city"], str)
    assert message == "" or message.startswith("Invalid arguments for tool '_typed'"), message


class _Weird:
    def __init__(self, shown: str | None) -> None:
        self.shown = shown

    def __str__(self) -> str:
        if self.shown is None:
            raise ValueError("cannot show")
        return self.shown


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.one_of(
        _json_values,
        st.builds(_Weird, st.none() | st.text(max_size=5)),
        st.sets(st.integers(), max_size=3),
        st.tuples(st.integers(), st.text(max_size=3)),
        st.integers(1, 50_000).map(lambda n: _nested(n)),
    )
)
async def test_fuzzed_tool_results_become_results_the_model_reads(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, value: object
) -> None:
    """Whatever a tool returns, the model gets a result (its text, or an error it can read)
    and the run goes on to its answer."""

    @tool
    def produce() -> object:
        """Returns the fuzzed value."""
        return value

    server.add(tool_calls(call("produce", {})), text("answered"))
    response = await make_agent(tool_registry=[produce]).send_message("go")
    assert response.output == "answered"
    assert [m["role"] for m in response.history] == ["user", "assistant", "tool", "assistant"]


def _nested(depth: int) -> object:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value
