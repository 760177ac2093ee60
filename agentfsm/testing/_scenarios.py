"""Ready-made script functions that fake a model's behaviour for demos and benchmarks."""

from __future__ import annotations

import json
import string
from typing import Any

from agentfsm.testing._replies import Reply, call, text, tool_calls
from agentfsm.testing._server import RecordedRequest

__all__ = ["weather"]

_DEFAULT_CITY = "Tokyo"


def weather(request: RecordedRequest) -> Reply:
    """Fake a model that answers weather questions with a ``get_weather`` tool.

    - After a ``tool`` message: ``"It is sunny and 22 °C in <city>."``, with the city
      from the ``get_weather`` call that the tool message answers; or, when the request
      asks for structured output (``response_format`` with a JSON schema), a JSON object
      filling the schema's properties: ``city`` with the city, other strings ``"sunny"``,
      integers 22, numbers 22.0, booleans true.
    - Else, when a function tool named ``get_weather`` is offered: a ``get_weather``
      call whose ``city`` is the last word of the last user message, capitalized and
      stripped of punctuation (``"Tokyo"`` when there is none).
    - Else: a short greeting.

    Args:
        request: The request to answer.

    Returns:
        The reply.

    Example:
        >>> request = RecordedRequest(
        ...     body={"messages": [{"role": "user", "content": "Hi"}]}, headers={}, path="/"
        ... )
        >>> weather(request).content
        'Hello! I am a scripted model. Offer me a get_weather tool and ask about a city.'
    """
    messages = request.messages
    if messages and messages[-1].get("role") == "tool":
        city = _city_of_tool_call(messages, messages[-1].get("tool_call_id"))
        schema = _response_schema(request.body)
        if schema is not None:
            return text(json.dumps(_filled(schema, city)))
        return text(f"It is sunny and 22 °C in {city}.")
    if any(_function_name(tool) == "get_weather" for tool in request.tools):
        return tool_calls(call("get_weather", {"city": _city_asked(messages)}))
    return text("Hello! I am a scripted model. Offer me a get_weather tool and ask about a city.")


def _response_schema(body: Any) -> dict[str, Any] | None:
    """The JSON schema of a request's ``response_format``, if it has one."""
    response_format = body.get("response_format") if isinstance(body, dict) else None
    if not isinstance(response_format, dict):
        return None
    inner = response_format.get("json_schema")
    schema = inner.get("schema") if isinstance(inner, dict) else None
    return schema if isinstance(schema, dict) else None


_FILL: dict[str, Any] = {"string": "sunny", "integer": 22, "number": 22.0, "boolean": True}


def _filled(schema: dict[str, Any], city: str) -> dict[str, Any]:
    """An object for ``schema``'s properties, with plain values by type."""
    properties = schema.get("properties")
    filled: dict[str, Any] = {}
    for name, spec in (properties if isinstance(properties, dict) else {}).items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(kind, list):  # a nullable property: ["string", "null"]
            kind = next((k for k in kind if k != "null"), None)
        filled[name] = city if name == "city" else _FILL.get(str(kind))
    return filled


def _function_name(tool: dict[str, Any]) -> str | None:
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else None


def _city_asked(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            words = _text_of(message.get("content")).split()
            word = words[-1].strip(string.punctuation + "¿¡“”‘’") if words else ""
            return word.capitalize() or _DEFAULT_CITY
    return _DEFAULT_CITY


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Content parts: [{"type": "text", "text": "..."}, ...]
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _city_of_tool_call(messages: list[dict[str, Any]], tool_call_id: object) -> str:
    calls = [
        tool_call
        for message in messages
        if message.get("role") == "assistant"
        for tool_call in message.get("tool_calls") or []
        if isinstance(tool_call, dict) and _function_name(tool_call) == "get_weather"
    ]
    # The call this tool message answers, else the latest one (ids may be missing).
    matching = [tool_call for tool_call in calls if tool_call.get("id") == tool_call_id]
    for tool_call in (matching or calls[::-1])[:1]:
        try:
            arguments = json.loads(tool_call["function"].get("arguments") or "{}")
        except ValueError:
            break
        city = arguments.get("city") if isinstance(arguments, dict) else None
        if isinstance(city, str) and city:
            return city
    return _DEFAULT_CITY
