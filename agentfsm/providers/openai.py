"""The model client: chat-completions requests through ``openai.AsyncOpenAI``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import openai

from agentfsm.messages import AssistantMessage, ToolCall, new_tool_call_id
from agentfsm.state import ErrorInfo, Usage

__all__ = [
    "REQUEST_ERRORS",
    "MalformedReplyError",
    "ModelReply",
    "OpenAIChatModel",
    "error_info",
    "parse_completion",
    "usage_from_openai",
]

# Request fields the agent itself owns; ``request_params`` may not set them.
RESERVED_PARAMS = frozenset({"messages", "model", "tools", "stream", "stream_options"})


class MalformedReplyError(Exception):
    """The server answered 200 with something that is not a chat completion."""


REQUEST_ERRORS = (openai.APIError, MalformedReplyError)
"""What a failed model request raises: the run records it and stops with ``error``."""


@attrs.frozen
class ModelReply:
    """One answered request: the assistant message, its usage, and why the model stopped."""

    message: AssistantMessage
    usage: Usage
    finish_reason: str | None
    model: str


class OpenAIChatModel:
    """Sends chat-completions requests for one model through an ``openai.AsyncOpenAI`` client."""

    __slots__ = ("client", "model", "params")

    def __init__(self, client: openai.AsyncOpenAI, model: str, params: Mapping[str, Any]) -> None:
        self.client = client
        self.model = model
        self.params = dict(params)

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
