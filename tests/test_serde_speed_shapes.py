"""The layouts and fast paths behind quick serialization: token counts stored with their
messages, context windows stored as runs, the fast reading path agreeing with the converter,
and the response's lazily built history views."""

from __future__ import annotations

import copy
import json
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfsm import (
    AgentResponse,
    AssistantMessage,
    ContextWindow,
    Conversation,
    Phase,
    SerializationError,
    StopReason,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
    dumps,
    loads,
    serde,
)
from agentfsm._indices import Indices
from agentfsm.context import ContextSettings
from agentfsm.context.counting import AccurateCounter
from agentfsm.context.trimming import fit
from agentfsm.messages import Message, messages_to_openai
from tests.test_loads_hostile import _mutate, real_payloads

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _chat(turns: int) -> Conversation:
    history: list[Message] = [SystemMessage("be brief")]
    for t in range(turns):
        call = ToolCall(f"call_{t}", "search", f'{{"q": "topic {t}"}}')
        history += [
            UserMessage(f"question {t}: what about the river and the stone?"),
            AssistantMessage(tool_calls=(call,), model="m", finish_reason="tool_calls"),
            ToolMessage(call.id, f"result {t}: " + "maple quartz tiger " * 20, tool_name="search"),
            AssistantMessage(f"answer {t}: the orbit holds.", model="m", finish_reason="stop"),
        ]
    return Conversation(
        chat_id="c",
        phase=Phase.DONE,
        stop_reason=StopReason.RESPONSE,
        messages=tuple(history),
        run_start=len(history) - 4,
    )


class _Tracing(AccurateCounter):
    """An accurate counter that records the texts it tokenizes."""

    def __init__(self, encoding: str = "o200k_base") -> None:
        super().__init__(encoding)
        self.seen: list[str] = []

    def count_text(self, text: str) -> int:
        self.seen.append(text)
        return super().count_text(text)


def _fit(conversation: Conversation, counter: AccurateCounter, limit: int = 100_000) -> Any:
    return fit(
        conversation.messages,
        newest_user=conversation.run_start,
        system_prompt="You help.",
        summary=None,
        tools=(),
        settings=ContextSettings(max_context_length=limit),
        counter=counter,
    )


# --------------------------------------------------------------------------- token counts


def test_token_counts_travel_with_the_messages() -> None:
    """A conversation counted before it was saved is not tokenized again after a load: the
    counts come back with the messages, and equal what counting afresh gives."""
    conversation = _chat(5)
    counter = AccurateCounter()
    before = _fit(conversation, counter)
    data = json.loads(dumps(conversation))
    for message, stored in zip(conversation.messages, data["messages"], strict=True):
        total, content = counter.count_message(message), counter.count_content(message)
        assert stored["tokens"] == f"o200k_base:{total}:{content}"

    loaded = loads(dumps(conversation))
    assert loaded == conversation
    fresh = _Tracing()
    after = _fit(loaded, fresh)
    assert after == before
    assert not any("river" in text or "maple" in text for text in fresh.seen)
    counted = [fresh.count_message(m) for m in loaded.messages]
    assert counted == [AccurateCounter().count_message(attrs.evolve(m)) for m in loaded.messages]


def test_counts_of_another_encoding_are_ignored_and_both_are_kept() -> None:
    """A counter with another encoding counts for itself; the message then carries both."""
    conversation = _chat(1)
    _fit(conversation, AccurateCounter())
    loaded = loads(dumps(conversation))
    other = _Tracing("cl100k_base")
    _fit(loaded, other)
    assert any("maple" in text for text in other.seen)
    stored = json.loads(dumps(loaded))["messages"][3]["tokens"]
    assert {entry.split(":")[0] for entry in stored.split(";")} == {"o200k_base", "cl100k_base"}
    again = loads(dumps(loaded))
    first, second = _Tracing(), _Tracing("cl100k_base")
    _fit(again, first)
    _fit(again, second)
    assert not any("maple" in text for text in first.seen + second.seen)


def test_a_changed_message_is_counted_afresh() -> None:
    """Counts belong to the message object: an evolved message is a new one, counted anew."""
    message = ToolMessage("call_1", "maple " * 50)
    counter = AccurateCounter()
    counter.count_message(message)
    changed = attrs.evolve(message, content="quartz")
    assert changed._tokens is None
    assert "tokens" not in serde.unstructure(changed)
    assert counter.count_message(changed) < counter.count_message(message)
    total, content = counter.count_message(message), counter.count_content(message)
    assert serde.unstructure(message)["tokens"] == f"o200k_base:{total}:{content}"


@pytest.mark.parametrize(
    "tokens",
    [
        None,
        [],
        57,
        {"o200k_base": [57, 50]},
        "",
        "57",
        "o200k_base",
        "o200k_base:57",
        "o200k_base:57:50:1",
        "o200k_base:-1:0",
        "o200k_base:5.0:1",
        "o200k_base:1e3:5",
        "o200k_base:9999999999999999999:0",
        ":57:50",
        "o200k base:57:50",
        "o200k_base:57:50;",
        "o200k_base:57:50;cl100k_base",
    ],
)
def test_bad_stored_counts_are_refused(tokens: Any) -> None:
    """Counts are ``encoding:total:content`` (several joined by ``;``) with counts of at
    most 18 digits: anything else is refused with the message's path, as text and as a
    dict."""
    data = json.loads(dumps(_chat(1)))
    data["messages"][2]["tokens"] = tokens
    for payload in (data, json.dumps(data)):
        with pytest.raises(SerializationError, match=r"tokens.* @ \$\.messages\[2\]"):
            loads(payload)


def test_counts_that_contradict_themselves_are_counted_afresh() -> None:
    """A stored count whose content exceeds its total loads (it has the form) but is not
    believed: the counter counts the message itself."""
    conversation = _chat(1)
    data = json.loads(dumps(conversation))
    data["messages"][3]["tokens"] = "o200k_base:5:7;cl100k_base:9:2"
    loaded = loads(data)
    counter = _Tracing()
    assert counter.count_message(loaded.messages[3]) == AccurateCounter().count_message(
        conversation.messages[3]
    )
    assert any("maple" in text for text in counter.seen)
    assert json.loads(dumps(loaded))["messages"][3]["tokens"].split(";")[1] == "cl100k_base:9:2"


# --------------------------------------------------------------------------- context windows


def _windowed(selected: Any, size: int = 9, **fields: Any) -> dict[str, Any]:
    data = json.loads(dumps(_chat(2)))
    data["context"] = {
        "selected": selected,
        "truncated": {},
        "notes": [],
        "tokens": 10,
        "fits": True,
        "dropped": 0,
        "size": size,
        **fields,
    }
    return data


def test_a_window_is_stored_as_runs() -> None:
    """A window over every message of a long chat is one run, however long the chat."""
    window = ContextWindow(selected=range(10_000), size=10_000, truncated={9_999: 5})
    assert window.selected == tuple(range(10_000))
    assert serde.unstructure(window)["selected"] == [[0, 10_000]]
    sparse = ContextWindow(selected=(0, 4, 5, 6, 9), size=10)
    assert serde.unstructure(sparse)["selected"] == [0, [4, 7], 9]
    assert serde.structure(serde.unstructure(sparse), ContextWindow) == sparse


@pytest.mark.parametrize(
    "selected",
    [[0, 1, 2, 3, 4, 5, 6, 7, 8], [[0, 9]], [0, [1, 3], 3, [4, 9]], [[0, 2], [2, 5], 8], []],
)
def test_indices_and_runs_load_alike_and_merge(selected: list[Any]) -> None:
    """Indices (schema 2's layout) and runs may mix; what loads is merged into runs."""
    expected = tuple(
        i for item in selected for i in ([item] if isinstance(item, int) else range(*item))
    )
    for payload in (_windowed(selected), json.dumps(_windowed(selected))):
        window = loads(payload).context
        assert window is not None
        assert window.selected == expected
        assert window.selected == Indices.of(expected)
        assert len(window.selected.runs) == len(Indices.of(expected).runs)


@pytest.mark.parametrize(
    ("selected", "fragment"),
    [
        (
            [[3, 3]],
            "[3, 3] is not a run of message indices above -1 and up to 9 @ $.context.selected[0]",
        ),
        ([0, [5, 2]], "@ $.context.selected[1]"),
        ([[0, 10]], "@ $.context.selected[0]"),
        ([[0, 5], 4], "4 is not a message index above 4 and below 9 @ $.context.selected[1]"),
        ([[0, 5], [3, 6]], "@ $.context.selected[1]"),
        ([-1, [0, 2]], "@ $.context.selected[0]"),
    ],
)
def test_runs_that_contradict_the_window_are_refused(selected: list[Any], fragment: str) -> None:
    """Runs must ascend without overlapping and stay below the window's size."""
    with pytest.raises(SerializationError) as info:
        loads(_windowed(selected))
    assert str(info.value).startswith("not a consistent conversation: ")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("selected", "fragment"),
    [
        ([[1, 2, 3]], "expected an index or a [start, stop] pair, got a list of 3"),
        ([["a", 2]], "expected an integer, got the string 'a'"),
        ([0, None], "expected an integer, got null"),
        ({"0": 1}, "expected a list, got an object"),
        ([[0, 2**63]], "within 64 bits"),
    ],
)
def test_malformed_runs_are_refused_with_their_path(selected: Any, fragment: str) -> None:
    """A run is an index or a [start, stop] pair of 64-bit integers."""
    for payload in (_windowed(selected), json.dumps(_windowed(selected))):
        with pytest.raises(SerializationError, match=r"context\.selected") as info:
            loads(payload)
        assert fragment in str(info.value)


def test_a_long_chat_trimmed_to_its_tail_lists_no_index() -> None:
    """Trimming a 10,000-message chat to a small limit: what is dropped is one run, and the
    window stored with the chat is a few numbers long."""
    conversation = _chat(2_500)
    decision = _fit(conversation, AccurateCounter(), limit=4_000)
    assert len(decision.dropped) > 9_000
    assert len(decision.dropped.runs) <= 3
    assert len(decision.selected.runs) <= 3
    window = ContextWindow(
        selected=decision.selected, size=len(conversation.messages), dropped=len(decision.dropped)
    )
    stored = json.dumps(serde.unstructure(window))
    assert len(stored) < 200
    assert sorted([*decision.selected, *decision.dropped, *decision.excluded]) == list(
        range(len(conversation.messages))
    )


@given(st.sets(st.integers(0, 60), max_size=40), st.integers(-70, 70))
def test_indices_read_like_their_tuple(values: set[int], probe: int) -> None:
    """Indices equal, index, slice, hash, contain and iterate as the tuple of their ints."""
    plain = tuple(sorted(values))
    indices = Indices.of(plain)
    assert indices == plain
    assert plain == indices
    assert hash(indices) == hash(plain)
    assert len(indices) == len(plain)
    assert bool(indices) == bool(plain)
    assert list(indices) == list(plain)
    assert list(reversed(indices)) == list(reversed(plain))
    assert (probe in indices) == (probe in plain)
    assert indices[probe % 7 : probe % 11] == plain[probe % 7 : probe % 11]
    if -len(plain) <= probe < len(plain):
        assert indices[probe] == plain[probe]
    else:
        with pytest.raises(IndexError):
            indices[probe]
    assert tuple(indices.complement(61)) == tuple(i for i in range(61) if i not in values)
    assert Indices(indices.runs) == indices


# --------------------------------------------------------------------------- the fast path


def _by_converter(data: dict[str, Any]) -> Conversation | None:
    """What the converter alone makes of JSON ``data`` (None: it refuses)."""
    try:
        converted: Conversation = serde._converter.structure(data, Conversation)
    except Exception:
        return None
    return converted


@FUZZ
@given(st.data())
def test_the_fast_path_never_accepts_what_the_converter_refuses(data: st.DataObject) -> None:
    """On real payloads changed at random, the fast path either gives up or gives what the
    converter gives; loads of the text and of the dict agree."""
    payload = json.loads(data.draw(st.sampled_from(real_payloads())))
    if payload.get("schema_version") != 3:
        return
    for _ in range(data.draw(st.integers(0, 3))):
        payload = _mutate(payload, data.draw)
    if not isinstance(payload, dict) or "__deep__" in json.dumps(payload):
        return
    try:
        fast = serde._fast_conversation(copy.deepcopy(payload), json_data=True)
    except serde._SlowPathError:
        fast = None
    slow = _by_converter(copy.deepcopy(payload))
    if fast is not None:
        assert slow == fast
    outcomes = []
    for form in (payload, json.dumps(payload)):
        try:
            outcomes.append(loads(form))
        except SerializationError as error:
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[1]


def test_real_payloads_take_the_fast_path() -> None:
    """What agentfsm writes is read by the fast path (the converter is the slow fallback)."""
    for text in real_payloads():
        data = json.loads(text)
        if data.get("schema_version") == 3:
            assert serde._fast_conversation(data, json_data=True) == loads(text)


def test_a_callers_dict_is_copied_and_taken_as_json() -> None:
    """loads(dict) keeps nothing of the caller's: metadata changed afterwards does not change
    the conversation, and a tuple in it is read as JSON reads it (a list)."""
    data = json.loads(dumps(_chat(1)))
    data["metadata"] = {"tags": ("a", "b"), "nested": {"n": [1, 2]}}
    conversation = loads(data)
    data["metadata"]["nested"]["n"].append(3)
    assert conversation.metadata == {"tags": ["a", "b"], "nested": {"n": [1, 2]}}
    assert conversation == loads(
        json.dumps(data | {"metadata": {"tags": ["a", "b"], "nested": {"n": [1, 2]}}})
    )


def test_a_dict_with_a_default_left_out_still_loads() -> None:
    """A payload written by hand, with defaults left out, goes the converter's way."""
    data = json.loads(dumps(_chat(1)))
    for message in data["messages"]:
        message.pop("name", None)
    del data["summary"]
    assert loads(data) == loads(json.dumps(data)) == _chat(1)


# --------------------------------------------------------------------------- the response


def test_the_response_builds_its_history_views_when_read() -> None:
    """The history views are built from the conversation on first read, then kept; given
    ones are kept as given; neither changes equality."""
    conversation = _chat(3)
    response = AgentResponse.from_conversation(conversation)
    assert response._history is None
    assert response.history == messages_to_openai(conversation.messages)
    assert response.history is response.history
    assert response.history_without_function_calls == [
        m
        for m in messages_to_openai(conversation.messages)
        if m["role"] == "user" or (m["role"] == "assistant" and m.get("content"))
    ]
    assert response == AgentResponse.from_conversation(conversation)
    given_history = [{"role": "user", "content": "hi"}]
    built = attrs.evolve(response, history=given_history)
    assert built.history is given_history
    assert response.to_dict()["history"] == response.history
