"""The exception tree of agentfsm.

Normal endings of a run (a user stop, a budget, max turns, a failed request) are *data*:
``stop_reason`` on a stopped conversation. Exceptions are for bugs and bad input::

    AgentFSMError
    ├── ConfigurationError (ValueError)      an agent or tool defined wrongly, at construction
    │   ├── UnknownHookError                  a hook name that does not exist ("did you mean")
    │   ├── ToolDefinitionError               a tool schema that does not fit its function
    │   ├── UnsupportedTypeError              a Python type with no JSON Schema (or no strict one)
    │   └── MachineDefinitionError            the machine's own tables are malformed (at import)
    ├── InvalidInputError (ValueError)       a bad argument to start / send_message
    │   ├── InvalidHistoryError               a malformed history, with the path of the fault
    │   ├── ChatAccessError                   a stored chat asked for by another user, or
    │   │                                     missing
    │   └── MediaError                        an image, audio clip or file that cannot be sent
    ├── ToolArgumentError                     the model sent arguments a tool cannot take
    │                                         (never raised to the caller: the model reads it)
    ├── SchemaValidationError (ValueError)    JSON that does not fit a type's schema, with a
    │                                         model-readable message per fault
    ├── RunError                              a run cannot go on as asked
    │   ├── ConversationFinishedError         step() on a conversation in done / stopped
    │   ├── RunInProgressError                start() on a conversation that has not finished
    │   ├── ModelRequestError                 a model request failed for good
    │   │                                     (only with ``raise_on_error=True``)
    │   ├── SubAgentError                     an agent run as a tool ended without an answer
    │   │                                     (never raised to the caller: the model reads it)
    │   └── IllegalTransitionError            a move the machine's table does not have
    ├── MalformedReplyError                   a server answered 200 with something that is not
    │                                         a chat completion (the run stops with ``error``)
    ├── HookError                             a hook raised, with ``raise_hook_errors=True``
    ├── SerializationError (ValueError)       a payload dumps/loads cannot read
    └── StoreError                            a store could not do what was asked
        └── ConcurrentUpdateError             another writer saved the chat first
            └── LeaseLostError                another worker took the chat's lease over
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentFSMError",
    "ChatAccessError",
    "ConcurrentUpdateError",
    "ConfigurationError",
    "ConversationFinishedError",
    "HookError",
    "IllegalTransitionError",
    "InvalidHistoryError",
    "InvalidInputError",
    "LeaseLostError",
    "MachineDefinitionError",
    "MalformedReplyError",
    "MediaError",
    "ModelRequestError",
    "RunError",
    "RunInProgressError",
    "SchemaValidationError",
    "SerializationError",
    "StoreError",
    "SubAgentError",
    "ToolArgumentError",
    "ToolDefinitionError",
    "UnknownHookError",
    "UnsupportedTypeError",
]


class AgentFSMError(Exception):
    """Root of every exception agentfsm raises on purpose."""


class ConfigurationError(AgentFSMError, ValueError):
    """An agent was configured with a value it cannot work with."""


class UnknownHookError(ConfigurationError):
    """A hook name that agentfsm does not know.

    Attributes:
        name: the name that was given.
        valid: every hook name agentfsm knows.
    """

    def __init__(self, name: str, valid: tuple[str, ...], suggestion: str | None) -> None:
        hint = f" Did you mean {suggestion!r}?" if suggestion else ""
        super().__init__(f"Unknown hook {name!r}.{hint} Valid hook names: {', '.join(valid)}.")
        self.name = name
        self.valid = valid
        self.suggestion = suggestion


class ToolDefinitionError(ConfigurationError):
    """A tool whose definition cannot work: bad schema, schema/function mismatch, bad name.

    Attributes:
        tool: the tool's name (or the best guess of it).
    """

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(f"Tool {tool!r}: {message}")
        self.tool = tool


class UnsupportedTypeError(ConfigurationError):
    """A Python type that has no JSON Schema, or, asked for OpenAI's strict form, no strict one.

    Attributes:
        type: the type that was asked for.
        reason: what is not supported, and where.
    """

    def __init__(self, tp: Any, reason: str) -> None:
        super().__init__(reason)
        self.type = tp
        self.reason = reason


class MachineDefinitionError(ConfigurationError):
    """The machine's tables are malformed (an unreachable phase, a guard without an edge …).

    Raised at import of ``agentfsm.machine``: a broken table cannot ship.
    """


class InvalidInputError(AgentFSMError, ValueError):
    """An argument passed to ``start`` / ``send_message`` that cannot be used."""


class InvalidHistoryError(InvalidInputError):
    """A history (OpenAI chat-format messages) that is malformed.

    Attributes:
        path: where the fault is, e.g. ``$[3].tool_calls[0].id``.
        reason: what is wrong there.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"Invalid history at {path}: {reason}")
        self.path = path
        self.reason = reason


class ChatAccessError(InvalidInputError):
    """A stored chat that cannot be used as asked: it belongs to another user, or is missing.

    Attributes:
        chat_id: the chat asked for.
    """

    def __init__(self, chat_id: str, message: str) -> None:
        super().__init__(message)
        self.chat_id = chat_id


class MediaError(InvalidInputError):
    """An image, audio clip or file that cannot be sent to a model.

    Attributes:
        path: the file concerned, or None for bytes and URLs.
        reason: what is wrong with it.
    """

    def __init__(self, reason: str, path: str | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path is not None else reason)
        self.path = path
        self.reason = reason


class ToolArgumentError(AgentFSMError):
    """The model called a tool with arguments it cannot take.

    The run does not raise this: its message becomes the tool result the model reads.

    Attributes:
        tool: the tool's name.
    """

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(message)
        self.tool = tool


class SchemaValidationError(AgentFSMError, ValueError):
    """JSON that does not fit a type's schema (a structured answer, a tool's arguments).

    Attributes:
        errors: one message per fault, ``"path: message"`` and written for a model to read and
            fix, e.g. ``"$.days: must be <= 10, got 50"``.
        name: the name of the type's schema (``"Weather"``), if known.
    """

    def __init__(self, errors: tuple[str, ...], name: str | None = None) -> None:
        subject = f"Invalid {name}" if name else "Invalid value"
        super().__init__(f"{subject}: {'; '.join(errors)}")
        self.errors = tuple(errors)
        self.name = name


class RunError(AgentFSMError):
    """A run cannot go on as asked.

    Attributes:
        chat_id: the conversation concerned.
    """

    def __init__(self, chat_id: str, message: str) -> None:
        super().__init__(message)
        self.chat_id = chat_id


class ConversationFinishedError(RunError):
    """``step()`` was called on a conversation that is ``done`` or ``stopped``."""


class RunInProgressError(RunError):
    """A new user message was given to a conversation whose run has not finished."""


class ModelRequestError(RunError):
    """A model request failed for good (retries and fallbacks exhausted, or not retryable).

    Raised by ``send_message(..., raise_on_error=True)``; without it the run ends in
    ``stopped`` with ``stop_reason = error`` and the same facts in ``response.error``.

    Attributes:
        conversation: the conversation, with everything up to the failed request; pass it
            back to ``send_message(..., conversation=...)`` to try again later.
        error: the failure as data (``type``, ``status``, ``message``, ``model``).
        status: the HTTP status, if there was one.
    """

    def __init__(self, conversation: Any, error: Any) -> None:
        status = f"HTTP {error.status}" if error.status is not None else error.type
        super().__init__(
            conversation.chat_id,
            f"model request to {error.model!r} failed ({status}): {error.message}",
        )
        self.conversation = conversation
        self.error = error
        self.status: int | None = error.status


class SubAgentError(RunError):
    """An agent run as a tool (``Agent.as_tool``) ended without an answer: a stop, max turns,
    a budget, a failed request.

    Raised inside the tool call, it becomes the error result the calling model reads.

    Attributes:
        response: the sub-agent's ``AgentResponse`` (its stop reason, error and usage).
    """

    def __init__(self, name: str, response: Any) -> None:
        reason = response.stop_reason.value if response.stop_reason is not None else "unknown"
        detail = f": {response.error.message}" if response.error is not None else ""
        text = response.output_text
        partial = f" Its last text: {text[:500]}" if text else ""
        super().__init__(
            response.chat_id,
            f"sub-agent {name!r} stopped without an answer ({reason}{detail}).{partial}",
        )
        self.response = response


class IllegalTransitionError(RunError):
    """A move the machine's table does not have: ``(phase, outcome)`` has no edge.

    A bug in agentfsm (or in a hand-built conversation), never a normal ending.

    Attributes:
        phase: the phase the conversation was in.
        outcome: the outcome that had no edge from it.
    """

    def __init__(self, chat_id: str, phase: str, outcome: str) -> None:
        super().__init__(
            chat_id,
            f"illegal transition for chat {chat_id!r}: no edge from phase {phase!r} "
            f"on outcome {outcome!r}",
        )
        self.phase = phase
        self.outcome = outcome


class MalformedReplyError(AgentFSMError):
    """The server answered 200 with something that is not a chat completion.

    The run does not raise this: it stops with ``stop_reason = error`` and an ``ErrorInfo``
    of this type saying what was wrong (``choices[0].message is missing``). It is not retried:
    the server answered, and would answer the same again.
    """


class HookError(AgentFSMError):
    """A hook raised and the agent was built with ``raise_hook_errors=True``.

    Attributes:
        hook: the hook name.
    """

    def __init__(self, hook: str, error: BaseException) -> None:
        super().__init__(f"Hook {hook!r} raised {type(error).__name__}: {error}")
        self.hook = hook


class SerializationError(AgentFSMError, ValueError):
    """A serialized conversation that cannot be loaded (malformed, or a newer schema)."""


class StoreError(AgentFSMError):
    """A store could not do what was asked; the root of the store exceptions::

        AgentFSMError
        └── StoreError                 a store could not do what was asked (closed, …)
            └── ConcurrentUpdateError  another writer saved the chat first

    Attributes:
        chat_id: the conversation concerned, when there is one.
    """

    def __init__(self, message: str, chat_id: str | None = None) -> None:
        super().__init__(message)
        self.chat_id = chat_id


class ConcurrentUpdateError(StoreError):
    """Another writer saved the chat first: the compare-and-set lost, nothing was written.

    Load the chat again, redo the work on the stored version, and save from that.

    Attributes:
        chat_id: the conversation concerned.
        expected_version: the version the save expected (``None``: it expected no chat).
        actual_version: the version stored when the save ran (``None``: there was no chat).
    """

    def __init__(self, chat_id: str, expected_version: int | None, actual_version: int | None):
        expected = "no stored chat" if expected_version is None else f"version {expected_version}"
        actual = "no stored chat" if actual_version is None else f"version {actual_version}"
        super().__init__(
            f"chat {chat_id!r} was changed by another writer: the save expected {expected} "
            f"but the store holds {actual}; load it again and retry",
            chat_id,
        )
        self.expected_version = expected_version
        self.actual_version = actual_version


class LeaseLostError(ConcurrentUpdateError):
    """Another worker holds the chat's lease: it took the run over (``recover()`` or
    ``resume()``), so this worker's save was refused and its run stops. Nothing was written.

    Attributes:
        chat_id: the conversation concerned.
        expected_version: the version the save expected.
        actual_version: the version stored when the save ran.
        holder: the worker that holds the lease now.
    """

    def __init__(
        self, chat_id: str, expected_version: int | None, actual_version: int | None, holder: str
    ) -> None:
        StoreError.__init__(
            self,
            f"chat {chat_id!r} is leased to another worker ({holder!r}), which took its run "
            "over; this worker's save was refused and its run stops",
            chat_id,
        )
        self.expected_version = expected_version
        self.actual_version = actual_version
        self.holder = holder
