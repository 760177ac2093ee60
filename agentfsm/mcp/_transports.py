"""How to reach an MCP server: a process over stdio, or a URL over streamable HTTP."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import httpx2
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

__all__ = ["Http", "Stdio", "Transport"]

_HTTP_TIMEOUT = 30.0
_HTTP_READ_TIMEOUT = 300.0  # a streamed answer may stay open a long time (the mcp default)


@attrs.frozen
class Stdio:
    """A server the client spawns and talks to over the process's stdin and stdout."""

    command: str
    args: tuple[str, ...]
    env: Mapping[str, str] | None = attrs.field(repr=False)  # may hold secrets
    cwd: str | None

    def default_name(self) -> str:
        """What the command runs: ``server`` for ``python server.py``, the module of ``-m``."""
        for i, arg in enumerate(self.args):
            after = self.args[i - 1] if i else ""
            if after == "-m":
                return arg
            if not arg.startswith("-") and after != "-c":  # the value of -c is code
                stem = Path(arg).stem
                if re.fullmatch(r"[\w.@-]+", stem):
                    return stem
                break
        return Path(self.command).stem or "mcp"

    def describe(self) -> str:
        """For a repr: the command only (arguments and env may hold secrets)."""
        return f"stdio={self.command!r}"

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Client]:
        """Spawn the process and open a session; leaving ends both."""
        parameters = StdioServerParameters(
            command=self.command,
            args=list(self.args),
            env=dict(self.env) if self.env is not None else None,
            cwd=self.cwd,
        )
        # The listing is cached by MCPServer, per session: no response cache in the client.
        async with Client(stdio_client(parameters), cache=None) as client:
            yield client


@attrs.frozen
class Http:
    """A server reached over the streamable HTTP transport."""

    url: str
    headers: Mapping[str, str] = attrs.field(repr=False)  # may hold an API key

    def default_name(self) -> str:
        """The URL's host."""
        return urlsplit(self.url).hostname or "mcp"

    def describe(self) -> str:
        """For a repr: the URL without credentials or query, which may hold secrets."""
        parts = urlsplit(self.url)
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="")
        return f"url={shown.geturl()!r}"

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Client]:
        """Open an HTTP client and a session on it; leaving ends the session and closes both."""
        timeout = httpx2.Timeout(_HTTP_TIMEOUT, read=_HTTP_READ_TIMEOUT)
        async with httpx2.AsyncClient(headers=dict(self.headers), timeout=timeout) as http:
            transport = streamable_http_client(self.url, http_client=http)
            async with Client(transport, cache=None) as client:
                yield client


Transport = Stdio | Http
