"""One engine for types and JSON: a Python type's JSON Schema, and JSON validated into it.

Tool arguments and structured answers both go through it::

    from agentfsm.schema import type_schema

    weather = type_schema(Weather, strict=True)
    weather.json_schema               # OpenAI's strict form
    weather.validate_json(text)       # a Weather, or SchemaValidationError with model-readable
                                      # errors: ("$.days: must be <= 10, got 50",)
    weather.to_jsonable(value)        # back to JSON-ready data

Built on pydantic's ``TypeAdapter``; attrs classes, dataclasses and TypedDicts go through one
object builder of agentfsm's, so attrs classes work like the others.
"""

from agentfsm.schema._engine import TypeSchema, type_schema

__all__ = ["TypeSchema", "type_schema"]
