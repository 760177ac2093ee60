"""Serialization: dumps/loads round trips, the golden payloads, the v1 -> v2 migration."""

from __future__ import annotations

import base64
import copy
import itertools
import json
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfsm import (
    AssistantMessage,
    AudioPart,
    ContextWindow,
    Conversation,
    ErrorInfo,
    FilePart,
    ImagePart,
    Phase,
    RawPart,
    RequestRecord,
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
from agentfsm.messages import Message
from agentfsm.state import SCHEMA_VERSION

GOLDEN = Path(__file__).parent / "golden"

# --------------------------------------------------------------------------- strategies

_text = st.text(max_size=20)
_ids = st.text("abcdef0123456789_", min_size=1, max_size=10)
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_parts = st.lists(
    st.one_of(
        st.builds(TextPart, _text),
        st.builds(
            ImagePart,
            _text,
            st.none() | st.sampled_from(["auto", "low", "high"]),
            mime=st.none() | st.sampled_from(["image/png", "image/jpeg"]),
            width=st.none() | st.integers(1, 100_000),
            height=st.none() | st.integers(1, 100_000),
        ),
        st.builds(AudioPart, _text, st.sampled_from(["wav", "mp3", "flac"])),
        st.builds(
            FilePart,
            st.none() | _text,
            file_data=st.none() | _text,
            file_id=st.none() | _ids,
            mime=st.none() | _text,
        ),
        st.builds(
            RawPart,
            st.dictionaries(_text, _json, max_size=3).map(lambda d: {**d, "type": "input_x"}),
        ),
    ),
    max_size=4,
).map(tuple)
_usage = st.builds(
    Usage,
    *(st.integers(0, 10**6) for _ in range(6)),
    estimated=st.booleans(),
)


@st.composite
def _group(draw: st.DrawFn) -> list[Message]:
    """An assistant message with tool calls, then results answering some of them, once."""
    ids = draw(st.lists(_ids, min_size=1, max_size=3, unique=True))
    calls = tuple(ToolCall(i, draw(_ids), draw(_text)) for i in ids)
    order = draw(st.permutations(ids))
    answered = order[: draw(st.integers(0, len(order)))]
    results = [
        ToolMessage(i, draw(_text), tool_name=draw(st.none() | _ids), is_error=draw(st.booleans()))
        for i in answered
    ]
    return [AssistantMessage(draw(st.none() | _text), calls), *results]


_singles = st.one_of(
    st.builds(SystemMessage, _text).map(lambda m: [m]),
    st.builds(UserMessage, st.one_of(_text, _parts), name=st.none() | _ids).map(lambda m: [m]),
    st.builds(AssistantMessage, st.none() | _text, interrupted=st.booleans()).map(lambda m: [m]),
)
_blocks = st.lists(st.one_of(_singles, _group()), max_size=3).map(
    lambda blocks: [m for block in blocks for m in block]
)


@st.composite
def _conversations(draw: st.DrawFn) -> Conversation:
    """A consistent conversation: what loads accepts, whatever its content."""
    earlier, run = draw(_blocks), draw(_blocks)
    user = draw(st.builds(UserMessage, st.one_of(_text, _parts)))
    messages = () if draw(st.booleans()) and not earlier else (*earlier, user, *run)
    phases = draw(st.lists(st.sampled_from(Phase), max_size=5))
    transitions = tuple(
        TransitionRecord(a, b, draw(_ids), draw(st.integers(0, 9)), draw(st.floats(0, 2e9)))
        for a, b in itertools.pairwise(phases)
    )
    phase = phases[-1] if transitions else draw(st.sampled_from(Phase))
    size = draw(st.integers(0, len(messages)))
    selected = tuple(sorted(draw(st.sets(st.integers(0, size - 1), max_size=size)))) if size else ()
    context = draw(
        st.none()
        | st.builds(
            ContextWindow,
            selected=st.just(selected),
            truncated=st.dictionaries(st.sampled_from(selected), st.integers(0, 999))
            if selected
            else st.just({}),  # type: ignore[arg-type]
            notes=st.lists(_text, max_size=2).map(tuple),
            tokens=st.integers(0, 10**6),
            fits=st.booleans(),
            dropped=st.integers(0, size),
            size=st.just(size),
        )
    )
    requests = draw(
        st.lists(
            st.builds(
                RequestRecord,
                model=_ids,
                usage=_usage,
                cost=st.decimals(0, 10, places=7),
                attempts=st.integers(1, 5),
                duration=st.floats(0, 100),
                at=st.floats(0, 2e9),
            ),
            max_size=3,
        )
    )
    return Conversation(
        chat_id=draw(_ids),
        user_id=draw(st.none() | _ids),
        agent_name=draw(_ids),
        phase=phase,
        messages=messages,
        summary=draw(st.none() | _text),
        summary_upto=draw(st.integers(0, len(messages))),
        context=context,
        run_start=len(earlier) if messages else 0,
        turn=draw(st.integers(0, 50)),
        function_calls=draw(st.integers(0, 50)),
        usage=draw(_usage),
        run_usage=draw(_usage),
        requests=tuple(requests),
        run_request_start=draw(st.integers(0, len(requests))),
        cost=sum((r.cost for r in requests), Decimal(0)),
        stop_reason=(
            None
            if not phase.terminal
            else StopReason.RESPONSE
            if phase is Phase.DONE
            else draw(st.sampled_from([r for r in StopReason if r is not StopReason.RESPONSE]))
        ),
        error=draw(
            st.none() | st.builds(ErrorInfo, _ids, _text, st.none() | st.integers(400, 599))
        ),
        transitions=transitions,
        version=len(transitions) + draw(st.integers(0, 1000)),
        metadata=draw(st.dictionaries(_ids, _json, max_size=3)),
    )


conversations = _conversations()


# --------------------------------------------------------------------------- round trips


@settings(max_examples=200, deadline=None)
@given(conversations)
def test_any_conversation_round_trips_through_json(conversation: Conversation) -> None:
    """dumps then loads gives back an equal conversation, whatever it holds."""
    assert loads(dumps(conversation)) == conversation
    assert loads(json.loads(dumps(conversation))) == conversation
    assert loads(dumps(conversation).encode()) == conversation


@given(_parts)
def test_content_parts_round_trip_with_their_tags(parts: tuple[Any, ...]) -> None:
    """Every kind of part is written under its own tag and read back equal."""
    conversation = Conversation(chat_id="c", messages=(UserMessage(parts),))
    data = json.loads(dumps(conversation))
    tags = {TextPart: "text", ImagePart: "image", AudioPart: "audio", FilePart: "file"}
    assert [p["type"] for p in data["messages"][0]["content"]] == [
        tags.get(type(p), "raw") for p in parts
    ]
    assert loads(data).messages[0] == UserMessage(parts)


# --------------------------------------------------------------------------- golden payloads


def test_golden_v1_payload_still_loads() -> None:
    """The schema_version 1 payload written by 0.1.0 loads to the same conversation."""
    payload = (GOLDEN / "conversation_v1.json").read_text()
    conversation = loads(payload)
    assert json.loads(payload)["schema_version"] == 1
    assert conversation.schema_version == SCHEMA_VERSION  # migrated on the way in
    assert conversation.phase is Phase.DONE
    assert conversation.stop_reason is StopReason.RESPONSE
    assert [m.role for m in conversation.messages] == ["user", "assistant", "tool", "assistant"]
    expected = {**json.loads(payload), "schema_version": SCHEMA_VERSION}
    for record in expected["requests"]:  # fields added since, at their defaults
        record["finish_reason"] = None
    for message in expected["messages"]:
        if message["role"] == "assistant":
            message["finish_reason"] = None
    expected.update(output_spec=None, output_retries=0, guard=None, tool_attempt=0)
    for transition in expected["transitions"]:
        transition["guard"] = None
    assert json.loads(dumps(conversation)) == expected


def test_golden_v2_payload_loads_and_dumps_to_itself() -> None:
    """The schema_version 2 payload, with typed image, audio and file parts and a raw part,
    loads and dumps back to the very same file, but for its schema_version and the one field
    added since, at its default (schema 3 only added optional layouts)."""
    payload = (GOLDEN / "conversation_v2.json").read_text()
    conversation = loads(payload)
    assert conversation.schema_version == SCHEMA_VERSION == 3
    first = conversation.messages[0]
    assert isinstance(first, UserMessage)
    assert [part.type for part in first.content] == ["text", "image", "audio", "file", "image_url"]
    _, image, audio, document, raw = first.content
    assert isinstance(image, ImagePart)
    assert (image.detail, image.mime, image.width, image.height) == ("low", "image/png", 3, 2)
    assert audio == AudioPart(audio.data, "wav")  # type: ignore[union-attr]
    assert isinstance(document, FilePart)
    assert (document.filename, document.mime) == ("itinerary.pdf", "application/pdf")
    assert isinstance(raw, RawPart)
    assert raw.data["cache_control"] == {"type": "ephemeral"}
    written = payload.replace('"schema_version": 2,', '"schema_version": 3,').replace(
        '"guard": null\n}', '"guard": null,\n  "tool_attempt": 0\n}'
    )
    assert dumps(conversation, indent=2) + "\n" == written != payload


# --------------------------------------------------------------------------- migration

PNG = (
    b"\x89PNG\r\n\x1a\n"
    + struct.pack(">I", 13)
    + b"IHDR"
    + struct.pack(">IIBBBBB", 4, 3, 8, 0, 0, 0, 0)
)
IMAGE_URL = "data:image/png;base64," + base64.b64encode(PNG + bytes(4)).decode()
V1_PARTS: list[dict[str, Any]] = [
    {"text": "what is this?", "type": "text"},
    {
        "data": {"type": "image_url", "image_url": {"url": IMAGE_URL, "detail": "high"}},
        "type": "raw",
    },
    {
        "data": {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        "type": "raw",
    },
    {
        "data": {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        "type": "raw",
    },
    {"data": {"type": "file", "file": {"file_id": "file-1"}}, "type": "raw"},
    {
        "data": {
            "type": "file",
            "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
        },
        "type": "raw",
    },
    {"data": {"type": "image_url", "image_url": {"url": "x"}, "cache_control": {}}, "type": "raw"},
    {
        "data": {"type": "image_url", "image_url": "https://example.com/old-shape.png"},
        "type": "raw",
    },
    {"data": {"type": "input_audio", "input_audio": {"data": "UklGRg=="}}, "type": "raw"},
    {"data": {"type": "image_url", "image_url": {"url": "x", "detail": "max"}}, "type": "raw"},
    {"data": {"type": "input_video", "video": "v.mp4"}, "type": "raw"},
]


def v1_payload(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The golden v1 payload, its first message's content replaced by ``parts``."""
    payload = json.loads((GOLDEN / "conversation_v1.json").read_text())
    payload["messages"][0]["content"] = parts
    return payload


def test_v1_raw_media_parts_become_typed() -> None:
    """v1 kept images, audio and files raw; v2 reads them as typed parts with the wire
    format's own parser, and parts with anything it does not model stay raw."""
    payload = v1_payload(V1_PARTS)
    original = copy.deepcopy(payload)
    user = loads(payload).messages[0]
    assert payload == original  # the migration works on a copy
    assert (
        user.content
        == (  # type: ignore[union-attr]
            TextPart("what is this?"),
            ImagePart(IMAGE_URL, "high", mime="image/png", width=4, height=3),
            ImagePart("https://example.com/a.png"),
            AudioPart("UklGRg==", "wav"),
            FilePart(file_id="file-1"),
            FilePart("a.pdf", file_data="data:application/pdf;base64,JVBE", mime="application/pdf"),
            *(RawPart(p["data"]) for p in V1_PARTS[6:]),
        )
    )


def test_a_migrated_v1_payload_dumps_as_v2_and_sends_the_same_wire() -> None:
    """After the migration the message is the same on the wire, and re-loads unchanged."""
    conversation = loads(v1_payload(V1_PARTS))
    dumped = json.loads(dumps(conversation))
    assert dumped["schema_version"] == SCHEMA_VERSION
    assert [p["type"] for p in dumped["messages"][0]["content"]] == [
        "text", "image", "image", "audio", "file", "file", "raw", "raw", "raw", "raw", "raw",
    ]  # fmt: skip
    assert loads(dumped) == conversation
    wire = [p.to_openai() for p in conversation.messages[0].content]  # type: ignore[union-attr]
    assert wire == [{"type": "text", "text": "what is this?"}, *(p["data"] for p in V1_PARTS[1:])]


def test_malformed_v1_parts_are_left_for_the_converter_to_report() -> None:
    """The migration never raises: what it cannot read it leaves, and loads names it."""
    for parts, fragment in [
        ([{"data": "not an object", "type": "raw"}], "$.messages[0].content[0].data"),
        ([{"data": {"type": 3}, "type": "raw", "x": 1}], "$.messages[0].content[0]"),
        (["a string"], "$.messages[0].content[0]"),
    ]:
        with pytest.raises(SerializationError) as info:
            loads(v1_payload(parts))  # type: ignore[arg-type]
        assert fragment in str(info.value)


# --------------------------------------------------------------------------- refusals


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
        ('{"chat_id": "c", "schema_version": true}', "invalid schema_version True"),
    ],
)
def test_malformed_payloads_name_the_fault(payload: str, fragment: str) -> None:
    """Bad payloads raise SerializationError pointing at the path."""
    with pytest.raises(SerializationError) as info:
        loads(payload)
    assert fragment in str(info.value)


def test_dumps_refuses_what_json_cannot_hold() -> None:
    """Metadata JSON cannot hold (NaN, an object) fails at dumps, not at the next load."""
    for metadata in ({"x": float("nan")}, {"x": object()}):
        with pytest.raises(SerializationError, match="conversation 'c'"):
            dumps(Conversation(chat_id="c", metadata=metadata))
