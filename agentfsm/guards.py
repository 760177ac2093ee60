"""User guards: your own checks on a run's transitions (moderation, loop breakers, per-tenant
limits), checked after agentfsm's own guards, at four checkpoints.

A guard is a name and a check. The check reads a :class:`GuardContext` and returns what it
decided (sync or async; an async check is cut by a stop like any other wait):

- falsy: go on;
- ``True`` or a string: stop the run (``stop_reason="guard"``; the string is the message);
- at the ``"tools"`` checkpoint, ``Refuse({call_id: why})``: those calls are not run (the model
  reads ``why`` as their result), the others are;
- at the ``"output"`` checkpoint, ``Correct(message)``: the answer is not final; ``message``
  goes back to the model, which answers again (bounded like output repairs).

Checkpoints (``on=``): ``"input"`` before the first model request of a run (the new user
message), ``"model"`` before every model request, ``"tools"`` before the tool calls of an
answer run, ``"output"`` on an answer about to become final.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from agentfsm.errors import ConfigurationError
from agentfsm.messages import AssistantMessage, ToolCall
from agentfsm.state import Conversation

__all__ = [
    "CHECKPOINTS",
    "Checkpoint",
    "Correct",
    "Guard",
    "GuardContext",
    "Refuse",
    "guard",
    "loop_breaker",
]

Checkpoint = Literal["input", "model", "tools", "output"]
CHECKPOINTS: tuple[Checkpoint, ...] = ("input", "model", "tools", "output")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@attrs.frozen(kw_only=True)
class GuardContext:
    """What a guard sees.

    Attributes:
        conversation: the conversation as it stands (a value: reading it changes nothing).
        checkpoint: where the guard is checked.
        calls: the tool calls about to run (``"tools"``).
        answer: the answer about to become final (``"output"``).
    """

    conversation: Conversation
    checkpoint: Checkpoint
    calls: tuple[ToolCall, ...] = ()
    answer: AssistantMessage | None = None

    @property
    def user_message(self) -> str:
        """The text of the run's user message (parts' texts joined)."""
        message = self.conversation.messages[self.conversation.run_start]
        content = getattr(message, "content", "")
        if isinstance(content, str):
            return content
        return " ".join(getattr(p, "text", "") for p in content if getattr(p, "type", "") == "text")


@attrs.frozen
class Refuse:
    """A ``"tools"`` guard's verdict: these calls (``{call_id: why}``) are not run."""

    calls: Mapping[str, str]


@attrs.frozen
class Correct:
    """An ``"output"`` guard's verdict: send ``message`` back; the model answers again."""

    message: str


GuardCheck = Callable[[GuardContext], Any]
"""``(context) -> verdict``, sync or async."""


def _check_name(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigurationError(
            f"a guard's name must be 1-64 letters, digits or _.:- characters, got {value!r}"
        )


def _check_on(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if value not in CHECKPOINTS:
        raise ConfigurationError(
            f"a guard's on= must be one of {', '.join(CHECKPOINTS)}, got {value!r}"
        )


def _check_callable(_instance: object, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if not callable(value):
        raise ConfigurationError(f"a guard's check must be callable, got {type(value).__name__}")


@attrs.frozen
class Guard:
    """A check of your own on a run, stopping it (or refusing calls, or correcting an answer)
    when it says so.

    Attributes:
        name: what the stop is recorded as (stored with the conversation, so a resumed chat
            needs no code): 1-64 of ``A-Za-z0-9_.:-``.
        check: ``(GuardContext) -> verdict``, sync or async.
        on: the checkpoint: ``"input"``, ``"model"`` (default), ``"tools"`` or ``"output"``.
        message: the stop's message when the check returns ``True``.

    Example:
        ```python
        banned = Guard("moderation", lambda ctx: "forbidden" in ctx.user_message, on="input")
        agent = AsyncOpenAISimpleAgent(model="gpt-4o-mini", guards=[banned])
        ```
    """

    name: str = attrs.field(validator=_check_name)
    check: GuardCheck = attrs.field(validator=_check_callable)
    on: Checkpoint = attrs.field(default="model", validator=_check_on, kw_only=True)
    message: str | None = attrs.field(default=None, kw_only=True)


def guard(
    *, name: str | None = None, on: Checkpoint = "model", message: str | None = None
) -> Callable[[GuardCheck], Guard]:
    """Decorate a check function into a :class:`Guard` named after it.

    Example:
        ```python
        @guard(on="tools")
        def no_deletes(ctx: GuardContext) -> Refuse | None:
            bad = {c.id: "deleting is not allowed" for c in ctx.calls if c.name == "delete"}
            return Refuse(bad) if bad else None
        ```
    """

    def decorate(check: GuardCheck) -> Guard:
        return Guard(
            name or str(getattr(check, "__name__", "guard")), check, on=on, message=message
        )

    return decorate


def loop_breaker(times: int = 3, *, name: str = "loop_breaker") -> Guard:
    """A ``"tools"`` guard that stops a run once the same tool is called with the same
    arguments ``times`` times in it (the calls about to run included): the loop a small
    model falls into, asking for the same weather four times until ``max_turns``.

    Raises:
        ConfigurationError: ``times`` is not an integer >= 2.
    """
    if isinstance(times, bool) or not isinstance(times, int) or times < 2:
        raise ConfigurationError(f"loop_breaker(times=...) must be an integer >= 2, got {times!r}")

    def repeated(context: GuardContext) -> str | None:
        seen: Counter[tuple[str, str]] = Counter()
        for message in context.conversation.run_messages:
            for call in getattr(message, "tool_calls", ()):
                seen[(call.name, _canonical(call.arguments))] += 1
        for (tool_name, arguments), count in seen.items():
            if count >= times and any(
                (c.name, _canonical(c.arguments)) == (tool_name, arguments) for c in context.calls
            ):
                return (
                    f"{tool_name}({arguments}) was called {count} times in this run with the "
                    "same arguments"
                )
        return None

    return Guard(name, repeated, on="tools")


def _canonical(arguments: str) -> str:
    """Arguments compared by meaning: ``{"a":1,"b":2}`` equals ``{ "b": 2, "a": 1 }``."""
    try:
        return json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"))
    except (ValueError, RecursionError):
        return arguments
