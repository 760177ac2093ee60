"""Structured output: what a run's final answer must be, how it is asked for, and how an
answer is checked and turned into a value of the output type."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from agentfsm import errors
from agentfsm.errors import ConfigurationError
from agentfsm.messages import AssistantMessage, Message, ToolCall, ToolMessage, UserMessage
from agentfsm.state import Conversation, OutputSpec

__all__ = ["FINAL_TOOL", "OUTPUT_MODES", "OutputMode", "OutputPlan", "Verdict"]

FINAL_TOOL = "final_result"
"""The tool a model calls with its answer in ``output_mode="tool"``."""

OutputMode = Literal["json_schema", "tool"]
OUTPUT_MODES: tuple[OutputMode, ...] = ("json_schema", "tool")

_NOT_EXECUTED = "Not executed: the final answer was given in the same message."


@attrs.frozen
class Verdict:
    """What a final answer is worth: accepted (with the messages that close it) or rejected
    (with why, and the messages that tell the model)."""

    rejected: tuple[str, ...] | None = None
    repair: tuple[Message, ...] = ()
    closing: tuple[Message, ...] = ()


@attrs.frozen
class OutputPlan:
    """A run's output type, bound: the stored spec, and the validator of its Python type
    (``None`` when a resumed run's agent does not know the type: answers are then checked
    as JSON only, and the output is the parsed JSON).
    """

    spec: OutputSpec
    adapter: Any = None  # agentfsm.schema.TypeSchema

    @classmethod
    def for_type(cls, output_type: Any, mode: str = "json_schema") -> OutputPlan | None:
        """The plan for ``output_type`` (``None`` for ``str`` / ``None``: plain text).

        The schema is OpenAI's strict form when the type allows it (the server then
        enforces it), the plain form otherwise. A type that is not an object (a list, an
        enum, a number) is asked for wrapped as ``{"result": ...}``.

        Raises:
            ConfigurationError: an unknown mode, or a type the schema engine cannot take.
        """
        if output_type is None or output_type is str:
            return None
        if mode not in OUTPUT_MODES:
            raise ConfigurationError(f"output_mode must be 'json_schema' or 'tool', got {mode!r}")
        from agentfsm.schema import type_schema  # pydantic loads with the first output type

        try:
            adapter = type_schema(output_type, strict=True)
        except ConfigurationError:
            adapter = type_schema(output_type, strict=False)
        root = dict(adapter.json_schema)
        wrapped = root.get("type") != "object" or "properties" not in root
        if wrapped:
            defs = root.pop("$defs", None)
            root = {
                "type": "object",
                "properties": {"result": root},
                "required": ["result"],
                "additionalProperties": False,
                **({"$defs": defs} if defs else {}),
            }
        spec = OutputSpec(
            name=adapter.name, json_schema=root, mode=mode, strict=adapter.strict, wrapped=wrapped
        )
        return cls(spec, adapter)

    @classmethod
    def resumed(cls, spec: OutputSpec, known: OutputPlan | None) -> OutputPlan:
        """The plan of a stored run: ``known`` if it asks for the same thing, else the spec
        alone (JSON checked, no Python type)."""
        if known is not None and known.spec == spec:
            return known
        return cls(spec)

    # ------------------------------------------------------------------ asking

    def request_params(self) -> dict[str, Any]:
        """What the request adds in ``json_schema`` mode: its ``response_format``."""
        if self.spec.mode != "json_schema":
            return {}
        schema: dict[str, Any] = {"name": self.spec.name, "schema": dict(self.spec.json_schema)}
        if self.spec.strict:
            schema["strict"] = True
        return {"response_format": {"type": "json_schema", "json_schema": schema}}

    def tools(self) -> list[dict[str, Any]]:
        """What the request adds in ``tool`` mode: the final-answer tool."""
        if self.spec.mode != "tool":
            return []
        function: dict[str, Any] = {
            "name": FINAL_TOOL,
            "description": f"Give your final answer (a {self.spec.name}) by calling this "
            "tool; call it once, when you have the answer.",
            "parameters": dict(self.spec.json_schema),
        }
        if self.spec.strict:
            function["strict"] = True
        return [{"type": "function", "function": function}]

    # ------------------------------------------------------------------ checking

    def check(self, message: AssistantMessage) -> Verdict | None:
        """The verdict on ``message`` if it is a final answer, ``None`` if it is a turn of
        (other) tool calls."""
        if self.spec.mode == "tool":
            return self._check_tool(message)
        if message.tool_calls:
            return None
        errors = self._errors(message.content or "")
        if not errors:
            return Verdict()
        return Verdict(rejected=errors, repair=(UserMessage(self._repair_text(errors)),))

    def _check_tool(self, message: AssistantMessage) -> Verdict | None:
        finals = [c for c in message.tool_calls if c.name == FINAL_TOOL]
        if not finals:
            if message.tool_calls:
                return None
            errors: tuple[str, ...] = (
                f"$: no answer given: call the {FINAL_TOOL} tool with your final answer",
            )
            return Verdict(rejected=errors, repair=(UserMessage(self._repair_text(errors)),))
        final, others = finals[0], [c for c in message.tool_calls if c is not finals[0]]
        rest = tuple(_result(c, _NOT_EXECUTED, error=True) for c in others)
        errors = self._errors(final.arguments)
        if not errors:
            return Verdict(closing=(_result(final, "Final answer received."), *rest))
        return Verdict(
            rejected=errors,
            repair=(_result(final, self._repair_text(errors), error=True), *rest),
        )

    def _errors(self, text: str) -> tuple[str, ...]:
        """What is wrong with ``text`` as an answer (empty when it is a valid one)."""
        try:
            self.parse(text)
        except errors.SchemaValidationError as error:
            return tuple(error.errors)
        return ()

    def parse(self, text: str) -> Any:
        """The value ``text`` holds: of the output type when the plan knows it, else the
        parsed JSON.

        Raises:
            SchemaValidationError: ``text`` is not JSON, or does not match.
        """
        try:
            data = json.loads(_strip_fence(text))
        except (ValueError, RecursionError) as error:
            raise errors.SchemaValidationError((f"$: the answer is not JSON ({error})",)) from None
        if self.spec.wrapped:
            if not isinstance(data, Mapping) or "result" not in data:
                raise errors.SchemaValidationError(('$: expected an object {"result": ...}',))
            data = data["result"]
        if self.adapter is None:  # a resumed run whose type this agent does not know
            self._check_json(data)
            return data
        return self.adapter.validate_python(data)

    def _check_json(self, data: Any) -> None:
        """Check parsed JSON against the stored schema alone.

        Raises:
            SchemaValidationError: with the schema validator's messages.
        """
        from agentfsm.schema._validator import PATH_STYLE, compile_schema

        schema = self.spec.json_schema
        if self.spec.wrapped:  # the stored schema is the wrapper: check its "result"
            data = {"result": data}
        found: list[str] = []
        compile_schema(schema, style=PATH_STYLE, lint=False)(data, PATH_STYLE.root, found)
        if found:
            raise errors.SchemaValidationError(tuple(found), self.spec.name)

    def value(self, conversation: Conversation) -> Any:
        """The output of ``conversation``'s run: its final answer as a value, or ``None``
        when the run ended without a valid one."""
        text = self.answer_text(conversation)
        if text is None:
            return None
        try:
            return self.parse(text)
        except errors.SchemaValidationError:
            return None

    def answer_text(self, conversation: Conversation) -> str | None:
        """The raw text of the run's final answer: the newest assistant text, or the
        final-answer tool's arguments in ``tool`` mode."""
        for message in reversed(conversation.run_messages):
            if not isinstance(message, AssistantMessage):
                continue
            if self.spec.mode == "tool":
                for call in message.tool_calls:
                    if call.name == FINAL_TOOL:
                        return call.arguments
                continue
            return None if message.tool_calls else message.content
        return None

    def _repair_text(self, errors: tuple[str, ...]) -> str:
        listed = "\n".join(f"- {e}" for e in errors)
        how = (
            f"call the {FINAL_TOOL} tool again with arguments that match its schema"
            if self.spec.mode == "tool"
            else "answer again with only the JSON that matches the required schema"
        )
        return (
            f"Your answer does not match the required output ({self.spec.name}):\n{listed}\n"
            f"Fix it: {how}."
        )


def _result(call: ToolCall, content: str, *, error: bool = False) -> ToolMessage:
    return ToolMessage(call.id, content, tool_name=call.name, is_error=error)


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*)\n\s*```\s*$", re.DOTALL)


def _strip_fence(text: str) -> str:
    """``text`` without a Markdown code fence around it (models add one without being asked)."""
    match = _FENCE.match(text)
    return match.group(1) if match else text
