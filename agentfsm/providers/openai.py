"""The model client: chat-completions requests through ``openai.AsyncOpenAI``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
import openai

from agentfsm.errors import MalformedReplyError
from agentfsm.messages import AssistantMessage, ToolCall, new_tool_call_id
from agentfsm.state import ErrorInfo, Usage

__all__ = [
    "REQUEST_ERRORS",
    "MalformedReplyError",
    "ModelReply",
    "OpenAIChatModel",
    "StreamBuffer",
    "TokenSink",
    "error_info",
    "parse_completion",
    "usage_from_openai",
]

# Request fields the agent itself owns; ``request_params`` may not set them.
RESERVED_PARAMS = frozenset({"messages", "model", "tools", "stream", "stream_options"})


REQUEST_ERRORS = (openai.APIError, MalformedReplyError)
"""What a failed model request raises: the run records it and stops with ``error``."""


@attrs.frozen
class ModelReply:
    """One answered request: the assistant message, its usage, and why the model stopped."""

    message: AssistantMessage
    usage: Usage
    finish_reason: str | None
    model: str


class StreamBuffer:
    """What a streamed answer has delivered so far; readable after the stream was cut off."""

    __slots__ = ("calls", "finish_reason", "model", "text", "usage")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
        self.usage: Any = None
        self.finish_reason: str | None = None
        self.model: str | None = None

    def add(self, chunk: Any) -> str:
        """Fold one chunk in; returns its text delta ("" if none)."""
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        if self.model is None:
            self.model = getattr(chunk, "model", None)
        delta_text = ""
        for choice in getattr(chunk, "choices", None) or ():
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
            delta = choice.delta
            if delta is None:
                continue
            if delta.content:
                delta_text += delta.content
            for position, part in enumerate(getattr(delta, "tool_calls", None) or ()):
                index = part.index if part.index is not None else position
                call = self.calls.setdefault(index, ["", "", ""])
                if part.id:
                    call[0] = part.id
                function = part.function
                if function is None:
                    continue
                name = function.name or ""
                if name and not (call[1] == name or call[1].endswith(name)):
                    # one name, sent once (OpenAI) or repeated whole on every chunk (others)
                    call[1] = name if name.startswith(call[1]) else call[1] + name
                if function.arguments:
                    call[2] += function.arguments
        if delta_text:
            self.text.append(delta_text)
        return delta_text

    def reply(self, requested_model: str, *, interrupted: bool = False) -> ModelReply:
        """The answer assembled so far (an interrupted one keeps only its text)."""
        text = "".join(self.text)
        calls = (
            ()
            if interrupted
            else tuple(
                ToolCall(id=c[0] or new_tool_call_id(), name=c[1], arguments=_arguments(c[2]))
                for _, c in sorted(self.calls.items())
                if c[1]
            )
        )
        return ModelReply(
            message=AssistantMessage(
                content=text if text or not calls else None,
                tool_calls=calls,
                interrupted=interrupted,
            ),
            usage=usage_from_openai(self.usage),
            finish_reason=self.finish_reason,
            model=self.model or requested_model,
        )


TokenSink = Callable[[str], Awaitable[None]]


class OpenAIChatModel:
    """Sends chat-completions requests for one model through an ``openai.AsyncOpenAI`` client."""

    __slots__ = ("client", "model", "params", "stream_usage")

    def __init__(self, client: openai.AsyncOpenAI, model: str, params: Mapping[str, Any]) -> None:
        self.client = client
        self.model = model
        self.params = dict(params)
        self.stream_usage = True  # off for servers that refuse stream_options

    async def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        buffer: StreamBuffer,
        on_text: TokenSink,
    ) -> ModelReply:
        """Send one streaming request, passing each text delta to ``on_text`` as it arrives.

        The HTTP stream is closed however this ends (a stop cancels it mid-way). Servers
        that reject ``stream_options`` are asked again without it, once, and remembered.

        Raises:
            openai.APIError: the request failed (HTTP status, timeout, connection).
        """
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            **self.params,
        }
        if tools:
            kwargs["tools"] = tools
        if self.stream_usage:
            kwargs["stream_options"] = {"include_usage": True}
        try:
            stream = await self.client.chat.completions.create(**kwargs)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as error:
            if not self.stream_usage or "stream_options" not in str(error):
                raise
            self.stream_usage = False
            del kwargs["stream_options"]
            stream = await self.client.chat.completions.create(**kwargs)
        try:
            async for chunk in stream:
                text = buffer.add(chunk)
                if text:
                    await on_text(text)
        finally:
            await stream.close()
        return buffer.reply(self.model)

    async def complete(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
    ) -> ModelReply:
        """Send one request and parse its answer liberally.

        Raises:
            openai.APIError: the request failed (HTTP status, timeout, connection).
        """
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, **self.params}
        if tools:
            kwargs["tools"] = tools
        completion = await self.client.chat.completions.create(**kwargs)
        return parse_completion(completion, self.model)


def parse_completion(completion: Any, requested_model: str) -> ModelReply:
    """A ``ModelReply`` from a chat completion, accepting what real servers send.

    Handles: ``content`` null or "", tool calls without ids, arguments sent as an object,
    a missing ``usage`` (figures left at zero and flagged as estimated).
    """
    choices = getattr(completion, "choices", None) or ()
    if not choices:
        raise MalformedReplyError("the model answered with no choices")
    choice = choices[0]
    raw = choice.message
    calls = tuple(
        ToolCall(
            id=call.id or new_tool_call_id(),
            name=call.function.name,
            arguments=_arguments(call.function.arguments),
        )
        for call in (getattr(raw, "tool_calls", None) or ())
        if getattr(call, "function", None) is not None
    )
    content = raw.content
    if isinstance(content, list):  # a few servers answer with text parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    message = AssistantMessage(
        content=content if content or not calls else None,
        tool_calls=calls,
        refusal=getattr(raw, "refusal", None),
    )
    return ModelReply(
        message=message,
        usage=usage_from_openai(getattr(completion, "usage", None)),
        finish_reason=choice.finish_reason,
        model=getattr(completion, "model", None) or requested_model,
    )


def usage_from_openai(usage: Any) -> Usage:
    """``Usage`` of one request from the SDK's usage object (``None`` → estimated zeros)."""
    if usage is None:
        return Usage(requests=1, estimated=True)
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    prompt = usage.prompt_tokens or 0
    completion = usage.completion_tokens or 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=usage.total_tokens or prompt + completion,
        cached_tokens=(getattr(prompt_details, "cached_tokens", None) or 0),
        reasoning_tokens=(getattr(completion_details, "reasoning_tokens", None) or 0),
        requests=1,
    )


def _arguments(value: Any) -> str:
    if value is None or value == "":
        return "{}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def error_info(error: BaseException, model: str | None = None) -> ErrorInfo:
    """An ``ErrorInfo`` for a failed request: class, HTTP status, the server's message."""
    status = getattr(error, "status_code", None)
    message = str(getattr(error, "message", None) or error)
    body = getattr(error, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            message = inner["message"]
    return ErrorInfo(type=type(error).__name__, message=message, status=status, model=model)
