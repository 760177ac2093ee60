"""Serialization: dumps/loads round trips, the golden v1 payload, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfsm import (
    AssistantMessage,
    Conversation,
    ErrorInfo,
    Phase,
    SerializationError,
    StopReason,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    TransitionRecord,
    Usage,
    UserMessage,
    dumps,
    loads,
)
from agentfsm.messages import RawPart

GOLDEN = Path(__file__).parent / "golden"

_text = st.text(max_size=20)
_ids = st.text("abcdef0123456789_", min_size=1, max_size=10)
_parts = st.lists(
    st.one_of(
        st.builds(TextPart, _text),
        st.builds(
            RawPart,
            st.fixed_dictionaries(
                {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": _text})}
            ),
        ),
    ),
    min_size=1,
    max_size=3,
).map(tuple)
_messages = st.one_of(
    st.builds(SystemMessage, _text),
    st.builds(UserMessage, st.one_of(_text, _parts), name=st.none() | _ids),
    st.builds(
        AssistantMessage,
        st.none() | _text,
        st.lists(st.builds(ToolCall, _ids, _ids, _text), max_size=3).map(tuple),
        interrupted=st.booleans(),
    ),
    st.builds(ToolMessage, _ids, _text, tool_name=st.none() | _ids, is_error=st.booleans()),
)
_usage = st.builds(
    Usage,
    *(st.integers(0, 10**6) for _ in range(6)),
    estimated=st.booleans(),
)
_conversations = st.builds(
    Conversation,
    chat_id=_ids,
    user_id=st.none() | _ids,
    agent_name=_ids,
    phase=st.sampled_from(Phase),
    messages=st.lists(_messages, max_size=6).map(tuple),
    summary=st.none() | _text,
    run_start=st.integers(0, 5),
    turn=st.integers(0, 50),
    function_calls=st.integers(0, 50),
    usage=_usage,
    run_usage=_usage,
    stop_reason=st.none() | st.sampled_from(StopReason),
    error=st.none() | st.builds(ErrorInfo, _ids, _text, st.none() | st.integers(400, 599)),
    transitions=st.lists(
        st.builds(
            TransitionRecord,
            st.sampled_from(Phase),
            st.sampled_from(Phase),
            _ids,
            st.integers(0, 9),
            st.floats(0, 2e9, allow_nan=False),
        ),
        max_size=4,
    ).map(tuple),
    version=st.integers(0, 1000),
    metadata=st.dictionaries(_ids, st.integers() | _text, max_size=3),
)


@given(_conversations)
def test_any_conversation_round_trips_through_json(conversation: Conversation) -> None:
    """dumps then loads gives back an equal conversation, whatever it holds."""
    assert loads(dumps(conversation)) == conversation
    assert loads(json.loads(dumps(conversation))) == conversation


def test_golden_v1_payload_still_loads() -> None:
    """The schema_version 1 payload written by 0.1.0 loads to the same conversation."""
    payload = (GOLDEN / "conversation_v1.json").read_text()
    conversation = loads(payload)
    assert conversation.schema_version == 1
    assert conversation.phase is Phase.DONE
    assert conversation.stop_reason is StopReason.RESPONSE
    assert [m.role for m in conversation.messages] == ["user", "assistant", "tool", "assistant"]
    assert json.loads(dumps(conversation)) == json.loads(payload)


def test_a_newer_schema_is_refused_clearly() -> None:
    """A payload from a newer agentfsm says to upgrade instead of loading half of it."""
    with pytest.raises(SerializationError, match="upgrade agentfsm"):
        loads({"chat_id": "c", "schema_version": 99})


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("not json", "not a JSON conversation"),
        ("[]", "must be a JSON object"),
        ('{"chat_id": "c", "turn": "x"}', "$.turn"),
        ('{"chat_id": "c", "phase": "flying"}', "$.phase"),
    ],
)
def test_malformed_payloads_name_the_fault(payload: str, fragment: str) -> None:
    """Bad payloads raise SerializationError pointing at the path."""
    with pytest.raises(SerializationError) as info:
        loads(payload)
    assert fragment in str(info.value)
