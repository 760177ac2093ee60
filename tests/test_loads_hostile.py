"""Hostile stored payloads: ``loads`` returns a conversation that can run, or raises
SerializationError naming the fault; never another exception."""

from __future__ import annotations

import asyncio
import copy
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfsm import (
    AsyncOpenAISimpleAgent,
    Audio,
    Conversation,
    File,
    Image,
    SerializationError,
    dumps,
    loads,
    tool,
)
from agentfsm.testing import ScriptedOpenAIServer, call, fault, tool_calls, weather_scenario
from tests.test_media import png, wav
from tests.test_serde import V1_PARTS, v1_payload

GOLDEN = Path(__file__).parent / "golden"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------- real conversations


@tool
def get_weather(city: str) -> str:
    """Weather."""
    return f"Sunny in {city}"


async def _produce() -> list[Conversation]:
    """Conversations the agent itself writes: tool groups, new runs on an old conversation,
    dropped and summarized messages, a failed request, a max_turns stop, media parts."""
    ticks = iter(range(1_000_000))

    def clock() -> float:
        return 1_790_000_000.0 + next(ticks)

    async def no_sleep(_: float) -> None:
        return None

    produced: list[Conversation] = []
    options: dict[str, Any] = {
        "model": "m",
        "api_key": "k",
        "tool_registry": [get_weather],
        "clock": clock,
        "sleep": no_sleep,
        "pricing": {"input_per_million": "0.15", "output_per_million": "0.60"},
    }
    async with (
        ScriptedOpenAIServer(weather_scenario) as server,
        AsyncOpenAISimpleAgent(
            base_url=server.base_url,
            max_messages_in_context=4,
            dropping_strategy="summary_dropping",
            **options,
        ) as agent,
    ):
        conversation = None
        for message in ("weather in Tokyo?", "and Oslo?", "and Rome?", "and Lima?"):
            response = await agent.send_message(
                message, chat_id="real-1", conversation=conversation
            )
            conversation = response.conversation
            produced.append(conversation)
    script = [
        tool_calls(call("get_weather", {"city": "Rome"}), call("get_weather", {"city": "Oslo"}))
    ]
    async with (
        ScriptedOpenAIServer(script) as server,
        AsyncOpenAISimpleAgent(base_url=server.base_url, max_turns=1, **options) as agent,
    ):
        media = [
            "what is in these?",
            Image.from_bytes(png(3, 2), detail="high"),
            Audio.from_bytes(wav()),
            File.from_bytes(b"%PDF-1.4\n%%EOF\n", "a.pdf"),
            {"type": "input_text", "text": "a part agentfsm does not model"},
        ]
        response = await agent.send_message(media, chat_id="real-2", user_id="u")
        produced.append(response.conversation)
        server.add(fault.status(400))
        response = await agent.send_message("go on", conversation=response.conversation)
        produced.append(response.conversation)
    return produced


@functools.cache
def real_payloads() -> tuple[str, ...]:
    """Payloads as stores hold them: the golden files (v1 also with raw media parts, for
    the migration), and conversations the agent wrote."""
    golden = tuple(
        (GOLDEN / name).read_text() for name in ("conversation_v1.json", "conversation_v2.json")
    )
    golden += (json.dumps(v1_payload(V1_PARTS)),)
    return golden + tuple(dumps(c) for c in asyncio.run(_produce()))


def test_conversations_the_agent_writes_load_back_equal() -> None:
    """Every conversation the agent produces passes the checks and loads back equal; each
    transition raised its version once."""
    conversations = asyncio.run(_produce())
    phases = {
        (c.phase.value, c.stop_reason.value if c.stop_reason else None) for c in conversations
    }
    assert phases >= {("done", "response"), ("stopped", "error"), ("stopped", "max_turns")}
    assert any(c.context is not None and c.context.size < len(c.messages) for c in conversations)
    assert any(c.summary_upto > 0 for c in conversations)
    for conversation in conversations:
        assert loads(dumps(conversation)) == conversation
        assert conversation.version == len(conversation.transitions)


# --------------------------------------------------------------------------- the payload itself


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _deep_dict(depth: int) -> dict[str, Any]:
    inner: dict[str, Any] = {}
    for _ in range(depth):
        inner = {"a": inner}
    return inner


def _golden(version: int = 2) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"conversation_v{version}.json").read_text())
    return data


PAYLOADS: list[tuple[str, Any, str]] = [
    ("100,000 nested lists", _nested(100_000), "nested too deeply"),
    (
        "metadata nested 100,000 deep",
        json.dumps(_golden()).replace(
            '"metadata": {}', '"metadata": {"x": ' + _nested(100_000) + "}"
        ),
        "nested too deeply",
    ),
    ("a dict nested 100,000 deep", {"chat_id": "c", "metadata": _deep_dict(100_000)}, "nested"),
    ("bytes that are not UTF-8", b'{"chat_id": "\xff\xfe\xfa"}', "not a JSON conversation"),
    ("NaN", '{"chat_id": "c", "transitions": [], "metadata": {"x": NaN}}', "NaN"),
    ("Infinity", '{"chat_id": "c", "metadata": {"x": -Infinity}}', "Infinity"),
    ("a 5,000-digit integer", '{"chat_id": "c", "turn": ' + "9" * 5000 + "}", "not a JSON"),
    ("a number", "5", "must be a JSON object"),
    ("a list", b"[]", "must be a JSON object"),
    ("not a payload at all", 5, "JSON string or a dict"),
    ("a dict that JSON cannot hold", {"chat_id": "c", "metadata": {"x": {1, 2}}}, "not a JSON"),
]


@pytest.mark.parametrize(
    ("payload", "fragment"), [(p, f) for _, p, f in PAYLOADS], ids=[n for n, *_ in PAYLOADS]
)
def test_payloads_that_are_not_json_objects_are_refused(payload: Any, fragment: str) -> None:
    """Deep nesting, bad UTF-8, NaN, huge numbers and non-objects: a SerializationError."""
    with pytest.raises(SerializationError) as info:
        loads(payload)
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- strict values


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting the value at a ``a.b[0].c`` path (``a.b[0].c-`` deletes it)."""

    def mutate(data: dict[str, Any]) -> None:
        keys: list[Any] = []
        for piece in path.rstrip("-").replace("]", "").replace("[", ".").split("."):
            keys.append(int(piece) if piece.isdigit() else piece)
        target: Any = data
        for key in keys[:-1]:
            target = target[key]
        if path.endswith("-"):
            del target[keys[-1]]
        else:
            target[keys[-1]] = value

    return mutate


STRICT: list[tuple[str, Any, str]] = [
    ("messages[0].content", None, "expected a string or a list of content parts, got null"),
    ("messages[2].content", None, "expected a string, got null @ $.messages[2].content"),
    ("messages[3].content", 5, "expected a string, got the number 5 @ $.messages[3].content"),
    ("messages[1].tool_calls[0].name", None, "@ $.messages[1].tool_calls[0].name"),
    ("messages[1].tool_calls[0].arguments", {}, "got an object @ $.messages[1].tool_calls[0]"),
    ("messages[1].tool_calls[0].id", 7, "got the number 7 @ $.messages[1].tool_calls[0].id"),
    ("messages[2].tool_call_id", None, "got null @ $.messages[2].tool_call_id"),
    ("messages[0].name", 0, "got the number 0 @ $.messages[0].name"),
    ("messages[1].model", False, "got false @ $.messages[1].model"),
    ("messages[1].refusal", [], "got a list @ $.messages[1].refusal"),
    ("chat_id", None, "expected a string, got null @ $.chat_id"),
    ("chat_id", 123, "expected a string, got the number 123 @ $.chat_id"),
    ("user_id", 5, "@ $.user_id"),
    ("agent_name", None, "@ $.agent_name"),
    ("summary", 1.5, "@ $.summary"),
    ("transitions[0].reason", None, "@ $.transitions[0].reason"),
    ("requests[0].model", None, "@ $.requests[0].model"),
    ("error", {"type": None, "message": "m", "status": None, "model": None}, "@ $.error.type"),
    ("error", {"type": "T", "message": None, "status": None, "model": None}, "@ $.error.message"),
    ("messages[0].content[0].text", None, "@ $.messages[0].content[0].text"),
    ("messages[0].content[1].url", None, "@ $.messages[0].content[1].url"),
    ("messages[0].content[1].width", "3", "@ $.messages[0].content[1].width"),
    ("messages[0].content[1].detail", "max", "@ $.messages[0].content[1].detail"),
    ("messages[0].content[2].format", None, "@ $.messages[0].content[2].format"),
    ("messages[0].content[3].mime", 1, "@ $.messages[0].content[3].mime"),
    ("messages[0].content[4].data", "x", "@ $.messages[0].content[4].data"),
    ("messages[1].interrupted", "false", "expected true or false, got the string 'false'"),
    ("messages[2].is_error", 0, "@ $.messages[2].is_error"),
    ("usage.estimated", 0, "@ $.usage.estimated"),
    ("turn", "2", "expected an integer, got the string '2' @ $.turn"),
    ("turn", 2.0, "expected an integer, got the number 2.0 @ $.turn"),
    ("turn", True, "expected an integer, got true @ $.turn"),
    ("version", 2**63, "within 64 bits"),
    ("transitions[0].at", "1.0", "expected a finite number, got the string '1.0'"),
    ("transitions[0].turn", None, "@ $.transitions[0].turn"),
    ("requests[0].cost", "NaN", "got the string 'NaN' @ $.requests[0].cost"),
    ("cost", "1e99999", "expected a finite decimal number"),
    ("cost", True, "@ $.cost"),
    ("run_cost", "ten", "@ $.run_cost"),
    ("messages", "abc", "expected a list, got the string 'abc' @ $.messages"),
    ("messages", {"role": "user"}, "expected a list, got an object @ $.messages"),
    ("transitions", None, "@ $.transitions"),
    ("messages[0].role", "robot", "role must be one of system, user, assistant, tool"),
    ("messages[0].role-", None, "role must be one of system, user, assistant, tool, got null"),
    ("messages[0].content[0].type", "video", "type must be one of text, image, audio, file, raw"),
    ("messages[0]", "hello", "expected an object, got the string 'hello' @ $.messages[0]"),
    ("phase", None, "@ $.phase"),
    ("stop_reason", "bored", "@ $.stop_reason"),
    ("metadata", [], "@ $.metadata"),
    ("usage", 5, "expected an object, got the number 5 @ $.usage"),
    ("surprise", 1, "extra fields found (surprise)"),
]


@pytest.mark.parametrize(
    ("path", "value", "fragment"), STRICT, ids=[f"{p}={v!r}"[:60] for p, v, _ in STRICT]
)
def test_values_of_the_wrong_type_are_refused_with_their_path(
    path: str, value: Any, fragment: str
) -> None:
    """null is not the string "None", "false" is not True, "2" is not 2: the path is named."""
    data = _golden()
    _set(path, value)(data)
    with pytest.raises(SerializationError) as info:
        loads(data)
    assert fragment in str(info.value)
    with pytest.raises(SerializationError):
        loads(json.dumps(data))


# --------------------------------------------------------------------------- consistency

CONTEXT = {
    "selected": [0, 1, 2, 3],
    "truncated": {},
    "notes": [],
    "tokens": 10,
    "fits": True,
    "dropped": 0,
    "size": 4,
}


def _context(**changes: Any) -> dict[str, Any]:
    return {**CONTEXT, **changes}


def _append(path: str, index: int) -> Callable[[dict[str, Any]], None]:
    """A mutation inserting a copy of ``messages[index]`` at list position ``path``."""

    def mutate(data: dict[str, Any]) -> None:
        data["messages"].insert(int(path), copy.deepcopy(data["messages"][index]))

    return mutate


INCONSISTENT: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("phase is not where the log ends", _set("phase", "stopped"), "@ $.phase"),
    ("a broken chain", _set("transitions[2].from_phase", "done"), "@ $.transitions[2].from_phase"),
    (
        "version below the log",
        _set("version", 4),
        "below the 5 transitions that each raised it @ $.version",
    ),
    (
        "index 999 on 4 messages",
        _set("context", _context(selected=[0, 1, 2, 999])),
        "@ $.context.selected[3]",
    ),
    ("selected twice", _set("context", _context(selected=[0, 1, 1])), "@ $.context.selected[2]"),
    ("selected backwards", _set("context", _context(selected=[2, 0])), "@ $.context.selected[1]"),
    ("selected negative", _set("context", _context(selected=[-1, 0])), "@ $.context.selected[0]"),
    ("a window over more messages", _set("context", _context(size=5)), "@ $.context.size"),
    (
        "a cut of a message not sent",
        _set("context", _context(selected=[0], truncated={"2": 5})),
        "@ $.context.truncated",
    ),
    ("a negative cut", _set("context", _context(truncated={"2": -5})), "@ $.context.truncated"),
    ("run_start past the end", _set("run_start", 4), "@ $.run_start"),
    ("run_start negative", _set("run_start", -1), "@ $.run_start"),
    (
        "run_start at an assistant message",
        _set("run_start", 1),
        "is not a user message @ $.run_start",
    ),
    ("summary_upto past the end", _set("summary_upto", 5), "@ $.summary_upto"),
    ("summary_upto negative", _set("summary_upto", -2), "@ $.summary_upto"),
    ("run_request_start past the end", _set("run_request_start", 3), "@ $.run_request_start"),
    (
        "a result of no call",
        _set("messages[2].tool_call_id", "call_2"),
        "(or answers it again) @ $.messages[2].tool_call_id",
    ),
    ("a result answering twice", _append("3", 2), "@ $.messages[3].tool_call_id"),
    ("a result after a user message", _append("2", 0), "@ $.messages[3].tool_call_id"),
    ("a result after the final answer", _append("4", 2), "@ $.messages[4].tool_call_id"),
    (
        "no messages but a run_start",
        lambda d: d.update(messages=[], run_start=1, summary_upto=0),
        "@ $.run_start",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "fragment"), [(m, f) for _, m, f in INCONSISTENT], ids=[n for n, *_ in INCONSISTENT]
)
def test_inconsistent_conversations_are_refused_with_their_path(
    mutate: Callable[[dict[str, Any]], None], fragment: str
) -> None:
    """A well-typed conversation that contradicts itself would fail later, in step():
    loads refuses it and says where."""
    data = _golden(1)
    loads(copy.deepcopy(data))  # loads as it is
    mutate(data)
    with pytest.raises(SerializationError) as info:
        loads(data)
    assert fragment in str(info.value)
    assert str(info.value).startswith("not a consistent conversation: ")


def test_a_conversation_with_no_messages_still_loads() -> None:
    """A bare conversation (what a store's own tests save) is consistent."""
    conversation = Conversation(chat_id="race", version=7, metadata={"log": []})
    assert loads(dumps(conversation)) == conversation


# --------------------------------------------------------------------------- fuzzing

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
_DEEP = "__deep__"


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value, the value itself first."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(_paths(item, (*prefix, i)))
    return found


_replacements = st.one_of(
    _json,
    st.sampled_from([None, "", "None", 0, -1, 2**63, 10**30, 1e308, -0.0, True, [], {}, _DEEP]),
)


def _mutate(data: Any, draw: st.DrawFn) -> Any:
    """One random change at a random place inside ``data``: drop a key or an item, or
    replace a value (random JSON, null, a huge number, deep nesting…)."""
    paths = _paths(data)[1:]  # random whole payloads are test_random_json's
    if not paths:
        return data
    path = draw(st.sampled_from(paths))
    parent: Any = data
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(_replacements)
    return data


def _only_ours(payload: Any) -> None:
    """loads returns, or raises SerializationError (an AgentFSMError); a conversation that
    loads dumps and loads back equal."""
    try:
        conversation = loads(payload)
    except SerializationError:  # an AgentFSMError: anything else fails the test
        return
    assert loads(dumps(conversation)) == conversation


@FUZZ
@given(st.data())
def test_mutated_real_payloads_load_or_raise_ours(data: st.DataObject) -> None:
    """Real payloads, changed at random places (keys dropped, types changed, nulls, huge
    numbers, deep nesting): loads never raises anything but an AgentFSMError."""
    payload = json.loads(data.draw(st.sampled_from(real_payloads())))
    for _ in range(data.draw(st.integers(1, 4))):
        payload = _mutate(payload, data.draw)
    text = json.dumps(payload).replace(json.dumps(_DEEP), _nested(50_000))
    _only_ours(text)
    if isinstance(payload, dict) and _DEEP not in text:
        _only_ours(payload)


@FUZZ
@given(_json)
def test_random_json_loads_or_raises_ours(value: Any) -> None:
    """Any JSON value, as text or as a dict: loads never raises anything but ours."""
    _only_ours(json.dumps(value))
    if isinstance(value, dict):
        _only_ours(value)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(sorted(json.loads(dumps(Conversation(chat_id="c"))))), _json)
)
def test_random_fields_load_or_raise_ours(fields: dict[str, Any]) -> None:
    """Objects with the conversation's own keys and random values: ours, or a conversation."""
    _only_ours({"chat_id": "c", **fields})


@FUZZ
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_random_bytes_and_text_load_or_raise_ours(payload: bytes | str) -> None:
    """Bytes and text that are not JSON at all: a SerializationError."""
    _only_ours(payload)


@pytest.mark.parametrize(
    ("phase", "stop_reason", "says"),
    [
        ("stopped", None, "a stopped run needs a stop_reason"),
        ("awaiting_model", "response", "has no stop_reason yet"),
        ("done", "max_turns", "a done run ends with stop_reason response"),
    ],
)
def test_a_stop_reason_that_contradicts_the_phase_is_refused(
    phase: str, stop_reason: str | None, says: str
) -> None:
    """``phase`` and ``stop_reason`` agree: a finished run has one, a running run has none."""
    from agentfsm import SerializationError, dumps, loads
    from agentfsm.state import Conversation

    data = json.loads(dumps(Conversation(chat_id="c")))
    data.update(phase=phase, stop_reason=stop_reason)
    with pytest.raises(SerializationError, match=says) as caught:
        loads(data)
    assert "$.stop_reason" in str(caught.value)
