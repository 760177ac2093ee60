"""Context management: the settings that fit a conversation into the model's window."""

from __future__ import annotations

from typing import Literal

import attrs

from agentfsm.errors import ConfigurationError

__all__ = ["ContextSettings"]

_METHODS = ("accurate", "simple")
_STRATEGIES = ("simple", "summary_dropping")


def _positive(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer or None, got {value!r}")
    return value


def _text(name: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ConfigurationError(f"{name} must be a string or None, got {type(value).__name__}")


@attrs.frozen(kw_only=True)
class ContextSettings:
    """How the ``trimming_context`` phase fits messages into the context window.

    Attributes:
        method: ``"accurate"`` (tiktoken) or ``"simple"`` (character estimate).
        max_context_length: tokens a request may use in all, or ``None`` for no limit.
        max_token_per_message: longer messages are truncated, or ``None``.
        max_messages_in_context: at most this many messages are sent, or ``None``.
        dropping_strategy: ``"simple"`` or ``"summary_dropping"``.
        prompt_when_message_is_dropped: system note added when messages were dropped.
        prompt_when_context_overflow: system note added when the context was cut short.
        keep_function_calls_in_context: send finished runs' tool-call groups on later turns.
    """

    method: Literal["accurate", "simple"] = "accurate"
    max_context_length: int | None = None
    max_token_per_message: int | None = None
    max_messages_in_context: int | None = None
    dropping_strategy: Literal["simple", "summary_dropping"] = "simple"
    prompt_when_message_is_dropped: str | None = None
    prompt_when_context_overflow: str | None = None
    keep_function_calls_in_context: bool = True

    @property
    def trims(self) -> bool:
        """True when a setting can change what is sent (otherwise every message goes as is)."""
        return (
            self.max_context_length is not None
            or self.max_token_per_message is not None
            or self.max_messages_in_context is not None
            or not self.keep_function_calls_in_context
        )

    @classmethod
    def from_keywords(
        cls,
        *,
        context_handling_method: str,
        max_context_length: int | None,
        max_token_per_message: int | None,
        max_messages_in_context: int | None,
        dropping_strategy: str,
        prompt_when_message_is_dropped: str | None,
        prompt_when_context_overflow: str | None,
        keep_function_calls_in_context: bool,
    ) -> ContextSettings:
        """Validated settings from the agent's constructor keywords (case-insensitive names).

        Raises:
            ConfigurationError: a value that cannot work, with the allowed values.
        """
        method = str(context_handling_method).lower()
        if method not in _METHODS:
            raise ConfigurationError(
                f"context_handling_method must be one of {_METHODS}, "
                f"got {context_handling_method!r}"
            )
        strategy = str(dropping_strategy).lower()
        if strategy not in _STRATEGIES:
            raise ConfigurationError(
                f"dropping_strategy must be one of {_STRATEGIES}, got {dropping_strategy!r}"
            )
        if not isinstance(keep_function_calls_in_context, bool):
            raise ConfigurationError("keep_function_calls_in_context must be True or False")
        return cls(
            method=method,  # type: ignore[arg-type]
            max_context_length=_positive("max_context_length", max_context_length),
            max_token_per_message=_positive("max_token_per_message", max_token_per_message),
            max_messages_in_context=_positive("max_messages_in_context", max_messages_in_context),
            dropping_strategy=strategy,  # type: ignore[arg-type]
            prompt_when_message_is_dropped=_text(
                "prompt_when_message_is_dropped", prompt_when_message_is_dropped
            ),
            prompt_when_context_overflow=_text(
                "prompt_when_context_overflow", prompt_when_context_overflow
            ),
            keep_function_calls_in_context=keep_function_calls_in_context,
        )
