"""Typed chat messages and their lossless conversion to and from the OpenAI wire format."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import attrs

from agentfsm.errors import InvalidHistoryError

__all__ = [
    "UNANSWERED_CALL",
    "AssistantMessage",
    "ContentPart",
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
    "unanswered_results",
]


@attrs.frozen
class TextPart:
    """A text content part."""

    text: str
    type: Literal["text"] = "text"


@attrs.frozen
class RawPart:
    """Any other content part (image, audio, file…), kept exactly as the wire format has it."""

    data: Mapping[str, Any]
    type: Literal["raw"] = "raw"


ContentPart: TypeAlias = TextPart | RawPart
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


@attrs.frozen
class UserMessage:
    """What the user said: text, or a tuple of content parts."""

    content: Content
    role: Literal["user"] = "user"
    name: str | None = None


@attrs.frozen
class AssistantMessage:
    """What the model answered: text, tool calls, or both.

    Attributes:
        interrupted: the answer was cut short by a stop; ``content`` is what arrived.
        model: the model that wrote it (kept in the state, not sent).
    """

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    role: Literal["assistant"] = "assistant"
    name: str | None = None
    refusal: str | None = None
    interrupted: bool = False
    model: str | None = None


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


Message: TypeAlias = SystemMessage | UserMessage | AssistantMessage | ToolMessage


def new_tool_call_id() -> str:
    """A fresh call id, for servers that send tool calls without one."""
    return f"call_{uuid.uuid4().hex[:24]}"


# --------------------------------------------------------------------------- to the wire


def _content_to_openai(content: Content) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return [
        {"type": "text", "text": part.text} if isinstance(part, TextPart) else dict(part.data)
        for part in content
    ]


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


def _content_from_openai(value: Any, path: str) -> Content:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        parts: list[ContentPart] = []
        for i, part in enumerate(value):
            where = f"{path}[{i}]"
            if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                raise _fail(where, "a content part must be an object with a string 'type'")
            if part["type"] == "text":
                parts.append(TextPart(str(_text(part.get("text"), f"{where}.text"))))
            else:
                parts.append(RawPart(dict(part)))
        return tuple(parts)
    raise _fail(path, f"content must be a string or a list of parts, got {type(value).__name__}")


def _assistant_text(value: Any, path: str) -> str | None:
    """Assistant content: servers send a string, null, or (rarely) a list of text parts."""
    if value is None or isinstance(value, str):
        return value
    content = _content_from_openai(value, path)
    return "".join(p.text for p in content if isinstance(p, TextPart))


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
        arguments = json.dumps(arguments, ensure_ascii=False)
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
        if not isinstance(content, str):
            content = "".join(p.text for p in content if isinstance(p, TextPart))
        return SystemMessage(content, name=name)
    if role == "assistant":
        raw_calls = data.get("tool_calls") or ()
        if not isinstance(raw_calls, Sequence) or isinstance(raw_calls, str):
            raise _fail(f"{path}.tool_calls", "must be a list")
        calls = tuple(
            _tool_call_from_openai(c, f"{path}.tool_calls[{i}]") for i, c in enumerate(raw_calls)
        )
        return AssistantMessage(
            content=_assistant_text(data.get("content"), f"{path}.content"),
            tool_calls=calls,
            name=name,
            refusal=_text(data.get("refusal"), f"{path}.refusal", optional=True),
            interrupted=bool(data.get("interrupted", False)),
        )
    if role == "tool":
        call_id = data.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise _fail(f"{path}.tool_call_id", "a tool message needs its tool_call_id")
        content = _content_from_openai(data.get("content", ""), f"{path}.content")
        if not isinstance(content, str):
            content = "".join(p.text for p in content if isinstance(p, TextPart))
        return ToolMessage(tool_call_id=call_id, content=content)
    raise _fail(
        f"{path}.role",
        f"unknown role {role!r} (expected system, developer, user, assistant or tool)",
    )


UNANSWERED_CALL = "No result: the tool call was interrupted before it finished."


def history_from_openai(history: Iterable[Mapping[str, Any]] | None) -> tuple[Message, ...]:
    """Typed messages of a history in OpenAI chat format, checked for tool-call integrity.

    Every ``tool`` message must answer a call of the assistant message that opens its group,
    at most once. A call left without a result (a run interrupted mid-way, a client that lost
    it) gets an error result saying so, so the history is always valid to send.

    Raises:
        InvalidHistoryError: with the path of the first fault, e.g. ``$[3].tool_call_id``.
    """
    if history is None:
        return ()
    if isinstance(history, (str, bytes, Mapping)):
        raise _fail("$", "history must be a list of message dicts")
    messages: list[Message] = []
    open_calls: dict[str, str] = {}
    for i, item in enumerate(history):
        path = f"$[{i}]"
        message = message_from_openai(item, path)
        if isinstance(message, ToolMessage):
            if message.tool_call_id not in open_calls:
                raise _fail(
                    f"{path}.tool_call_id",
                    f"{message.tool_call_id!r} answers no tool call of the assistant message "
                    "before it (or answers it twice)",
                )
            tool_name = open_calls.pop(message.tool_call_id)
            message = attrs.evolve(message, tool_name=tool_name)
        else:
            messages.extend(unanswered_results(open_calls))
            open_calls = {}
            if isinstance(message, AssistantMessage):
                open_calls = {c.id: c.name for c in message.tool_calls}
        messages.append(message)
    messages.extend(unanswered_results(open_calls))
    return tuple(messages)


def unanswered_results(
    open_calls: Mapping[str, str], content: str = UNANSWERED_CALL
) -> list[ToolMessage]:
    """Error results for calls (``{call_id: tool_name}``) that will never get a real one."""
    return [
        ToolMessage(tool_call_id=call_id, content=content, tool_name=name, is_error=True)
        for call_id, name in open_calls.items()
    ]
