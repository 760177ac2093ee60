"""Typed chat messages and their lossless conversion to and from the OpenAI wire format."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeAlias

import attrs

from agentfsm._sniff import data_url_image_size, data_url_mime
from agentfsm.errors import InvalidHistoryError

__all__ = [
    "UNANSWERED_CALL",
    "AssistantMessage",
    "AudioPart",
    "ContentPart",
    "Detail",
    "FilePart",
    "ImagePart",
    "Message",
    "RawPart",
    "SystemMessage",
    "TextPart",
    "ToolCall",
    "ToolMessage",
    "UserMessage",
    "history_from_openai",
    "message_from_openai",
    "message_to_openai",
    "messages_to_openai",
    "new_tool_call_id",
    "part_from_openai",
    "unanswered_results",
]

Detail: TypeAlias = Literal["auto", "low", "high"]
"""How closely a model looks at an image: ``"low"`` (a 512 px thumbnail), ``"high"``, or
``"auto"`` (the server chooses)."""


def _short(value: str | None) -> str:
    """The repr of a possibly huge string (a data URL, base64 audio): its start and length."""
    if value is None or len(value) <= 64:
        return repr(value)
    return f"{value[:48]!r}…({len(value):,} chars)"


@attrs.frozen
class TextPart:
    """A text content part."""

    text: str
    type: Literal["text"] = "text"

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``text`` content part."""
        return {"type": "text", "text": self.text}


@attrs.frozen
class ImagePart:
    """An image content part: a URL the server fetches, or a base64 ``data:`` URL holding it.

    Build one with `Image` (``Image.from_path("cat.png").to_part()``), which checks the
    image; parts read from the wire format are taken as they come.

    Attributes:
        url: an ``http(s)`` URL, or a ``data:<mime>;base64,…`` URL holding the image.
        detail: ``"low"``, ``"high"`` or ``"auto"``; None when not given (the server then
            chooses, as for ``"auto"``). Sent only when given.
        mime: the type the image's bytes say, for inline data; None when unknown (a remote
            URL, a header that cannot be read).
        width: the width in pixels, read from the header of inline data; None when unknown.
        height: the height in pixels, read from the header of inline data; None when unknown.
    """

    url: str = attrs.field(repr=_short)
    detail: Detail | None = None
    mime: str | None = attrs.field(default=None, kw_only=True)
    width: int | None = attrs.field(default=None, kw_only=True)
    height: int | None = attrs.field(default=None, kw_only=True)
    type: ClassVar[Literal["image"]] = "image"

    @classmethod
    def from_url(cls, url: str, detail: Detail | None = None) -> ImagePart:
        """The part of an image URL, with the type and size of a ``data:`` URL's image read
        from its header (only those bytes are decoded); nothing is checked or fetched."""
        size = data_url_image_size(url)
        if size is None:
            return cls(url, detail)
        return cls(url, detail, mime=size[0], width=size[1], height=size[2])

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``image_url`` content part."""
        image: dict[str, Any] = {"url": self.url}
        if self.detail is not None:
            image["detail"] = self.detail
        return {"type": "image_url", "image_url": image}


@attrs.frozen
class AudioPart:
    """An audio content part (``input_audio``), for audio-input models.

    Build one with `Audio` (``Audio.from_path("clip.wav").to_part()``), which checks the clip.

    Attributes:
        data: the clip's bytes, base64-encoded.
        format: the clip's format as sent: ``"wav"`` or ``"mp3"`` for OpenAI.
    """

    data: str = attrs.field(repr=_short)
    format: str
    type: ClassVar[Literal["audio"]] = "audio"

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``input_audio`` content part."""
        return {"type": "input_audio", "input_audio": {"data": self.data, "format": self.format}}


@attrs.frozen
class FilePart:
    """A file content part: a document sent inline, or the id of an uploaded file.

    Build one with `File` (``File.from_path("report.pdf").to_part()``), which checks it.

    Attributes:
        filename: the name the model is told.
        file_data: a ``data:<mime>;base64,…`` URL holding the file.
        file_id: the id of a file uploaded through the Files API (``"file-…"``).
        mime: the type ``file_data`` declares; None for an uploaded file.
    """

    filename: str | None = None
    file_data: str | None = attrs.field(default=None, repr=_short, kw_only=True)
    file_id: str | None = attrs.field(default=None, kw_only=True)
    mime: str | None = attrs.field(default=None, kw_only=True)
    type: ClassVar[Literal["file"]] = "file"

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``file`` content part; fields that are None are left out."""
        file: dict[str, Any] = {}
        if self.filename is not None:
            file["filename"] = self.filename
        if self.file_data is not None:
            file["file_data"] = self.file_data
        if self.file_id is not None:
            file["file_id"] = self.file_id
        return {"type": "file", "file": file}


@attrs.frozen
class RawPart:
    """Any other content part, kept exactly as the wire format has it.

    A part of a kind agentfsm does not model, or with fields it does not model (an image
    part carrying ``cache_control``), stays raw so that it reaches the server unchanged.
    """

    data: Mapping[str, Any]

    @property
    def type(self) -> str:
        """The wire format's ``type`` of the part (``"input_text"``, ``"image_url"``…)."""
        kind = self.data.get("type")
        return kind if isinstance(kind, str) else "raw"

    def to_openai(self) -> dict[str, Any]:
        """The part's wire dict, as it was given."""
        return dict(self.data)


ContentPart: TypeAlias = TextPart | ImagePart | AudioPart | FilePart | RawPart
"""A part of a user message's content. Each has ``type`` (``"text"``, ``"image"``,
``"audio"``, ``"file"``, or a raw part's wire type) and ``to_openai()``."""
Content: TypeAlias = str | tuple[ContentPart, ...]


@attrs.frozen
class ToolCall:
    """One function call requested by the model.

    Attributes:
        id: the call id the tool result answers.
        name: the function name.
        arguments: the arguments exactly as the model sent them (a JSON string).
    """

    id: str
    name: str
    arguments: str = "{}"


@attrs.frozen
class SystemMessage:
    """A system note kept in the conversation (the agent's own system prompt is not stored)."""

    content: str
    role: Literal["system"] = "system"
    name: str | None = None
    _tokens: tuple[Any, ...] | str | None = attrs.field(
        default=None, init=False, eq=False, repr=False
    )


@attrs.frozen
class UserMessage:
    """What the user said: text, or a tuple of content parts."""

    content: Content
    role: Literal["user"] = "user"
    name: str | None = None
    _tokens: tuple[Any, ...] | str | None = attrs.field(
        default=None, init=False, eq=False, repr=False
    )


@attrs.frozen
class AssistantMessage:
    """What the model answered: text, tool calls, or both.

    Attributes:
        interrupted: the answer was cut short by a stop; ``content`` is what arrived.
        model: the model that wrote it (kept in the state, not sent).
        finish_reason: why the model stopped writing, as the server said (``"stop"``,
            ``"tool_calls"``, ``"length"`` when ``max_completion_tokens`` cut it…); kept in
            the state, not sent.
    """

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    role: Literal["assistant"] = "assistant"
    name: str | None = None
    refusal: str | None = None
    interrupted: bool = False
    model: str | None = None
    finish_reason: str | None = attrs.field(default=None, kw_only=True)
    _tokens: tuple[Any, ...] | str | None = attrs.field(
        default=None, init=False, eq=False, repr=False
    )


@attrs.frozen
class ToolMessage:
    """The result of one tool call, answering ``tool_call_id``.

    Attributes:
        tool_name: the tool that produced it (kept in the state, not sent: the wire format
            has no such field).
        is_error: the result reports a failure (exception, bad arguments, cancellation).
    """

    tool_call_id: str
    content: str
    role: Literal["tool"] = "tool"
    tool_name: str | None = None
    is_error: bool = False
    _tokens: tuple[Any, ...] | str | None = attrs.field(
        default=None, init=False, eq=False, repr=False
    )


Message: TypeAlias = SystemMessage | UserMessage | AssistantMessage | ToolMessage
# Every message has a hidden ``_tokens`` slot (not compared, shown, or passed to ``evolve``): its
# token counts as ``(encoding, total, content, ...)``, set by the accurate counter when it
# counts the message and stored with it (agentfsm.serde: ``"o200k_base:57:50"``, kept as that
# string by a load until a counter reads it), so a loaded message is not tokenized again. A
# message is immutable, so its counts never go stale.


_SHARED: dict[str, str] = {}
_SHARED_MAX = 4096


def shared_text(text: str) -> str:
    """One object for each short text that many messages repeat (model names, finish
    reasons, tool names), so thousands of idle conversations do not each hold a copy;
    bounded, so what a server sends cannot grow it without end."""
    if len(text) > 64:
        return text
    found = _SHARED.get(text)
    if found is not None:
        return found
    if len(_SHARED) < _SHARED_MAX:
        _SHARED[text] = text
    return text


def new_tool_call_id() -> str:
    """A fresh call id, for servers that send tool calls without one."""
    return f"call_{uuid.uuid4().hex[:24]}"


# --------------------------------------------------------------------------- to the wire


def _content_to_openai(content: Content) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return [part.to_openai() for part in content]


def message_to_openai(message: Message) -> dict[str, Any]:
    """The OpenAI chat-format dict of ``message``: no nulls, no fields the API does not know."""
    if isinstance(message, ToolMessage):
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    out: dict[str, Any] = {"role": message.role}
    if isinstance(message, AssistantMessage):
        if message.content is not None:
            out["content"] = message.content
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ]
        elif message.content is None:
            out["content"] = ""
        if message.refusal is not None:
            out["refusal"] = message.refusal
    else:
        out["content"] = _content_to_openai(message.content)
    if message.name is not None:
        out["name"] = message.name
    return out


def messages_to_openai(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """The OpenAI chat-format list of ``messages``."""
    return [message_to_openai(m) for m in messages]


# --------------------------------------------------------------------------- from the wire


def _fail(path: str, reason: str) -> InvalidHistoryError:
    return InvalidHistoryError(path, reason)


def _text(value: Any, path: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, str):
        return value
    raise _fail(path, f"expected a string, got {type(value).__name__}")


_MAX_DEPTH = 100  # JSON nesting a raw part may have: enough for any real part, and far
# from the interpreter's recursion limit, so a stored payload always dumps and loads again.
_DETAILS = ("auto", "low", "high")


def _json_data(value: Any, path: str, depth: int = 0) -> Any:
    """A copy of ``value``, which must be JSON data: what a stored conversation can hold."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(path, f"{value} is not a JSON number")
        return value
    if depth >= _MAX_DEPTH:
        raise _fail(path, f"nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        copy: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(path, f"object keys must be strings, got {type(key).__name__}")
            copy[key] = _json_data(item, f"{path}.{key}", depth + 1)
        return copy
    if isinstance(value, (list, tuple)):
        items = [_json_data(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise _fail(path, f"{type(value).__name__} is not JSON data")


def _fields(part: Mapping[str, Any], key: str, allowed: frozenset[str]) -> Mapping[str, Any] | None:
    """``part[key]`` if ``part`` is ``{"type", key}`` alone and ``part[key]`` an object of
    string fields among ``allowed``: a part whose every field a typed part models."""
    inner = part.get(key)
    if part.keys() != {"type", key} or not isinstance(inner, Mapping):
        return None
    if not inner.keys() <= allowed or not all(isinstance(v, str) for v in inner.values()):
        return None
    return inner


_IMAGE_FIELDS = frozenset({"url", "detail"})
_AUDIO_FIELDS = frozenset({"data", "format"})
_FILE_FIELDS = frozenset({"filename", "file_data", "file_id"})


def _typed_part(part: Mapping[str, Any]) -> ContentPart | None:
    """The typed part of an ``image_url``, ``input_audio`` or ``file`` wire dict, or None
    when it has a field the typed part does not model (or a malformed one)."""
    kind = part.get("type")
    if kind == "image_url":
        image = _fields(part, "image_url", _IMAGE_FIELDS)
        if image is None or "url" not in image or image.get("detail", "auto") not in _DETAILS:
            return None
        return ImagePart.from_url(image["url"], image.get("detail"))
    if kind == "input_audio":
        audio = _fields(part, "input_audio", _AUDIO_FIELDS)
        if audio is None or audio.keys() != _AUDIO_FIELDS:
            return None
        return AudioPart(audio["data"], audio["format"])
    if kind == "file":
        file = _fields(part, "file", _FILE_FIELDS)
        if file is None:
            return None
        data = file.get("file_data")
        return FilePart(
            file.get("filename"),
            file_data=data,
            file_id=file.get("file_id"),
            mime=None if data is None else data_url_mime(data),
        )
    return None


def part_from_openai(part: Any, path: str = "$") -> ContentPart:
    """The typed content part of an OpenAI content-part dict, read liberally and losslessly.

    ``text``, ``image_url``, ``input_audio`` and ``file`` parts become `TextPart`,
    `ImagePart`, `AudioPart` and `FilePart`; a part of another kind, or with a field those
    do not model, stays a `RawPart`, so that ``part_from_openai(d).to_openai() == d``.

    Raises:
        InvalidHistoryError: not an object with a string ``type``, a text part without a
            string ``text``, or a part that is not JSON data; ``path`` names the fault.
    """
    if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
        raise _fail(path, "a content part must be an object with a string 'type'")
    if part["type"] == "text":
        text = str(_text(part.get("text"), f"{path}.text"))
        if part.keys() == {"type", "text"}:
            return TextPart(text)
    else:
        typed = _typed_part(part)
        if typed is not None:
            return typed
    return RawPart(_json_data(part, path))


def _content_from_openai(value: Any, path: str) -> Content:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(part_from_openai(part, f"{path}[{i}]") for i, part in enumerate(value))
    raise _fail(path, f"content must be a string or a list of parts, got {type(value).__name__}")


def _joined_text(content: Content) -> str:
    """The text of content flattened to a string (for roles whose content is text only)."""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for part in content:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, RawPart) and part.type == "text":
            text = part.data.get("text")  # a text part with fields TextPart does not model
            if isinstance(text, str):
                texts.append(text)
    return "".join(texts)


def _assistant_text(value: Any, path: str) -> str | None:
    """Assistant content: servers send a string, null, or (rarely) a list of text parts."""
    if value is None or isinstance(value, str):
        return value
    return _joined_text(_content_from_openai(value, path))


def _tool_call_from_openai(value: Any, path: str) -> ToolCall:
    if not isinstance(value, Mapping):
        raise _fail(path, "a tool call must be an object")
    function = value.get("function")
    if not isinstance(function, Mapping):
        raise _fail(f"{path}.function", "missing the 'function' object")
    name = _text(function.get("name"), f"{path}.function.name")
    arguments = function.get("arguments")
    if arguments is None:
        arguments = "{}"
    elif isinstance(arguments, Mapping):  # some servers send the object itself
        where = f"{path}.function.arguments"
        arguments = json.dumps(_json_data(arguments, where), ensure_ascii=False)
    elif not isinstance(arguments, str):
        raise _fail(f"{path}.function.arguments", "must be a JSON string")
    call_id = value.get("id") or new_tool_call_id()
    return ToolCall(id=str(_text(call_id, f"{path}.id")), name=str(name), arguments=arguments)


def message_from_openai(data: Mapping[str, Any], path: str = "$") -> Message:
    """The typed message of one OpenAI chat-format dict.

    Accepts what real servers send: ``content`` null or "", tool calls without ids (an id is
    generated), arguments as an object instead of a JSON string.

    Raises:
        InvalidHistoryError: the dict is not a chat message; ``path`` names the fault.
    """
    if not isinstance(data, Mapping):
        raise _fail(path, f"a message must be an object, got {type(data).__name__}")
    role = data.get("role")
    name = _text(data.get("name"), f"{path}.name", optional=True)
    if role == "user":
        if "content" not in data:
            raise _fail(f"{path}.content", "a user message needs content")
        return UserMessage(_content_from_openai(data["content"], f"{path}.content"), name=name)
    if role in ("system", "developer"):
        content = _content_from_openai(data.get("content", ""), f"{path}.content")
        return SystemMessage(_joined_text(content), name=name)
    if role == "assistant":
        raw_calls = data.get("tool_calls") or ()
        if not isinstance(raw_calls, (list, tuple)):
            raise _fail(f"{path}.tool_calls", "must be a list")
        interrupted = data.get("interrupted", False)
        if not isinstance(interrupted, bool):
            raise _fail(f"{path}.interrupted", "must be true or false")
        calls = tuple(
            _tool_call_from_openai(c, f"{path}.tool_calls[{i}]") for i, c in enumerate(raw_calls)
        )
        return AssistantMessage(
            content=_assistant_text(data.get("content"), f"{path}.content"),
            tool_calls=calls,
            name=name,
            refusal=_text(data.get("refusal"), f"{path}.refusal", optional=True),
            interrupted=interrupted,
        )
    if role == "tool":
        call_id = data.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise _fail(f"{path}.tool_call_id", "a tool message needs its tool_call_id")
        content = _content_from_openai(data.get("content", ""), f"{path}.content")
        return ToolMessage(tool_call_id=call_id, content=_joined_text(content))
    raise _fail(
        f"{path}.role",
        f"unknown role {role!r} (expected system, developer, user, assistant or tool)",
    )


UNANSWERED_CALL = "No result: the tool call was interrupted before it finished."


def history_from_openai(history: Iterable[Mapping[str, Any]] | None) -> tuple[Message, ...]:
    """Typed messages of a history in OpenAI chat format, checked for tool-call integrity.

    Every ``tool`` message must answer a call of the assistant message that opens its group,
    at most once, and the calls of one assistant message must have distinct ids. A call
    left without a result (a run interrupted mid-way, a client that lost it) gets an error
    result saying so, so the history is always valid to send.

    Raises:
        InvalidHistoryError: with the path of the first fault, e.g. ``$[3].tool_call_id``.
    """
    if history is None:
        return ()
    if isinstance(history, (str, bytes, Mapping)) or not isinstance(history, Iterable):
        raise _fail("$", "history must be a list of message dicts")
    messages: list[Message] = []
    open_calls: dict[str, str] = {}  # the group's calls not answered yet: id -> tool name
    answered: set[str] = set()
    for i, item in enumerate(history):
        path = f"$[{i}]"
        message = message_from_openai(item, path)
        if isinstance(message, ToolMessage):
            call_id = message.tool_call_id
            if call_id not in open_calls:
                again = "answers it a second time" if call_id in answered else "answers none"
                raise _fail(
                    f"{path}.tool_call_id",
                    f"{call_id!r} must answer a tool call of the assistant message that opens "
                    f"its group, once; it {again}",
                )
            answered.add(call_id)
            message = attrs.evolve(message, tool_name=open_calls.pop(call_id))
        else:
            messages.extend(unanswered_results(open_calls))
            open_calls, answered = {}, set()
            if isinstance(message, AssistantMessage):
                open_calls = _distinct_calls(message.tool_calls, path)
        messages.append(message)
    messages.extend(unanswered_results(open_calls))
    return tuple(messages)


def _distinct_calls(calls: Sequence[ToolCall], path: str) -> dict[str, str]:
    """``{call_id: tool_name}`` of ``calls``, whose ids must differ: a result answers an id."""
    by_id: dict[str, str] = {}
    first: dict[str, int] = {}
    for j, call in enumerate(calls):
        if call.id in by_id:
            raise _fail(
                f"{path}.tool_calls[{j}].id",
                f"duplicate tool call id {call.id!r} (tool_calls[{first[call.id]}] has it too)",
            )
        by_id[call.id], first[call.id] = call.name, j
    return by_id


def unanswered_results(
    open_calls: Mapping[str, str], content: str = UNANSWERED_CALL
) -> list[ToolMessage]:
    """Error results for calls (``{call_id: tool_name}``) that will never get a real one."""
    return [
        ToolMessage(tool_call_id=call_id, content=content, tool_name=name, is_error=True)
        for call_id, name in open_calls.items()
    ]
