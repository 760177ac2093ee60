"""The replies and faults a scripted server can answer a chat-completions request with."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

__all__ = [
    "DelayFault",
    "DisconnectFault",
    "HangFault",
    "RawFault",
    "RawStreamFault",
    "Reply",
    "StatusFault",
    "TextReply",
    "ToolCallSpec",
    "ToolCallsReply",
    "UsageSpec",
    "call",
    "fault",
    "text",
    "tool_calls",
]

UsageSpec = Mapping[str, Any] | None | Literal[False]
"""How a reply reports token usage.

``None`` computes it (prompt tokens from the server's token counter, completion tokens
from the reply's length), a mapping overrides fields of the computed usage, and ``False``
leaves ``usage`` out of the response entirely, as some servers do.
"""


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        msg = f"{attribute.name} must be at least 1, got {value}"
        raise ValueError(msg)


def _not_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        msg = f"{attribute.name} must not be negative, got {value}"
        raise ValueError(msg)


def _usage_spec(_instance: object, attribute: attrs.Attribute[UsageSpec], value: object) -> None:
    if value is None or value is False or isinstance(value, Mapping):
        return
    msg = f"{attribute.name} must be None, False or a mapping, got {value!r}"
    raise TypeError(msg)


def _freeze_usage(value: UsageSpec) -> UsageSpec:
    # A copy, so a caller mutating its dict later cannot change a reply already scripted.
    return dict(value) if isinstance(value, Mapping) else value


def _calls_tuple(calls: Iterable[ToolCallSpec]) -> tuple[ToolCallSpec, ...]:
    return tuple(calls)


def _bytes_tuple(pieces: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(pieces)


def _headers_dict(headers: Mapping[str, str]) -> dict[str, str]:
    return dict(headers)


def _http_status(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 200 <= value <= 599:
        msg = f"{attribute.name} must be an HTTP status from 200 to 599, got {value!r}"
        raise ValueError(msg)


def _wire_bytes(value: object) -> bytes:
    """A raw body or event: bytes as they are, a str as UTF-8, anything else as its JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _event(value: object) -> bytes:
    """One piece of a raw stream: bytes as they are, else one ``data:`` event of the value."""
    if isinstance(value, bytes):
        return value
    return b"data: " + _wire_bytes(value) + b"\n\n"


@attrs.frozen
class TextReply:
    """An assistant message with text and no tool calls.

    Attributes:
        content: The text; ``None`` sends ``"content": null``.
        usage: How usage is reported, see `UsageSpec`.
        finish_reason: The ``finish_reason`` of the choice.
        chunk_size: Characters per content chunk when streamed.
        chunk_delay: Seconds to sleep between streamed chunks.
    """

    content: str | None
    usage: UsageSpec = attrs.field(
        default=None, converter=_freeze_usage, validator=_usage_spec, kw_only=True
    )
    finish_reason: str = attrs.field(default="stop", kw_only=True)
    chunk_size: int = attrs.field(default=4, validator=_positive, kw_only=True)
    chunk_delay: float = attrs.field(default=0.0, validator=_not_negative, kw_only=True)


@attrs.frozen
class ToolCallSpec:
    """One tool call inside a `ToolCallsReply`.

    Attributes:
        name: The function name.
        arguments: The arguments exactly as sent on the wire (a JSON string, or anything
            else to test how an agent copes with invalid JSON).
        id: The call id; ``None`` lets the server number it ``call_<n>``.
    """

    name: str
    arguments: str
    id: str | None = None


@attrs.frozen
class ToolCallsReply:
    """An assistant message asking for one or more tool calls.

    Attributes:
        calls: The tool calls, in order.
        content: Text sent alongside the calls; ``None`` sends ``"content": null``.
        usage: How usage is reported, see `UsageSpec`.
        finish_reason: The ``finish_reason`` of the choice.
        omit_ids: Leave ``id`` out of every call, as llama.cpp-style servers may.
        interleave: When streamed, interleave the argument fragments of the calls.
        chunk_size: Characters per content or argument chunk when streamed.
        chunk_delay: Seconds to sleep between streamed chunks.
    """

    calls: tuple[ToolCallSpec, ...] = attrs.field(converter=_calls_tuple)
    content: str | None = attrs.field(default=None, kw_only=True)
    usage: UsageSpec = attrs.field(
        default=None, converter=_freeze_usage, validator=_usage_spec, kw_only=True
    )
    finish_reason: str = attrs.field(default="tool_calls", kw_only=True)
    omit_ids: bool = attrs.field(default=False, kw_only=True)
    interleave: bool = attrs.field(default=False, kw_only=True)
    chunk_size: int = attrs.field(default=4, validator=_positive, kw_only=True)
    chunk_delay: float = attrs.field(default=0.0, validator=_not_negative, kw_only=True)

    @calls.validator
    def _at_least_one(self, _attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
        if not value:
            msg = "a tool_calls reply needs at least one call"
            raise ValueError(msg)


@attrs.frozen
class StatusFault:
    """An HTTP error status with an OpenAI-style error body.

    Attributes:
        status: The HTTP status code.
        message: ``error.message`` in the body.
        error_type: ``error.type`` in the body.
        error_code: ``error.code`` in the body (``null`` when ``None``).
        headers: Extra response headers, such as ``Retry-After``.
    """

    status: int
    message: str
    error_type: str
    error_code: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_headers_dict)


@attrs.frozen
class DelayFault:
    """Sleep, then answer with another reply.

    Attributes:
        seconds: How long to wait before answering.
        then: The reply sent after the wait.
    """

    seconds: float = attrs.field(validator=_not_negative)
    then: Reply


@attrs.frozen
class RawFault:
    """A response whose body is exactly these bytes, whatever the request asked for.

    For testing what a client makes of a server that answers 200 with something that is not
    a chat completion: not JSON, not UTF-8, JSON of the wrong shape, an empty body.

    Attributes:
        body: The body, sent as it is.
        status: The HTTP status.
        content_type: The ``Content-Type`` header.
        headers: Extra response headers.
    """

    body: bytes
    status: int = attrs.field(default=200, kw_only=True, validator=_http_status)
    content_type: str = attrs.field(default="application/json", kw_only=True)
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_headers_dict, kw_only=True)


@attrs.frozen
class RawStreamFault:
    """A ``200 text/event-stream`` response made of exactly these pieces, in order.

    Nothing is added: no role chunk, no ``finish_reason``, no ``data: [DONE]`` unless a piece
    is one. The connection closes after the last piece.

    Attributes:
        pieces: The bytes written, one write each.
        chunk_delay: Seconds to sleep between pieces.
        headers: Extra response headers.
    """

    pieces: tuple[bytes, ...] = attrs.field(converter=_bytes_tuple)
    chunk_delay: float = attrs.field(default=0.0, validator=_not_negative, kw_only=True)
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_headers_dict, kw_only=True)


@attrs.frozen
class HangFault:
    """Accept the request and never answer, until the client gives up or the server closes."""


@attrs.frozen
class DisconnectFault:
    """Close the connection without sending any response."""


Reply = (
    TextReply
    | ToolCallsReply
    | StatusFault
    | DelayFault
    | HangFault
    | DisconnectFault
    | RawFault
    | RawStreamFault
)
"""Anything a scripted server can answer one request with."""

_REPLY_TYPES = (
    TextReply,
    ToolCallsReply,
    StatusFault,
    DelayFault,
    HangFault,
    DisconnectFault,
    RawFault,
    RawStreamFault,
)


def text(
    content: str | None,
    *,
    usage: UsageSpec = None,
    finish_reason: str = "stop",
    content_null: bool = False,
    chunk_size: int = 4,
    chunk_delay: float = 0.0,
) -> TextReply:
    """Answer with an assistant text message.

    Args:
        content: The text of the message.
        usage: ``None`` computes usage, a mapping overrides computed fields (for example
            ``{"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 2}}``),
            ``False`` omits ``usage`` from the response.
        finish_reason: The ``finish_reason`` of the choice, e.g. ``"length"``.
        content_null: Send ``"content": null`` whatever ``content`` is, as some servers
            do for an empty answer; the same as passing ``None``.
        chunk_size: Characters per content chunk when the request streams.
        chunk_delay: Seconds to sleep between streamed chunks.

    Returns:
        The reply, for a script or `ScriptedOpenAIServer.add`.

    Example:
        >>> text("Sunny in Tokyo.").content
        'Sunny in Tokyo.'
    """
    return TextReply(
        None if content_null else content,
        usage=usage,
        finish_reason=finish_reason,
        chunk_size=chunk_size,
        chunk_delay=chunk_delay,
    )


def call(name: str, arguments: Mapping[str, Any] | str, id: str | None = None) -> ToolCallSpec:
    """Describe one tool call for `tool_calls`.

    Args:
        name: The function name.
        arguments: A mapping, sent JSON-encoded, or a string sent verbatim (so a test
            can send arguments that are not valid JSON).
        id: The call id; by default the server numbers calls ``call_1``, ``call_2``, ...

    Returns:
        The call description.

    Example:
        >>> call("get_weather", {"city": "Tokyo"}).arguments
        '{"city": "Tokyo"}'
    """
    encoded = arguments if isinstance(arguments, str) else json.dumps(dict(arguments))
    return ToolCallSpec(name, encoded, id)


def tool_calls(
    *calls: ToolCallSpec,
    content: str | None = None,
    usage: UsageSpec = None,
    finish_reason: str = "tool_calls",
    omit_ids: bool = False,
    interleave: bool = False,
    chunk_size: int = 4,
    chunk_delay: float = 0.0,
) -> ToolCallsReply:
    """Answer with an assistant message that calls tools.

    Args:
        *calls: The calls, built with `call`; at least one.
        content: Text sent alongside the calls; ``None`` sends ``"content": null``.
        usage: As for `text`.
        finish_reason: The ``finish_reason`` of the choice; some servers say ``"stop"``.
        omit_ids: Leave ``id`` out of every call, as llama.cpp-style servers may.
        interleave: When streamed, send the argument fragments of parallel calls
            round-robin by index instead of one call after the other.
        chunk_size: Characters per content or argument chunk when streamed.
        chunk_delay: Seconds to sleep between streamed chunks.

    Returns:
        The reply, for a script or `ScriptedOpenAIServer.add`.
    """
    return ToolCallsReply(
        calls,
        content=content,
        usage=usage,
        finish_reason=finish_reason,
        omit_ids=omit_ids,
        interleave=interleave,
        chunk_size=chunk_size,
        chunk_delay=chunk_delay,
    )


_DEFAULT_ERROR_TYPES = {429: "requests"}


class _FaultFactory:
    """Builders for the faults a scripted server can answer with, used as ``fault.<name>()``."""

    @staticmethod
    def status(
        code: int,
        message: str = "scripted error",
        *,
        headers: Mapping[str, str] | None = None,
        error_type: str | None = None,
        error_code: str | None = None,
    ) -> StatusFault:
        """Answer with an HTTP error status and an OpenAI-style error body.

        The body is ``{"error": {"message", "type", "param": null, "code"}}``.

        Args:
            code: The HTTP status code, e.g. 400 or 503.
            message: ``error.message``.
            headers: Extra response headers.
            error_type: ``error.type``; by default ``"server_error"`` for 5xx,
                ``"requests"`` for 429 and ``"invalid_request_error"`` otherwise.
            error_code: ``error.code``, e.g. ``"context_length_exceeded"``.

        Returns:
            The fault.
        """
        if error_type is None:
            default = "server_error" if code >= 500 else "invalid_request_error"
            error_type = _DEFAULT_ERROR_TYPES.get(code, default)
        return StatusFault(code, message, error_type, error_code, headers or {})

    @staticmethod
    def rate_limit(
        retry_after: float | None = None,
        retry_after_ms: int | None = None,
        *,
        message: str = "Rate limit reached (scripted).",
    ) -> StatusFault:
        """Answer 429, optionally with ``Retry-After`` and ``retry-after-ms`` headers.

        Args:
            retry_after: Seconds for the ``Retry-After`` header.
            retry_after_ms: Milliseconds for the ``retry-after-ms`` header.
            message: ``error.message``.

        Returns:
            The fault.
        """
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        return _FaultFactory.status(429, message, headers=headers, error_code="rate_limit_exceeded")

    @staticmethod
    def server_error(
        status: int = 500, message: str = "Internal server error (scripted)."
    ) -> StatusFault:
        """Answer with a 5xx status.

        Args:
            status: The HTTP status code.
            message: ``error.message``.

        Returns:
            The fault.
        """
        return _FaultFactory.status(status, message, error_type="server_error")

    @staticmethod
    def delay(seconds: float, then: Reply) -> DelayFault:
        """Wait, then answer with another reply.

        Args:
            seconds: How long to wait; the server's shutdown cuts the wait short.
            then: The reply sent after the wait.

        Returns:
            The fault.
        """
        return DelayFault(seconds, then)

    @staticmethod
    def hang() -> HangFault:
        """Accept the request and never answer, until the client gives up or the server closes.

        Returns:
            The fault.
        """
        return HangFault()

    @staticmethod
    def disconnect() -> DisconnectFault:
        """Close the connection without sending a response.

        Returns:
            The fault.
        """
        return DisconnectFault()

    @staticmethod
    def raw(
        body: object,
        *,
        status: int = 200,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> RawFault:
        """Answer with exactly this body, to test what a client makes of a broken server.

        Args:
            body: ``bytes`` are sent as they are (not UTF-8, say), a ``str`` as UTF-8 text
                (``"not json"``), anything else as its JSON (``{"choices": []}``, ``[]``,
                ``None`` for ``null``): a well-formed body of the wrong shape.
            status: The HTTP status, 200 by default.
            content_type: The ``Content-Type`` header.
            headers: Extra response headers.

        Returns:
            The fault.

        Example:
            >>> fault.raw({"choices": []}).body
            b'{"choices":[]}'
        """
        return RawFault(
            _wire_bytes(body), status=status, content_type=content_type, headers=headers or {}
        )

    @staticmethod
    def raw_stream(
        *events: object, chunk_delay: float = 0.0, headers: Mapping[str, str] | None = None
    ) -> RawStreamFault:
        """Answer with a server-sent event stream of exactly these events, and nothing else.

        No ``[DONE]`` and no ``finish_reason`` are added: a stream that just ends is one call.

        Args:
            *events: Each one written in order: ``bytes`` as they are (broken framing, bytes
                that are not UTF-8, an ``event: error`` line), anything else as one event
                ``data: <value>\\n\\n``, a ``str`` verbatim (``"[DONE]"``, ``"{oops"``) and
                other values as their JSON (a chunk as a dict).
            chunk_delay: Seconds to sleep between events.
            headers: Extra response headers.

        Returns:
            The fault.

        Example:
            >>> fault.raw_stream({"choices": []}, "[DONE]").pieces
            (b'data: {"choices":[]}\\n\\n', b'data: [DONE]\\n\\n')
        """
        return RawStreamFault(
            tuple(_event(event) for event in events),
            chunk_delay=chunk_delay,
            headers=headers or {},
        )


fault = _FaultFactory()
"""Builders for faults: ``fault.status()``, ``fault.rate_limit()``, ``fault.server_error()``,
``fault.delay()``, ``fault.hang()``, ``fault.disconnect()``, ``fault.raw()`` and
``fault.raw_stream()``."""
