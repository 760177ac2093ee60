"""The text of a tool message for an MCP tool result; an error result raises MCPToolError."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import mcp.types as mcp_types

from agentfsm.mcp._errors import MCPToolError
from agentfsm.tools import format_result

__all__ = ["result_text"]


def result_text(server: str, tool: str, result: mcp_types.CallToolResult) -> str:
    """What the model reads for ``result``: each content block as a line.

    Text as is; structured content that the server repeated as JSON text (as the spec asks)
    as compact JSON, or its JSON alone when there is no content; images, audio and binary
    resources as a placeholder with their type and size (tool results are text in the chat
    API).

    Raises:
        MCPToolError: the result is an error (``isError``); its message is the server's text.
    """
    parts = [_block_text(block) for block in result.content]
    if result.is_error:
        message = "\n".join(part for part in parts if part)
        raise MCPToolError(server, tool, message or "the tool failed without saying why")
    structured = result.structured_content
    if structured is not None:
        if not parts:
            return format_result(structured)
        texts = [i for i, block in enumerate(result.content) if block.type == "text"]
        if len(texts) == 1 and _is_json_of(parts[texts[0]], structured):
            parts[texts[0]] = format_result(structured)
    return "\n".join(parts)


def _block_text(block: Any) -> str:
    if isinstance(block, mcp_types.TextContent):
        return block.text
    if isinstance(block, mcp_types.ImageContent):
        return f"[image {block.mime_type}, {_decoded_size(block.data)} bytes]"
    if isinstance(block, mcp_types.AudioContent):
        return f"[audio {block.mime_type}, {_decoded_size(block.data)} bytes]"
    if isinstance(block, mcp_types.ResourceLink):
        return f"[resource {block.uri}]"
    if isinstance(block, mcp_types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, mcp_types.TextResourceContents):
            return resource.text
        kind = resource.mime_type or "binary"
        return f"[resource {resource.uri}, {kind}, {_decoded_size(resource.blob)} bytes]"
    return f"[{getattr(block, 'type', 'unknown')} content]"  # a kind newer than this code


def _decoded_size(data: str) -> int:
    try:
        return len(base64.b64decode(data))
    except (binascii.Error, ValueError):
        return len(data) * 3 // 4


def _is_json_of(text: str, value: Any) -> bool:
    try:
        return bool(json.loads(text) == value)
    except (ValueError, RecursionError):
        return False
