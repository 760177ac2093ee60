"""The model client: chat-completions requests through ``openai.AsyncOpenAI``, replies read
from the wire by us.

The SDK sends the request (auth, headers, timeouts, HTTP errors as ``openai.APIError``); the
body of a 200 is read here from its raw bytes, liberally (``content`` null or "", tool calls
without ids, arguments sent as an object, no ``usage``) but never trustingly: a body that is
not JSON, not UTF-8 or not shaped like a chat completion is a :class:`MalformedReplyError`
naming what was wrong, and a stream that ends without ``finish_reason`` and without
``[DONE]`` is a broken connection (retried), never a complete answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
import openai

from agentfsm.errors import MalformedReplyError
from agentfsm.messages import AssistantMessage, ToolCall, new_tool_call_id, shared_text
from agentfsm.state import ErrorInfo
from agentfsm.usage import Usage

__all__ = [
    "REQUEST_ERRORS",
    "RESERVED_PARAMS",
    "ModelReply",
    "OpenAIChatModel",
    "StreamBuffer",
    "TokenSink",
    "error_info",
    "parse_completion",
    "usage_from_openai",
]

RESERVED_PARAMS = frozenset({"messages", "model", "tools", "stream", "stream_options"})
"""Request fields the agent itself owns; ``request_params`` may not set them."""

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

    def add(self, chunk: Mapping[str, Any]) -> str:
        """Fold one chunk (a parsed SSE event) in; returns its text delta ("" if none).

        Raises:
            MalformedReplyError: the chunk is not shaped like a chat-completion chunk.
        """
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        if self.model is None and isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        delta_text = ""
        for i, choice in enumerate(_list(chunk.get("choices"), "chunk.choices")):
            where = f"chunk.choices[{i}]"
            choice = _object(choice, where)
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = _string(reason, f"{where}.finish_reason")
            delta = choice.get("delta")
            if delta is None:
                continue
            delta = _object(delta, f"{where}.delta")
            content = delta.get("content")
            if content:
                delta_text += _text_content(content, f"{where}.delta.content")
            for position, part in enumerate(_list(delta.get("tool_calls"), f"{where}.delta")):
                self._add_call(_object(part, f"{where}.delta.tool_calls[{position}]"), position)
        if delta_text:
            self.text.append(delta_text)
        return delta_text

    def _add_call(self, part: Mapping[str, Any], position: int) -> None:
        """Fold one tool-call fragment in, by its ``index`` (or its position)."""
        index = part.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else position
        call = self.calls.setdefault(index, ["", "", ""])
        if isinstance(part.get("id"), str) and part["id"]:
            call[0] = part["id"]
        function = part.get("function")
        if not isinstance(function, Mapping):
            return
        name = function.get("name")
        if isinstance(name, str) and name and not (call[1] == name or call[1].endswith(name)):
            # one name, sent once (OpenAI) or repeated whole on every chunk (others)
            call[1] = name if name.startswith(call[1]) else call[1] + name
        arguments = function.get("arguments")
        if arguments:
            call[2] += arguments if isinstance(arguments, str) else _arguments(arguments)

    def reply(self, requested_model: str, *, interrupted: bool = False) -> ModelReply:
        """The answer assembled so far (an interrupted one keeps only its text)."""
        text = "".join(self.text)
        calls = (
            ()
            if interrupted
            else tuple(
                ToolCall(
                    id=c[0] or new_tool_call_id(), name=shared_text(c[1]), arguments=c[2] or "{}"
                )
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
            finish_reason=None if self.finish_reason is None else shared_text(self.finish_reason),
            model=shared_text(self.model) if self.model else requested_model,
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
        params: Mapping[str, Any] | None = None,
    ) -> ModelReply:
        """Send one streaming request, passing each text delta to ``on_text`` as it arrives.

        The HTTP stream is closed however this ends (a stop cancels it mid-way). Servers
        that reject ``stream_options`` are asked again without it, once, and remembered.

        Raises:
            openai.APIError: the request failed (HTTP status, timeout, connection), or the
                stream ended before the answer did (``APIConnectionError``: retried).
            MalformedReplyError: an event that is not UTF-8 JSON shaped like a chunk.
        """
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            **self.params,
            **(params or {}),
        }
        if tools:
            kwargs["tools"] = tools
        if self.stream_usage:
            kwargs["stream_options"] = {"include_usage": True}
        create = self.client.chat.completions.with_raw_response.create
        try:
            raw = await create(**kwargs)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as error:
            if not self.stream_usage or "stream_options" not in str(error):
                raise
            self.stream_usage = False
            del kwargs["stream_options"]
            raw = await create(**kwargs)
        response = raw.http_response
        if "event-stream" not in response.headers.get("content-type", "event-stream"):
            # a server that ignores stream=true answers with a whole completion: take it
            try:
                body = await response.aread()
            finally:
                await response.aclose()
            reply = parse_completion(_json(body, "the reply"), self.model)
            if reply.message.content:
                buffer.text.append(reply.message.content)
                await on_text(reply.message.content)
            return reply
        done = False
        try:
            async for data in _sse_data(response.aiter_bytes()):
                if data.strip() == b"[DONE]":
                    done = True
                    break
                chunk = _object(_json(data, "a stream event"), "the stream event")
                if "error" in chunk and not chunk.get("choices"):
                    raise openai.APIError(
                        _error_message(chunk["error"]), response.request, body=chunk["error"]
                    )
                text = buffer.add(chunk)
                if text:
                    await on_text(text)
        finally:
            await response.aclose()
        if not done and buffer.finish_reason is None:
            raise openai.APIConnectionError(
                message="the stream ended before the answer was complete (no finish_reason "
                "and no [DONE]): the connection was cut",
                request=response.request,
            )
        return buffer.reply(self.model)

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any] | None = None,
    ) -> ModelReply:
        """Send one request and read its answer liberally (``params``: this request's own
        parameters, e.g. a ``response_format``).

        Raises:
            openai.APIError: the request failed (HTTP status, timeout, connection).
            MalformedReplyError: a 200 whose body is not a chat completion.
        """
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            **self.params,
            **(params or {}),
        }
        if tools:
            kwargs["tools"] = tools
        raw = await self.client.chat.completions.with_raw_response.create(**kwargs)
        return parse_completion(_json(raw.content, "the reply"), self.model)


async def _sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The ``data`` of each server-sent event (multi-line data joined by newlines), as bytes.

    Comments, ``event:``, ``id:`` and ``retry:`` lines are skipped: chat completions use
    none of them.
    """
    pending = b""
    data: list[bytes] = []
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
    if pending.startswith(b"data:"):  # a last event without its blank line
        value = pending.rstrip(b"\r")[5:]
        data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        yield b"\n".join(data)


def parse_completion(completion: Any, requested_model: str) -> ModelReply:
    """A ``ModelReply`` from a chat completion (the parsed JSON body), accepting what real
    servers send: ``content`` null, "" or a list of text parts, tool calls without ids,
    arguments sent as an object, a missing ``usage`` (then estimated by the agent).

    Raises:
        MalformedReplyError: anything else, naming where (``choices[0].message is missing``).
    """
    body = _object(completion, "the reply")
    choices = body.get("choices")
    if not choices:
        raise MalformedReplyError("the model answered with no choices")
    choice = _object(_list(choices, "choices")[0], "choices[0]")
    if choice.get("message") is None:
        raise MalformedReplyError("choices[0].message is missing")
    raw = _object(choice["message"], "choices[0].message")
    calls: list[ToolCall] = []
    for i, call in enumerate(_list(raw.get("tool_calls"), "choices[0].message.tool_calls")):
        where = f"choices[0].message.tool_calls[{i}]"
        call = _object(call, where)
        if call.get("function") is None:
            continue
        function = _object(call["function"], f"{where}.function")
        call_id = call.get("id")
        calls.append(
            ToolCall(
                id=_string(call_id, f"{where}.id") if call_id else new_tool_call_id(),
                name=shared_text(_string(function.get("name"), f"{where}.function.name")),
                arguments=_arguments(function.get("arguments")),
            )
        )
    content = raw.get("content")
    text = None if content is None else _text_content(content, "choices[0].message.content")
    refusal = raw.get("refusal")
    reason = choice.get("finish_reason")
    model = body.get("model")
    return ModelReply(
        message=AssistantMessage(
            content=text if text or not calls else None,
            tool_calls=tuple(calls),
            refusal=None if refusal is None else _string(refusal, "choices[0].message.refusal"),
        ),
        usage=usage_from_openai(body.get("usage")),
        finish_reason=None
        if reason is None
        else shared_text(_string(reason, "choices[0].finish_reason")),
        model=shared_text(model) if isinstance(model, str) and model else requested_model,
    )


def usage_from_openai(usage: Any) -> Usage:
    """``Usage`` of one request from a reply's ``usage`` object (``None`` → estimated zeros).

    Raises:
        MalformedReplyError: a figure that is not a non-negative whole number.
    """
    if usage is None:
        return Usage(requests=1, estimated=True)
    usage = _object(usage, "usage")
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    prompt = _count(usage.get("prompt_tokens"), "usage.prompt_tokens")
    completion = _count(usage.get("completion_tokens"), "usage.completion_tokens")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=_count(usage.get("total_tokens"), "usage.total_tokens") or prompt + completion,
        cached_tokens=_count(
            _get(prompt_details, "cached_tokens"), "usage.prompt_tokens_details.cached_tokens"
        ),
        reasoning_tokens=_count(
            _get(completion_details, "reasoning_tokens"),
            "usage.completion_tokens_details.reasoning_tokens",
        ),
        requests=1,
    )


def error_info(error: BaseException, model: str | None = None) -> ErrorInfo:
    """An ``ErrorInfo`` for a failed request: class, HTTP status, the server's message, and
    for a connection that failed, the server it tried to reach."""
    status = getattr(error, "status_code", None)
    message = str(getattr(error, "message", None) or error)
    body = getattr(error, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            message = inner["message"]
    if isinstance(error, openai.APIConnectionError):
        request = getattr(error, "request", None)
        url = getattr(request, "url", None)
        if url is not None:
            port = f":{url.port}" if url.port else ""
            message = f"{message.rstrip('.')} (server: {url.scheme}://{url.host}{port})"
    return ErrorInfo(type=type(error).__name__, message=message, status=status, model=model)


# ---------------------------------------------------------------------- reading the wire


def _json(data: bytes, what: str) -> Any:
    """``data`` parsed as UTF-8 JSON, or a ``MalformedReplyError`` saying why not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        message = f"{what} is not UTF-8 ({error.reason} at byte {error.start})"
        raise MalformedReplyError(message) from None
    try:
        return json.loads(text)
    except RecursionError:  # the C decoder refuses nesting deeper than the recursion limit
        raise MalformedReplyError(f"{what} is JSON nested too deep to read") from None
    except ValueError as error:
        raise MalformedReplyError(f"{what} is not JSON: {_clip(text)!r} ({error})") from None


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedReplyError(f"{where} is not an object (got {_kind(value)})")
    return value


def _list(value: Any, where: str) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise MalformedReplyError(f"{where} is not a list (got {_kind(value)})")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise MalformedReplyError(f"{where} is not a string (got {_kind(value)})")
    return value


def _text_content(value: Any, where: str) -> str:
    """Message text: a string, or (a few servers) a list of text parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(
            p["text"] for p in value if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    raise MalformedReplyError(f"{where} is neither a string nor null (got {_kind(value)})")


def _count(value: Any, where: str) -> int:
    """A token figure: a whole number >= 0 (``3.0`` is read as 3), or 0 when absent."""
    if value is None:
        return 0
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedReplyError(f"{where} is not a token count (got {value!r:.40})")
    return value


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def _arguments(value: Any) -> str:
    if value is None or value == "":
        return "{}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _error_message(error: Any) -> str:
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        return str(error["message"])
    return "An error occurred during streaming"


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
