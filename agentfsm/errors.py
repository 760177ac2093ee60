"""The exception tree of agentfsm.

Normal endings of a run (a user stop, a budget, max turns, a failed request) are *data*:
``stop_reason`` on a stopped conversation. Exceptions are for bugs and bad input::

    AgentFSMError
    ├── ConfigurationError (ValueError)      an agent or tool defined wrongly, at construction
    │   ├── UnknownHookError                  a hook name that does not exist ("did you mean")
    │   └── ToolDefinitionError               a tool schema that does not fit its function
    ├── InvalidInputError (ValueError)       a bad argument to start / send_message
    │   ├── InvalidHistoryError               a malformed history, with the path of the fault
    │   └── ChatAccessError                   a stored chat asked for by another user, or
    │                                         missing
    ├── ToolArgumentError                     the model sent arguments a tool cannot take
    │                                         (never raised to the caller: the model reads it)
    ├── RunError                              a run cannot go on as asked
    │   ├── ConversationFinishedError         step() on a conversation in done / stopped
    │   ├── RunInProgressError                start() on a conversation that has not finished
    │   └── ModelRequestError                 a model request failed for good
    │                                         (only with ``raise_on_error=True``)
    ├── HookError                             a hook raised, with ``raise_hook_errors=True``
    └── SerializationError (ValueError)       a payload dumps/loads cannot read
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentFSMError",
    "ChatAccessError",
    "ConfigurationError",
    "ConversationFinishedError",
    "HookError",
    "InvalidHistoryError",
    "InvalidInputError",
    "ModelRequestError",
    "RunError",
    "RunInProgressError",
    "SerializationError",
    "ToolArgumentError",
    "ToolDefinitionError",
    "UnknownHookError",
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


class ToolArgumentError(AgentFSMError):
    """The model called a tool with arguments it cannot take.

    The run does not raise this: its message becomes the tool result the model reads.

    Attributes:
        tool: the tool's name.
    """

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(message)
        self.tool = tool


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
