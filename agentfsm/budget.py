"""Cost and budget: the user's pricing, the cost of a request, and the per-chat budget."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Union

import attrs

from agentfsm.errors import ConfigurationError
from agentfsm.usage import Usage

__all__ = ["Budget", "Pricing", "PricingFunction", "PricingLike", "pricing_function", "to_decimal"]

PricingFunction = Callable[[str, "Usage"], Any]
"""``pricing=`` as a callable: ``(model, usage) -> cost`` (a Decimal, int, float or str)."""

_MILLION = Decimal(1_000_000)


def to_decimal(value: Any, what: str) -> Decimal:
    """``value`` as a finite, non-negative ``Decimal`` (floats through their shortest repr).

    Raises:
        ConfigurationError: not a number, negative, or not finite.
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"{what} must be a number, got {value!r}")
    try:
        number = Decimal(str(value)) if isinstance(value, (int, float, str)) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ConfigurationError(f"{what} must be a number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ConfigurationError(f"{what} must be a finite number >= 0, got {value!r}")
    return number


@attrs.frozen(kw_only=True)
class Pricing:
    """Prices in USD per million tokens (the framework ships no price list that goes stale).

    Attributes:
        input_per_million: prompt tokens.
        output_per_million: completion tokens (reasoning tokens are part of them).
        cached_input_per_million: cached prompt tokens; defaults to the input price.
    """

    input_per_million: Decimal
    output_per_million: Decimal
    cached_input_per_million: Decimal | None = None

    @classmethod
    def from_value(cls, value: Pricing | Mapping[str, Any]) -> Pricing:
        """Pricing from the dict form ``{"input_per_million": …, "output_per_million": …}``.

        Raises:
            ConfigurationError: a missing or unknown key, or a bad price.
        """
        if isinstance(value, Pricing):
            return value
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f"pricing must be a dict or a callable (model, usage) -> cost, "
                f"got {type(value).__name__}"
            )
        keys = {"input_per_million", "output_per_million", "cached_input_per_million"}
        unknown = sorted(set(value) - keys)
        missing = sorted({"input_per_million", "output_per_million"} - set(value))
        if unknown or missing:
            raise ConfigurationError(
                f"pricing: unknown keys {unknown}, missing keys {missing}; "
                f"valid keys: {sorted(keys)}"
            )
        cached = value.get("cached_input_per_million")
        return cls(
            input_per_million=to_decimal(value["input_per_million"], "input_per_million"),
            output_per_million=to_decimal(value["output_per_million"], "output_per_million"),
            cached_input_per_million=None
            if cached is None
            else to_decimal(cached, "cached_input_per_million"),
        )

    def cost(self, usage: Usage) -> Decimal:
        """The cost of ``usage`` in USD, in exact decimal arithmetic."""
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_price = (
            self.input_per_million
            if self.cached_input_per_million is None
            else self.cached_input_per_million
        )
        return (
            (usage.prompt_tokens - cached) * self.input_per_million
            + cached * cached_price
            + usage.completion_tokens * self.output_per_million
        ) / _MILLION


PricingLike = Union[Pricing, Mapping[str, Any], PricingFunction]  # noqa: UP007 - runtime alias, 3.10


def pricing_function(value: PricingLike | None) -> Callable[[str, Usage], Decimal] | None:
    """One callable ``(model, usage) -> Decimal`` for any accepted form of ``pricing=``."""
    if value is None:
        return None
    if callable(value) and not isinstance(value, Pricing):
        user = value

        def priced(model: str, usage: Usage) -> Decimal:
            return to_decimal(user(model, usage), f"pricing({model!r}, usage)")

        return priced
    pricing = Pricing.from_value(value)
    return lambda model, usage: pricing.cost(usage)


@attrs.frozen(kw_only=True)
class Budget:
    """A cap on what one chat may spend (its lifetime cost, ``conversation.cost``).

    Attributes:
        max_budget_for_this_chat: USD the chat may spend in all.
        stop_on_budget_exceeded: stop the run (``budget_exceeded``) or only fire the hook.
        reserved_budget: USD kept back: a request is not started if cost + reserve would
            reach the budget.
    """

    max_budget_for_this_chat: Decimal
    stop_on_budget_exceeded: bool = True
    reserved_budget: Decimal = Decimal(0)

    @classmethod
    def from_value(cls, value: Budget | Mapping[str, Any]) -> Budget:
        """A budget from the dict form of ``budget_control=``.

        Raises:
            ConfigurationError: a missing or unknown key, or a bad value.
        """
        if isinstance(value, Budget):
            return value
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"budget_control must be a dict, got {type(value).__name__}")
        keys = {"max_budget_for_this_chat", "stop_on_budget_exceeded", "reserved_budget"}
        unknown = sorted(set(value) - keys)
        if unknown or "max_budget_for_this_chat" not in value:
            raise ConfigurationError(
                f"budget_control needs max_budget_for_this_chat (unknown keys: {unknown}); "
                f"valid keys: {sorted(keys)}"
            )
        stop = value.get("stop_on_budget_exceeded", True)
        if not isinstance(stop, bool):
            raise ConfigurationError("budget_control['stop_on_budget_exceeded'] must be a bool")
        return cls(
            max_budget_for_this_chat=to_decimal(
                value["max_budget_for_this_chat"], "max_budget_for_this_chat"
            ),
            stop_on_budget_exceeded=stop,
            reserved_budget=to_decimal(value.get("reserved_budget", 0), "reserved_budget"),
        )

    def exhausted(self, spent: Decimal) -> bool:
        """True when ``spent`` plus the reserve reaches the budget."""
        return spent + self.reserved_budget >= self.max_budget_for_this_chat
