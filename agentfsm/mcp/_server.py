"""MCPServer: one session with an MCP server, held open by a task of its own until closed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs
import mcp.types as mcp_types
from mcp import Client, MCPError

from agentfsm._log import get_logger
from agentfsm.errors import ConfigurationError
from agentfsm.mcp._errors import MCPServerError, MCPToolError
from agentfsm.mcp._results import result_text
from agentfsm.mcp._tools import ToolFactory, check_inject
from agentfsm.mcp._transports import Http, Stdio, Transport
from agentfsm.tools import Tool

__all__ = ["MCPServer"]

log = get_logger(__name__)

_MCPServerT = TypeVar("_MCPServerT", bound="MCPServer")

_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,60}$")  # it prefixes tool names (at most 64)
_MAX_PAGES = 100  # a server whose cursor never ends cannot hang a listing


@attrs.define(eq=False)
class _Session:
    """One connection: the task that owns it, its client once connected, its listed tools.

    The ``mcp`` client's transports are anyio task groups, which must be entered and left by
    the same task; so one task (``runner``) holds the connection open until ``closing`` is
    set, and callers in any task use ``client`` meanwhile.
    """

    loop: asyncio.AbstractEventLoop
    closing: asyncio.Event = attrs.field(factory=asyncio.Event)
    ready: asyncio.Event = attrs.field(factory=asyncio.Event)
    runner: asyncio.Task[None] | None = None
    client: Client | None = None
    error: BaseException | None = None
    broken: bool = False
    tools: tuple[Tool, ...] | None = None

    def usable(self, loop: asyncio.AbstractEventLoop) -> bool:
        return (
            self.loop is loop
            and self.client is not None
            and not self.broken
            and not self.closing.is_set()
        )


class MCPServer:
    """An MCP server whose tools an agent can call, over one session that lives until closed.

    Build one with `MCPServer.stdio` or `MCPServer.http`. Nothing connects until first use:
    `start` (or `list_tools`, or ``async with server:``) opens the session, `aclose` ends it
    (for stdio, the server process too). A closed server starts again when started again.

    `list_tools` returns the server's tools as ordinary `agentfsm.Tool` objects, cached after
    the first listing (`refresh` lists again). Calling one of them sends the validated
    arguments to the server; its answer becomes the text of the tool message (text as is,
    structured content as JSON, images and audio as a short placeholder), and an error answer
    raises `MCPToolError` with the server's text, which the agent hands to the model as the
    call's error result. Cancelling a call (a stop) cancels it on the server too; the session
    stays usable.

    ``user_id`` and ``chat_id`` never reach the server unless mapped with ``inject``: a tool
    argument named ``user_id`` / ``chat_id`` that is not mapped is hidden from the model and
    not sent (with a logged warning). ``inject={"user": "user_id"}`` fills the server's
    ``user`` argument from the conversation's ``user_id`` (any `ToolContext` field works) and
    hides it from the model; a field that is None is left out of the call.

    If the connection drops (the server process died), the call that finds out fails with an
    error result; the next call, listing or start connects again.

    Attributes:
        name: the server's name, for logs and errors; given as ``name=``, it also prefixes
            its tools' names (``f"{name}_{tool}"``) so two servers' tools cannot clash.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        name: str | None = None,
        inject: Mapping[str, str] | None = None,
    ) -> None:
        """Use `MCPServer.stdio` or `MCPServer.http`; this signature is internal."""
        if name is not None and (not isinstance(name, str) or not _NAME_RE.match(name)):
            raise ConfigurationError(
                f"MCP server name must match ^[a-zA-Z0-9_-]{{1,60}}$ (it prefixes tool "
                f"names), got {name!r}"
            )
        self._transport = transport
        self._name = name or transport.default_name()
        self._factory = ToolFactory(
            server=self._name, prefix=name, inject=check_inject(inject), call=self._call
        )
        self._session: _Session | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        *,
        name: str | None = None,
        cwd: str | Path | None = None,
        inject: Mapping[str, str] | None = None,
    ) -> MCPServer:
        """A server the client spawns as a process and talks to over its stdin and stdout.

        Args:
            command: the executable, e.g. ``"npx"``, ``"uvx"`` or ``sys.executable``.
            args: its arguments, e.g. ``["server.py"]``.
            env: environment variables for the process, over the ``mcp`` package's safe
                defaults (``PATH``, ``HOME``…); the rest of ours is not passed on.
            name: the server's name; prefixes its tool names (``f"{name}_{tool}"``).
            cwd: the process's working directory.
            inject: server argument name → `ToolContext` field (``"user_id"``,
                ``"chat_id"``, ``"agent_name"``, ``"turn"``) to fill it from.

        Returns:
            The server, not started yet.

        Raises:
            ConfigurationError: an empty command, ``args`` given as one string, a name that
                cannot prefix tool names, or an unknown ``inject`` field.
        """
        if not isinstance(command, str) or not command:
            raise ConfigurationError(f"command must be a non-empty string, got {command!r}")
        if isinstance(args, (str, bytes)):
            raise ConfigurationError(
                f"args must be a list of strings, got the string {args!r}; write [{args!r}]"
            )
        arguments = tuple(args)
        if not all(isinstance(arg, str) for arg in arguments):
            raise ConfigurationError(f"args must be strings, got {list(arguments)!r}")
        if env is not None and not all(
            isinstance(key, str) and isinstance(value, str) for key, value in env.items()
        ):
            raise ConfigurationError("env must map strings to strings")
        transport = Stdio(
            command=command,
            args=arguments,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd is not None else None,
        )
        return cls(transport, name=name, inject=inject)

    @classmethod
    def http(
        cls,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        name: str | None = None,
        inject: Mapping[str, str] | None = None,
    ) -> MCPServer:
        """A server reached over MCP's streamable HTTP transport.

        Args:
            url: the server's MCP endpoint, e.g. ``"https://example.com/mcp"``.
            headers: HTTP headers sent with every request (an ``Authorization`` header…);
                never shown in a repr or a log.
            name: the server's name; prefixes its tool names (``f"{name}_{tool}"``).
            inject: server argument name → `ToolContext` field to fill it from.

        Returns:
            The server, not connected yet.

        Raises:
            ConfigurationError: a URL that is not http(s), headers that are not strings,
                a name that cannot prefix tool names, or an unknown ``inject`` field.
        """
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ConfigurationError(f"url must be an http:// or https:// URL, got {url!r}")
        given = dict(headers or {})
        if not all(isinstance(key, str) and isinstance(value, str) for key, value in given.items()):
            raise ConfigurationError("headers must map strings to strings")
        return cls(Http(url=url, headers=given), name=name, inject=inject)

    @property
    def name(self) -> str:
        """The server's name: the ``name=`` given, else the script's or the host's name."""
        return self._name

    def __repr__(self) -> str:
        return f"MCPServer(name={self._name!r}, {self._transport.describe()})"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect (for stdio: spawn the process) unless connected; safe to call again.

        Raises:
            MCPServerError: the server could not be started or did not complete the MCP
                handshake; the message says why.
        """
        async with self._loop_lock():
            session = self._session
            if session is not None and session.usable(asyncio.get_running_loop()):
                return
            if session is not None:
                self._retire(session)
                self._session = None
            self._session = await self._open()

    async def aclose(self) -> None:
        """End the session (and the stdio process); calls still running fail.

        Safe to call more than once, and on a server never started. A closed server's tools
        fail until it is started again.
        """
        async with self._loop_lock():
            session, self._session = self._session, None
            if session is not None:
                self._retire(session)
        loop = asyncio.get_running_loop()
        pending = [task for task in self._retiring if task.get_loop() is loop]
        if pending:
            await asyncio.wait(pending)

    async def __aenter__(self: _MCPServerT) -> _MCPServerT:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _open(self) -> _Session:
        loop = asyncio.get_running_loop()
        session = _Session(loop=loop)
        session.runner = loop.create_task(self._own(session), name=f"agentfsm-mcp-{self._name}")
        try:
            await session.ready.wait()
        except BaseException:  # cancelled while connecting: the runner winds down alone
            self._retire(session)
            raise
        if session.client is None:
            error = session.error
            raise MCPServerError(self._name, f"could not start: {_describe(error)}") from error
        return session

    async def _own(self, session: _Session) -> None:
        """The runner: connect, publish the client, hold the connection until closing."""
        try:
            async with self._transport.connect() as client:
                session.client = client
                session.ready.set()
                await session.closing.wait()
        except Exception as exc:
            if not session.ready.is_set():
                session.error = exc  # the opener raises it
            elif not session.broken:
                log.warning("mcp_server_closed_with_error", server=self._name, error=_describe(exc))
        finally:
            session.client = None
            session.ready.set()

    def _retire(self, session: _Session) -> None:
        """Let a session's runner close it; `aclose` waits for the runners still closing."""
        if session.loop is not asyncio.get_running_loop():
            return  # its loop is gone: asyncio.run cancelled the runner when it ended
        session.closing.set()
        runner = session.runner
        if runner is not None and not runner.done():
            if not session.ready.is_set():
                runner.cancel()  # still connecting: a server that never answers would hang it
            self._retiring.add(runner)
            runner.add_done_callback(self._retiring.discard)

    def _loop_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def _started(self) -> _Session:
        await self.start()
        session = self._session
        if session is None or session.client is None:  # closed by a concurrent aclose()
            raise MCPServerError(self._name, "was closed while starting")
        return session

    # ------------------------------------------------------------------ tools

    async def list_tools(self) -> tuple[Tool, ...]:
        """The server's tools as agentfsm tools; listed once per session, then cached.

        Starts the server if needed. A tool that cannot be offered (a name no model API
        accepts even cleaned, a name clash) is left out with a logged warning; a tool whose
        schema uses a keyword agentfsm's validator refuses is offered with the server's schema
        and checked by the server alone (also with a warning).

        Returns:
            The tools, in the server's order.

        Raises:
            MCPServerError: the server could not be started or could not list its tools.
        """
        session = await self._started()
        if session.tools is None:
            session.tools = await self._list(session)
        return session.tools

    async def refresh(self) -> tuple[Tool, ...]:
        """List the server's tools again (after it changed them), replacing the cache.

        Returns:
            The tools, in the server's order.

        Raises:
            MCPServerError: as for `list_tools`.
        """
        session = await self._started()
        session.tools = await self._list(session)
        return session.tools

    async def _list(self, session: _Session) -> tuple[Tool, ...]:
        client = session.client
        if client is None:
            raise MCPServerError(self._name, "was closed while listing its tools")
        specs: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            try:
                page = await client.list_tools(cursor=cursor)
            except MCPError as exc:
                if exc.code == mcp_types.CONNECTION_CLOSED:
                    session.broken = True
                    raise MCPServerError(
                        self._name, "lost its connection while listing its tools"
                    ) from exc
                raise MCPServerError(
                    self._name, f"could not list its tools: {exc.message}"
                ) from exc
            specs.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        else:
            log.warning("mcp_tool_listing_truncated", server=self._name, pages=_MAX_PAGES)
        return self._factory.build(specs)

    async def _call(self, remote: str, arguments: dict[str, Any]) -> str:
        session = self._session
        if session is None:
            raise MCPServerError(self._name, "is not running: start it before calling its tools")
        if session.broken or not session.usable(asyncio.get_running_loop()):
            session = await self._started()  # the connection dropped: connect again
        client = session.client
        if client is None:
            raise MCPServerError(self._name, "was closed")
        try:
            result = await client.call_tool(remote, arguments)
        except MCPError as exc:
            if exc.code == mcp_types.CONNECTION_CLOSED:
                if session.closing.is_set():
                    raise MCPServerError(
                        self._name, f"was closed during the call to {remote!r}"
                    ) from exc
                session.broken = True
                raise MCPServerError(
                    self._name, f"lost its connection during the call to {remote!r}"
                ) from exc
            raise MCPToolError(self._name, remote, exc.message) from None
        return result_text(self._name, remote, result)


def _describe(error: BaseException | None) -> str:
    """``Type: message`` of the error, unwrapped from single-member exception groups."""
    while error is not None:
        members = getattr(error, "exceptions", None)
        if isinstance(members, Sequence) and len(members) == 1:
            error = members[0]
            continue
        break
    if error is None:
        return "unknown error"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
