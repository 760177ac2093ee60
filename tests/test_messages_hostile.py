"""The wire format read liberally, losslessly and safely: typed content parts, and hostile
histories that raise InvalidHistoryError with a path, never another exception."""

from __future__ import annotations

import base64
import copy
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfsm import (
    AudioPart,
    Conversation,
    FilePart,
    ImagePart,
    InvalidHistoryError,
    RawPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
    dumps,
    loads,
)
from agentfsm.messages import (
    history_from_openai,
    message_from_openai,
    message_to_openai,
    messages_to_openai,
    part_from_openai,
)
from tests.test_media import IMAGES, png

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PNG_URL = "data:image/png;base64," + base64.b64encode(png(5, 4)).decode()

# --------------------------------------------------------------------------- typed parts

PARTS: list[tuple[str, dict[str, Any], Any]] = [
    ("text", {"type": "text", "text": "hi"}, TextPart("hi")),
    (
        "inline image",
        {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}},
        ImagePart(PNG_URL, "low", mime="image/png", width=5, height=4),
    ),
    (
        "remote image",
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
        ImagePart("https://example.com/a.jpg"),
    ),
    (
        "explicit auto",
        {"type": "image_url", "image_url": {"url": "https://e.com/a", "detail": "auto"}},
        ImagePart("https://e.com/a", "auto"),
    ),
    (
        "data URL of no image",
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ImagePart("data:image/png;base64,AAAA"),
    ),
    (
        "audio",
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        AudioPart("UklGRg==", "wav"),
    ),
    (
        "audio of another format",
        {"type": "input_audio", "input_audio": {"data": "ZkxhQw==", "format": "flac"}},
        AudioPart("ZkxhQw==", "flac"),
    ),
    (
        "inline file",
        {
            "type": "file",
            "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
        },
        FilePart("a.pdf", file_data="data:application/pdf;base64,JVBE", mime="application/pdf"),
    ),
    ("uploaded file", {"type": "file", "file": {"file_id": "file-9"}}, FilePart(file_id="file-9")),
    ("empty file", {"type": "file", "file": {}}, FilePart()),
]
RAW: list[tuple[str, dict[str, Any]]] = [
    (
        "text with cache_control",
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
    ),
    (
        "image with cache_control",
        {"type": "image_url", "image_url": {"url": "x"}, "cache_control": {}},
    ),
    ("image with an unknown field", {"type": "image_url", "image_url": {"url": "x", "zoom": 2}}),
    ("image detail unknown", {"type": "image_url", "image_url": {"url": "x", "detail": "max"}}),
    ("image detail null", {"type": "image_url", "image_url": {"url": "x", "detail": None}}),
    ("image url not a string", {"type": "image_url", "image_url": {"url": 5}}),
    ("image without url", {"type": "image_url", "image_url": {"detail": "low"}}),
    ("image, older shape", {"type": "image_url", "image_url": "https://example.com/a.png"}),
    ("image without image_url", {"type": "image_url"}),
    ("audio without format", {"type": "input_audio", "input_audio": {"data": "AA=="}}),
    ("audio with a number", {"type": "input_audio", "input_audio": {"data": "AA==", "format": 3}}),
    (
        "audio with an extra field",
        {"type": "input_audio", "input_audio": {"data": "", "format": "wav", "x": ""}},
    ),
    ("file with an unknown field", {"type": "file", "file": {"file_id": "f", "purpose": "x"}}),
    ("file id null", {"type": "file", "file": {"file_id": None}}),
    ("file as a string", {"type": "file", "file": "file-1"}),
    ("a kind agentfsm does not model", {"type": "input_video", "video": {"url": "v.mp4"}}),
    ("the Responses API's text", {"type": "input_text", "text": "hello"}),
]


@pytest.mark.parametrize(
    ("part", "expected"), [(p, e) for _, p, e in PARTS], ids=[n for n, *_ in PARTS]
)
def test_known_parts_are_read_as_typed_parts(part: dict[str, Any], expected: Any) -> None:
    """Text, image, audio and file parts become typed parts that write the same dict back;
    an inline image's type and size come from its header."""
    typed = part_from_openai(part)
    assert typed == expected
    assert typed.to_openai() == part


@pytest.mark.parametrize("part", [p for _, p in RAW], ids=[n for n, _ in RAW])
def test_parts_with_anything_unmodelled_stay_raw(part: dict[str, Any]) -> None:
    """A part with a field no typed part models, or a malformed one, stays raw and
    reaches the wire unchanged; its label is its wire type."""
    typed = part_from_openai(part)
    assert typed == RawPart(part)
    assert typed.to_openai() == part
    assert typed.type == part["type"]


def test_every_part_has_a_short_label() -> None:
    """type says what a part is, for transcripts ("[image]")."""
    labels = [part_from_openai(p).type for _, p, _ in PARTS]
    assert labels == ["text", *["image"] * 4, "audio", "audio", *["file"] * 3]
    assert RawPart({"no": "type"}).type == "raw"


def test_text_of_a_raw_text_part_is_kept_where_content_is_flattened() -> None:
    """A system or tool message whose text part carries cache_control keeps that text."""
    parts = [
        {"type": "text", "text": "Be ", "cache_control": {}},
        {"type": "text", "text": "brief."},
    ]
    assert message_from_openai({"role": "system", "content": parts}) == SystemMessage("Be brief.")
    tool = message_from_openai({"role": "tool", "tool_call_id": "c", "content": parts})
    assert tool == ToolMessage("c", "Be brief.")


def test_the_repr_of_a_part_does_not_dump_its_data() -> None:
    """A 1 MB image or clip shows its start and length only."""
    image = ImagePart("data:image/png;base64," + "A" * 1_000_000)
    audio = AudioPart("A" * 1_000_000, "wav")
    document = FilePart("a", file_data="data:x;base64," + "A" * 1_000_000)
    for part in (image, audio, document):
        assert len(repr(part)) < 200
        assert "chars)" in repr(part)


@pytest.mark.parametrize(("name", "data", "expected"), IMAGES, ids=[n for n, *_ in IMAGES])
def test_an_inline_image_is_sized_from_its_header_in_every_format(
    name: str, data: bytes, expected: tuple[str, int, int]
) -> None:
    """PNG, JPEG (its marker walk across a 60 KB APP1 segment), GIF and WebP data URLs."""
    mime = expected[0]
    for encoded in (base64.b64encode(data).decode(), base64.encodebytes(data).decode()):
        part = ImagePart.from_url(f"data:{mime};base64,{encoded}")
        assert (part.mime, part.width, part.height) == expected


@given(st.sampled_from(IMAGES), st.data())
def test_a_cut_data_url_gives_no_size_or_the_true_one(
    image: tuple[str, bytes, tuple[str, int, int]], data: st.DataObject
) -> None:
    """Cut anywhere (even mid-group) or followed by junk, a data URL's image gets its true
    size or none: never a wrong one, never an exception."""
    _, raw, (mime, width, height) = image
    encoded = base64.b64encode(raw).decode()
    cut = data.draw(st.integers(0, len(encoded)))
    junk = data.draw(st.sampled_from(["", "!!!!", "=", "==A", " ", "é"]))
    part = ImagePart.from_url(f"data:{mime};base64,{encoded[:cut]}{junk}")
    assert (part.mime, part.width, part.height) in ((None, None, None), (mime, width, height))


# --------------------------------------------------------------------------- lossless wire

_text = st.text(max_size=12)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)


def _with_extras(base: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` dicts, sometimes with fields added or values of other types."""
    return st.tuples(base, st.dictionaries(_text, _json, max_size=2), st.booleans()).map(
        lambda t: {**t[1], **t[0]} if t[2] else t[0]
    )


_image_dicts = st.fixed_dictionaries(
    {"url": st.sampled_from([PNG_URL, "https://e.com/a.png", "data:,x"]) | _text},
    optional={"detail": st.sampled_from(["auto", "low", "high", "max"]) | _json},
)
_wire_parts = st.one_of(
    _with_extras(st.fixed_dictionaries({"type": st.just("text"), "text": _text})),
    _with_extras(
        st.fixed_dictionaries(
            {"type": st.just("image_url"), "image_url": _with_extras(_image_dicts) | _json}
        )
    ),
    _with_extras(
        st.fixed_dictionaries(
            {
                "type": st.just("input_audio"),
                "input_audio": _with_extras(
                    st.fixed_dictionaries({"data": _text, "format": _text})
                ),
            }
        )
    ),
    _with_extras(
        st.fixed_dictionaries(
            {
                "type": st.just("file"),
                "file": _with_extras(
                    st.fixed_dictionaries(
                        {}, optional={"filename": _text, "file_data": _text, "file_id": _text}
                    )
                ),
            }
        )
    ),
    st.dictionaries(_text, _json, max_size=3).map(lambda d: {**d, "type": "input_other"}),
)


@given(_wire_parts)
def test_any_part_reads_and_writes_back_unchanged(part: dict[str, Any]) -> None:
    """part_from_openai(d).to_openai() == d for every part dict accepted, typed or raw."""
    if part.get("type") == "text" and not isinstance(part.get("text"), str):
        return
    assert part_from_openai(part).to_openai() == part


@given(st.lists(_wire_parts, max_size=4), st.none() | _text)
def test_user_messages_round_trip_through_the_wire(
    parts: list[dict[str, Any]], name: str | None
) -> None:
    """message_to_openai(message_from_openai(d)) == d for user messages of any parts."""
    parts = [p for p in parts if p.get("type") != "text" or isinstance(p.get("text"), str)]
    wire: dict[str, Any] = {"role": "user", "content": parts}
    if name is not None:
        wire["name"] = name
    assert message_to_openai(message_from_openai(copy.deepcopy(wire))) == wire


# --------------------------------------------------------------------------- tool-call integrity


def _calls(*ids: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids
        ],
    }


def _result(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "ok"}


def _deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


USER = {"role": "user", "content": "hi"}
HISTORIES: list[tuple[str, Any, str, str]] = [
    (
        "duplicate ids in one message",
        [USER, _calls("a", "b", "a"), _result("a"), _result("b")],
        "$[1].tool_calls[2].id",
        "duplicate tool call id 'a' (tool_calls[0] has it too)",
    ),
    (
        "a call answered twice",
        [USER, _calls("a", "b"), _result("a"), _result("a"), _result("b")],
        "$[3].tool_call_id",
        "answers it a second time",
    ),
    (
        "a result of no call",
        [USER, _calls("a"), _result("b")],
        "$[2].tool_call_id",
        "answers none",
    ),
    ("a result with no call before", [USER, _result("a")], "$[1].tool_call_id", "answers none"),
    (
        "a result after a user message",
        [_calls("a"), USER, _result("a")],
        "$[2].tool_call_id",
        "answers none",
    ),
    ("history not a list", 5, "$", "must be a list"),
    ("history a string", "hello", "$", "must be a list"),
    ("history a dict", USER, "$", "must be a list"),
    ("a message not a dict", [5], "$[0]", "a message must be an object"),
    ("content null", [{"role": "user", "content": None}], "$[0].content", "content must be"),
    ("a part not a dict", [{"role": "user", "content": ["hi"]}], "$[0].content[0]", "object"),
    (
        "a raw part holding a set",
        [{"role": "user", "content": [{"type": "x", "v": {1, 2}}]}],
        "$[0].content[0].v",
        "set is not JSON data",
    ),
    (
        "a raw part holding NaN",
        [{"role": "user", "content": [{"type": "x", "v": [math.nan]}]}],
        "$[0].content[0].v[0]",
        "nan is not a JSON number",
    ),
    (
        "a raw part with a number key",
        [{"role": "user", "content": [{"type": "x", "v": {1: 2}}]}],
        "$[0].content[0].v",
        "object keys must be strings",
    ),
    (
        "a raw part nested 100,000 deep",
        [{"role": "user", "content": [{"type": "x", "v": _deep(100_000)}]}],
        "$[0].content[0].v" + "[0]" * 99,
        "nested deeper than 100 levels",
    ),
    (
        "arguments holding an object",
        [
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "a", "function": {"name": "f", "arguments": {"x": object()}}}
                ],
            }
        ],
        "$[0].tool_calls[0].function.arguments.x",
        "object is not JSON data",
    ),
    (
        "interrupted as a string",
        [{"role": "assistant", "content": "x", "interrupted": "false"}],
        "$[0].interrupted",
        "must be true or false",
    ),
    (
        "tool_calls a string",
        [{"role": "assistant", "tool_calls": "f()"}],
        "$[0].tool_calls",
        "list",
    ),
]


@pytest.mark.parametrize(
    ("history", "path", "reason"),
    [(h, p, r) for _, h, p, r in HISTORIES],
    ids=[n for n, *_ in HISTORIES],
)
def test_hostile_histories_name_the_fault(history: Any, path: str, reason: str) -> None:
    """Broken tool-call groups, duplicate ids, non-JSON data: InvalidHistoryError at a path."""
    with pytest.raises(InvalidHistoryError) as info:
        history_from_openai(history)
    assert info.value.path == path
    assert reason in info.value.reason


def test_the_same_call_id_in_two_groups_is_fine() -> None:
    """Servers that number calls per message (call_0 every time) reuse ids across groups."""
    history = [USER, _calls("call_0"), _result("call_0"), USER, _calls("call_0"), _result("call_0")]
    messages = history_from_openai(history)
    assert messages_to_openai(messages) == history
    stored = Conversation(chat_id="c", messages=(*messages, UserMessage("next")), run_start=6)
    assert loads(dumps(stored)) == stored


def test_a_group_left_unanswered_gets_error_results() -> None:
    """A call with no result gets an error result, so the history is valid to send."""
    messages = history_from_openai([USER, _calls("a", "b"), _result("b"), USER])
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool", "user"]
    assert messages[3] == ToolMessage("a", messages[3].content, tool_name="f", is_error=True)  # type: ignore[union-attr]


def test_parts_given_in_a_history_are_copied() -> None:
    """A caller changing its dicts afterwards does not change the frozen messages."""
    part = {"type": "x", "data": {"list": [1]}}
    (message,) = history_from_openai([{"role": "user", "content": [part]}])
    part["data"]["list"].append(2)  # type: ignore[index]
    assert message.content == (RawPart({"type": "x", "data": {"list": [1]}}),)  # type: ignore[union-attr]


# --------------------------------------------------------------------------- fuzzing

_roles = st.sampled_from(["user", "assistant", "tool", "system", "developer", "robot"])
_messages = st.fixed_dictionaries(
    {"role": _roles},
    optional={
        "content": st.none() | _text | st.lists(_wire_parts | _json, max_size=3),
        "name": st.none() | _text | _json,
        "tool_call_id": st.sampled_from(["a", "b", ""]) | _json,
        "tool_calls": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": st.sampled_from(["a", "b", None, ""]) | _json,
                    "type": st.just("function"),
                    "function": st.fixed_dictionaries(
                        {}, optional={"name": st.just("f") | _json, "arguments": _text | _json}
                    )
                    | _json,
                },
            )
            | _json,
            max_size=3,
        )
        | _json,
        "refusal": st.none() | _text | _json,
        "interrupted": st.booleans() | _json,
    },
)
_histories = st.lists(_messages | _json, max_size=6)


def _only_ours(history: Any) -> None:
    """history_from_openai returns, or raises InvalidHistoryError (an AgentFSMError) with a
    path; what it returns can be stored and loaded back equal."""
    refused: InvalidHistoryError | None = None
    try:
        messages = history_from_openai(history)
    except InvalidHistoryError as error:
        refused = error
    if refused is not None:
        assert refused.path.startswith("$")
        return
    stored = Conversation(
        chat_id="c", messages=(*messages, UserMessage("next")), run_start=len(messages)
    )
    assert loads(dumps(stored)) == stored


@FUZZ
@given(_histories)
def test_random_histories_are_accepted_or_refused_with_a_path(history: list[Any]) -> None:
    """Messages of random roles and fields: a typed history or InvalidHistoryError."""
    _only_ours(history)


@FUZZ
@given(_json)
def test_random_json_as_a_history_is_refused_or_accepted(value: Any) -> None:
    """Any JSON value at all as history=: never an exception but ours."""
    _only_ours(value)


@FUZZ
@given(st.data())
def test_mutated_valid_histories_are_accepted_or_refused_with_a_path(data: st.DataObject) -> None:
    """A valid history with tool groups and media, one value replaced at random."""
    history = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "look"}, *copy.deepcopy([p for _, p, _ in PARTS])],
        },
        _calls("a", "b"),
        _result("a"),
        _result("b"),
        {"role": "assistant", "content": "done", "refusal": None},
    ]
    paths: list[tuple[Any, ...]] = []

    def walk(value: Any, prefix: tuple[Any, ...]) -> None:
        paths.append(prefix)
        items = (
            value.items()
            if isinstance(value, dict)
            else enumerate(value)
            if isinstance(value, list)
            else ()
        )
        for key, item in items:
            walk(item, (*prefix, key))

    walk(history, ())
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths[1:]))
        parent: Any = history
        try:
            for key in path[:-1]:
                parent = parent[key]
            if data.draw(st.booleans()):
                del parent[path[-1]]
            else:
                parent[path[-1]] = data.draw(_json)
        except (KeyError, IndexError, TypeError):  # an earlier change removed the place
            continue
    _only_ours(history)
