"""The exceptions of agentfsm.mcp, beside the tree of `agentfsm.errors`::

AgentFSMError
├── MCPServerError     the server could not start, list its tools, or lost its connection
│                      (a tool call that meets it gets an error result the model reads)
└── MCPToolError       the server answered a tool call with an error (never raised to
                       the caller: the model reads it as the call's error result)
"""

from __future__ import annotations

from agentfsm.errors import AgentFSMError

__all__ = ["MCPServerError", "MCPToolError"]


class MCPServerError(AgentFSMError):
    """An MCP server could not be started, could not list its tools, or lost its connection.

    Attributes:
        server: the `MCPServer`'s name.
    """

    def __init__(self, server: str, message: str) -> None:
        super().__init__(f"MCP server {server!r} {message}")
        self.server = server


class MCPToolError(AgentFSMError):
    """An MCP server answered a tool call with an error (``isError``, or a JSON-RPC error).

    The message is the server's text, so the model reads exactly what the server said.

    Attributes:
        server: the `MCPServer`'s name.
        tool: the tool's name on the server.
    """

    def __init__(self, server: str, tool: str, message: str) -> None:
        super().__init__(message)
        self.server = server
        self.tool = tool
