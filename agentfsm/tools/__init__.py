"""Tools the model may call: their schemas, argument checks, identity injection and execution.

``Tool`` / ``tool`` build them (from a function's signature through `agentfsm.schema`, or
from an explicit JSON Schema), ``tools_from_registry`` normalizes an agent's list of them,
``format_result`` turns what one returned into the text the model reads.
"""

from agentfsm.tools._binding import PreparedCall, ToolContext
from agentfsm.tools._results import format_result
from agentfsm.tools._tool import Tool, tool, tools_from_registry

__all__ = [
    "PreparedCall",
    "Tool",
    "ToolContext",
    "format_result",
    "tool",
    "tools_from_registry",
]
