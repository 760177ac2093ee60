"""A local HTTP server that answers OpenAI chat-completions requests from a script."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, cast

import attrs
from aiohttp import web

from agentfsm.testing._replies import (
    _REPLY_TYPES,
    DelayFault,
    DisconnectFault,
    HangFault,
    RawFault,
    RawStreamFault,
    Reply,
    StatusFault,
    TextReply,
    ToolCallsReply,
    fault,
)

__all__ = [
    "RecordedRequest",
    "ScriptFunction",
    "ScriptedOpenAIServer",
    "TokenCounter",
    "default_token_counter",
]

TokenCounter = Callable[[list[dict[str, Any]]], int]
"""Counts the prompt tokens of a request's ``messages``."""

_JSON = dict[str, Any]
# Long enough for a graceful close of finished responses, short enough that a stuck
# handler cannot stall a test suite: ours wake up on close anyway.
_SHUTDOWN_TIMEOUT = 1.0
_MIB = 1024 * 1024
_MAX_REQUEST_BYTES = 256 * _MIB
"""The largest request body served by default: a request carrying several of the largest
attachments agentfsm accepts (20 MiB images, 25 MiB audio, 32 MiB files, a third more in
base64) fits; aiohttp's own default of 1 MiB would refuse a single photo."""
# Our own client must not retry what the script decided: it would only consume more replies.
_FINAL = {"x-should-retry": "false"}

log = logging.getLogger(__name__)


@attrs.frozen
class RecordedRequest:
    """One chat-completions request as the server received it.

    Attributes:
        body: The parsed JSON body.
        headers: The request headers, names lower-cased.
        path: The URL path, e.g. ``/v1/chat/completions``.
    """

    body: _JSON
    headers: dict[str, str]
    path: str

    @property
    def messages(self) -> list[_JSON]:
        """The ``messages`` of the body, or an empty list."""
        return cast("list[_JSON]", self.body.get("messages") or [])

    @property
    def tools(self) -> list[_JSON]:
        """The ``tools`` of the body, or an empty list when none were offered."""
        return cast("list[_JSON]", self.body.get("tools") or [])

    @property
    def model(self) -> str | None:
        """The ``model`` the client asked for."""
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    @property
    def stream(self) -> bool:
        """Whether the client asked for a streamed answer."""
        return self.body.get("stream") is True


ScriptFunction = Callable[[RecordedRequest], Reply | Awaitable[Reply]]
"""A script as a function: called with each request, returns (or awaits to) its reply."""


def default_token_counter(messages: list[_JSON]) -> int:
    """Estimate prompt tokens deterministically, without a tokenizer.

    Each message counts ``len(json.dumps(message)) // 4 + 3``: about four characters per
    token plus a small per-message overhead, as real chat templates add. The JSON is
    compact, with sorted keys and non-ASCII characters kept as they are.

    Args:
        messages: The request's ``messages``.

    Returns:
        The estimate.

    Example:
        >>> default_token_counter([{"role": "user", "content": "Hi"}])
        10
    """
    return sum(
        len(json.dumps(message, ensure_ascii=False, separators=(",", ":"), sort_keys=True)) // 4 + 3
        for message in messages
    )


def _completion_tokens(reply: TextReply | ToolCallsReply) -> int:
    characters = len(reply.content or "")
    if isinstance(reply, ToolCallsReply):
        characters += sum(len(spec.name) + len(spec.arguments) for spec in reply.calls)
    return (characters + 3) // 4


def _pieces(value: str, size: int) -> list[str]:
    return [value[start : start + size] for start in range(0, len(value), size)]


def _error_body(message: str, error_type: str, code: str | None = None) -> _JSON:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


class ScriptedOpenAIServer:
    """An OpenAI-compatible chat-completions server that answers from a script.

    It listens on a real port, so the real ``openai`` client (or any HTTP client) talks
    to it exactly as to a remote server. Each ``POST /v1/chat/completions`` takes the
    next reply of the script; ``GET /v1/models`` lists the one model. Streaming requests
    get server-sent events shaped like OpenAI's, including the usage chunk when
    ``stream_options.include_usage`` is set.

    A script is either a sequence of replies, consumed one per request, or a function
    of the `RecordedRequest` returning the reply (sync or async), for stateful fakes.
    When a sequence runs out the server answers 400 (``error.code``
    ``"script_exhausted"``) with a message saying which request had no reply. If a
    script function raises, the request gets a 500 and the exception is raised again
    when the ``async with`` block exits, so a failed assertion inside a fake fails the
    test. Both carry ``x-should-retry: false``, so a client that honours it (``openai``,
    agentfsm) fails at once instead of retrying into the same answer.

    Example:
        ```python
        async with ScriptedOpenAIServer([text("Hi!")]) as server:
            client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
            ...
        ```

    Args:
        script: The replies, or a function choosing each reply.
        model: The ``model`` reported in responses and listed by ``/v1/models``.
        token_counter: Computes ``usage.prompt_tokens`` from the request's messages;
            `default_token_counter` by default.
        host: The address to listen on.
        port: The port to listen on; 0 picks a free one.
        max_request_bytes: The largest request body accepted; a larger one gets a 413 saying
            so. 256 MiB by default, room for several of the largest attachments.

    Raises:
        ValueError: ``max_request_bytes`` is not a positive int.
    """

    def __init__(
        self,
        script: Sequence[Reply] | ScriptFunction = (),
        *,
        model: str = "scripted-model",
        token_counter: TokenCounter | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_request_bytes: int = _MAX_REQUEST_BYTES,
    ) -> None:
        self._function: ScriptFunction | None = None
        self._queue: deque[Reply] = deque()
        if callable(script):
            self._function = script
        else:
            self._queue.extend(script)
        self._model = model
        self._token_counter = token_counter or default_token_counter
        self._host = host
        self._port = port
        if (
            isinstance(max_request_bytes, bool)
            or not isinstance(max_request_bytes, int)
            or max_request_bytes < 1
        ):
            msg = f"max_request_bytes must be a positive int, got {max_request_bytes!r}"
            raise ValueError(msg)
        self._max_request_bytes = max_request_bytes
        self._requests: list[RecordedRequest] = []
        self._replies_used = 0
        self._call_ids = itertools.count(1)
        self._script_errors: list[Exception] = []
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None
        self._closing = asyncio.Event()
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def base_url(self) -> str:
        """The URL to give a client as ``base_url``, ending in ``/v1``.

        Raises:
            RuntimeError: The server has not started yet.
        """
        if self._bound_port is None:
            msg = "the server is not running: use it as `async with ScriptedOpenAIServer(...)`"
            raise RuntimeError(msg)
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._bound_port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every chat-completions request received so far, in order of arrival."""
        return list(self._requests)

    @property
    def remaining(self) -> tuple[Reply, ...]:
        """The scripted replies not used yet (always empty for a script function)."""
        return tuple(self._queue)

    def add(self, *replies: Reply) -> None:
        """Append replies to the end of the script, also while the server runs.

        Args:
            *replies: The replies to append.

        Raises:
            TypeError: The script is a function, which has no list to append to.
        """
        if self._function is not None:
            msg = "add() needs a list script; this server's script is a function"
            raise TypeError(msg)
        self._queue.extend(replies)

    async def __aenter__(self) -> ScriptedOpenAIServer:
        """Start listening.

        Returns:
            The server itself.

        Raises:
            RuntimeError: The server was started before; each server runs once.
        """
        if self._bound_port is not None:
            msg = "a ScriptedOpenAIServer runs once: create a new one for another `async with`"
            raise RuntimeError(msg)
        app = web.Application(client_max_size=self._max_request_bytes)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model}", self._one_model)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            self._bound_port = int(runner.addresses[0][1])
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop listening, drop hanging requests and close every connection.

        Raises:
            Exception: The first exception a script function raised, if the block
                itself did not raise.
        """
        runner, self._runner = self._runner, None
        self._closing.set()
        if runner is not None:
            await runner.cleanup()
        pending = {task for task in self._handlers if not task.done()}
        if pending:
            _, still_pending = await asyncio.wait(pending, timeout=_SHUTDOWN_TIMEOUT)
            for task in still_pending:
                task.cancel()
            await asyncio.gather(*still_pending, return_exceptions=True)
        if exc is None and self._script_errors:
            raise self._script_errors[0]

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            try:
                raw = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return self._status(
                    fault.status(
                        413,
                        f"ScriptedOpenAIServer: the request body is larger than "
                        f"max_request_bytes={self._max_request_bytes}; raise it when you "
                        "build the server",
                        headers=_FINAL,
                    )
                )
            except ConnectionError:
                # The client went away (a cancelled request) before sending its whole body:
                # a normal thing for a client to do, and nobody is left to answer.
                log.debug("client_gone_before_body", extra={"path": request.path})
                return web.Response()
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):  # also bytes that are not UTF-8, and nesting
                return self._status(fault.status(400, "the request body is not valid JSON"))
            if not isinstance(body, dict):
                return self._status(fault.status(400, "the request body is not a JSON object"))
            recorded = RecordedRequest(
                body=body,
                headers={name.lower(): value for name, value in request.headers.items()},
                path=request.path,
            )
            self._requests.append(recorded)
            reply = await self._next_reply(recorded)
            return await self._answer(request, recorded, reply)
        finally:
            if task is not None:
                self._handlers.discard(task)

    async def _next_reply(self, recorded: RecordedRequest) -> Reply:
        if self._function is None:
            if not self._queue:
                return fault.status(
                    400,
                    f"ScriptedOpenAIServer: the script has no reply left for request "
                    f"#{len(self._requests)} (it had {self._replies_used}); add more with "
                    "server.add()",
                    headers=_FINAL,
                    error_code="script_exhausted",
                )
            self._replies_used += 1
            return self._queue.popleft()
        try:
            reply = self._function(recorded)
            if inspect.isawaitable(reply):
                reply = await reply
            if not isinstance(reply, _REPLY_TYPES):
                msg = f"the script function returned {reply!r}, not a reply"
                raise TypeError(msg)
        except Exception as error:  # any failure of user code becomes a 500
            self._script_errors.append(error)
            return fault.status(
                500,
                f"ScriptedOpenAIServer: the script function raised {error!r}",
                headers=_FINAL,
                error_type="server_error",
            )
        return reply

    async def _answer(
        self, request: web.Request, recorded: RecordedRequest, reply: Reply
    ) -> web.StreamResponse:
        if isinstance(reply, StatusFault):
            return self._status(reply)
        if isinstance(reply, DelayFault):
            if await self._closed_during(reply.seconds):
                return self._drop(request)
            return await self._answer(request, recorded, reply.then)
        if isinstance(reply, HangFault):
            await self._closing.wait()
            return self._drop(request)
        if isinstance(reply, DisconnectFault):
            return self._drop(request)
        if isinstance(reply, RawFault):
            return web.Response(
                body=reply.body,
                status=reply.status,
                headers={
                    "Content-Type": reply.content_type,
                    **self._request_id_header(),
                    **reply.headers,
                },
            )
        if isinstance(reply, RawStreamFault):
            return await self._raw_stream(request, reply)
        if recorded.stream:
            return await self._stream(request, recorded, reply)
        return web.json_response(
            self._completion(recorded, reply), headers=self._request_id_header()
        )

    def _status(self, reply: StatusFault) -> web.Response:
        return web.json_response(
            _error_body(reply.message, reply.error_type, reply.error_code),
            status=reply.status,
            headers={**self._request_id_header(), **reply.headers},
        )

    def _request_id_header(self) -> dict[str, str]:
        return {"x-request-id": f"req_scripted_{len(self._requests)}"}

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        # aiohttp then fails to write the response to the closed transport and treats
        # it as a client disconnect, quietly; the client sees a connection without reply.
        if request.transport is not None:
            request.transport.close()
        return web.Response()

    async def _closed_during(self, seconds: float) -> bool:
        if seconds <= 0:
            return self._closing.is_set()
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            return False
        return True

    def _call_ids_for(self, reply: TextReply | ToolCallsReply) -> list[str | None]:
        if isinstance(reply, TextReply):
            return []
        if reply.omit_ids:
            return [None] * len(reply.calls)
        return [spec.id or f"call_{next(self._call_ids)}" for spec in reply.calls]

    def _usage(self, recorded: RecordedRequest, reply: TextReply | ToolCallsReply) -> _JSON | None:
        if reply.usage is False:
            return None
        prompt = self._token_counter(recorded.messages)
        completion = _completion_tokens(reply)
        usage: _JSON = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if reply.usage is not None:
            usage.update(reply.usage)
            if "total_tokens" not in reply.usage:
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return usage

    def _envelope(self, kind: str) -> _JSON:
        return {
            "id": f"chatcmpl-scripted-{len(self._requests)}",
            "object": kind,
            "created": int(time.time()),
            "model": self._model,
            "system_fingerprint": None,
        }

    def _completion(self, recorded: RecordedRequest, reply: TextReply | ToolCallsReply) -> _JSON:
        message: _JSON = {"role": "assistant", "content": reply.content, "refusal": None}
        if isinstance(reply, ToolCallsReply):
            message["tool_calls"] = [
                _tool_call_head(call_id, spec.name, spec.arguments)
                for call_id, spec in zip(self._call_ids_for(reply), reply.calls, strict=True)
            ]
        completion = self._envelope("chat.completion")
        completion["choices"] = [
            {
                "index": 0,
                "message": message,
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
        ]
        usage = self._usage(recorded, reply)
        if usage is not None:
            completion["usage"] = usage
        return completion

    async def _stream(
        self, request: web.Request, recorded: RecordedRequest, reply: TextReply | ToolCallsReply
    ) -> web.StreamResponse:
        options = recorded.body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        usage = self._usage(recorded, reply) if include_usage else None
        envelope = self._envelope("chat.completion.chunk")
        chunks: list[_JSON] = []
        for delta, finish_reason in _deltas(reply, self._call_ids_for(reply)):
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            chunk = {**envelope, "choices": [choice]}
            if usage is not None:
                chunk["usage"] = None
            chunks.append(chunk)
        if usage is not None:
            chunks.append({**envelope, "choices": [], "usage": usage})

        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **self._request_id_header(),
            }
        )
        try:
            await response.prepare(request)
            for position, chunk in enumerate(chunks):
                if position and await self._closed_during(reply.chunk_delay):
                    self._drop(request)
                    return response
                await response.write(
                    f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n".encode()
                )
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionError:
            # The client stopped reading mid-stream: a normal thing for a test to do.
            pass
        return response

    async def _raw_stream(self, request: web.Request, reply: RawStreamFault) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **self._request_id_header(),
                **reply.headers,
            }
        )
        try:
            await response.prepare(request)
            for position, piece in enumerate(reply.pieces):
                if position and await self._closed_during(reply.chunk_delay):
                    self._drop(request)
                    return response
                await response.write(piece)
            await response.write_eof()
        except ConnectionError:
            pass  # the client stopped reading: as in _stream
        return response

    async def _models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [self._model_entry()]})

    async def _one_model(self, request: web.Request) -> web.Response:
        if request.match_info["model"] != self._model:
            return self._not_found_response(
                f"The model '{request.match_info['model']}' does not exist"
            )
        return web.json_response(self._model_entry())

    def _model_entry(self) -> _JSON:
        return {"id": self._model, "object": "model", "created": 0, "owned_by": "agentfsm"}

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._not_found_response(
            f"ScriptedOpenAIServer serves POST /v1/chat/completions and GET /v1/models, "
            f"not {request.method} {request.path}"
        )

    @staticmethod
    def _not_found_response(message: str) -> web.Response:
        return web.json_response(
            _error_body(message, "invalid_request_error", "not_found"), status=404
        )


def _tool_call_head(call_id: str | None, name: str, arguments: str) -> _JSON:
    head: _JSON = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call_id is not None:
        head = {"id": call_id, **head}
    return head


def _deltas(
    reply: TextReply | ToolCallsReply, call_ids: list[str | None]
) -> Iterator[tuple[_JSON, str | None]]:
    """Yield the stream's deltas with their finish reasons, in OpenAI's order."""
    yield {"role": "assistant", "content": None if reply.content is None else ""}, None
    for piece in _pieces(reply.content or "", reply.chunk_size):
        yield {"content": piece}, None
    if isinstance(reply, ToolCallsReply):
        per_call = [
            _call_deltas(index, call_id, spec.name, spec.arguments, reply.chunk_size)
            for index, (call_id, spec) in enumerate(zip(call_ids, reply.calls, strict=True))
        ]
        if reply.interleave:
            ordered = [
                delta
                for round_ in itertools.zip_longest(*per_call)
                for delta in round_
                if delta is not None
            ]
        else:
            ordered = [delta for deltas in per_call for delta in deltas]
        for delta in ordered:
            yield {"tool_calls": [delta]}, None
    yield {}, reply.finish_reason


def _call_deltas(
    index: int, call_id: str | None, name: str, arguments: str, chunk_size: int
) -> list[_JSON]:
    head = {"index": index, **_tool_call_head(call_id, name, "")}
    fragments = [
        {"index": index, "function": {"arguments": piece}}
        for piece in _pieces(arguments, chunk_size)
    ]
    return [head, *fragments]
