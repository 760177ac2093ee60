"""MCP tool servers: an MCP server's tools as ordinary agentfsm tools, over one live session.

Needs the ``mcp`` extra (``pip install 'agentfsm[mcp]'``); ``import agentfsm`` never imports
this package. `MCPServer` connects (``_server``) over stdio or streamable HTTP
(``_transports``), offers the server's tools as `agentfsm.Tool` objects (``_tools``) and
turns their answers into tool-message text (``_results``).
"""

try:
    import mcp  # noqa: F401 - fail here, with the fix, rather than deep inside a submodule
except ImportError as exc:  # pragma: no cover - the extra is part of the dev install
    raise ImportError("agentfsm.mcp needs the 'mcp' package: pip install 'agentfsm[mcp]'") from exc

from agentfsm.mcp._errors import MCPServerError, MCPToolError
from agentfsm.mcp._server import MCPServer

__all__ = ["MCPServer", "MCPServerError", "MCPToolError"]
