"""The retry strategy: which request failures are retried, how often, and how long to wait."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import attrs
import openai

from agentfsm.errors import ConfigurationError

__all__ = ["ErrorClass", "RetryPolicy", "RetryStrategy", "classify"]

ErrorClass = Literal["rate_limit", "server_error", "timeout", "connection_error"]
Backoff = Literal["exponential", "linear", "fixed"]

_CLASSES: tuple[ErrorClass, ...] = ("rate_limit", "server_error", "timeout", "connection_error")
_BACKOFFS: tuple[Backoff, ...] = ("exponential", "linear", "fixed")


def _finite(minimum: float) -> Any:
    """An attrs validator: a finite number of at least ``minimum`` (never NaN or infinite)."""

    def check(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < minimum
        ):
            raise ConfigurationError(
                f"retry_strategy[{attribute.name!r}] must be a number >= {minimum:g} (finite), "
                f"got {value!r}"
            )

    return check


@attrs.frozen
class RetryPolicy:
    """How one class of failures is retried.

    Attributes:
        max_retries: retries after the first attempt (0: never retried).
        backoff: ``"exponential"`` (initial * base^(n-1)), ``"linear"`` (initial * n) or
            ``"fixed"`` (initial).
    """

    max_retries: int
    backoff: Backoff


@attrs.frozen(kw_only=True)
class RetryStrategy:
    """Retries of failed model requests, per class of failure.

    Build it directly or from the dict form (every key optional)::

        RetryStrategy.from_value({
            "rate_limit": {"max_retries": 5, "backoff": "exponential"},
            "server_error": {"max_retries": 3, "backoff": "linear"},
            "timeout": {"max_retries": 2, "backoff": "fixed"},
            "connection_error": {"max_retries": 3, "backoff": "exponential"},
            "backoff_base": 2, "initial_delay": 1, "max_delay": 60, "jitter": True,
        })

    A ``Retry-After`` / ``retry-after-ms`` header of a 429 wins over the computed delay (capped
    by ``max_delay``). Jitter only ever lengthens a delay, by up to a quarter, and never past
    ``max_delay``. Whatever a server sends, a delay is a finite number of seconds in
    ``[0, max_delay]``: a header that is not a number (``nan``, ``soon``) is ignored, one that
    is negative or a past date means no wait, and ``inf`` or a far-future date waits
    ``max_delay``.
    """

    rate_limit: RetryPolicy = RetryPolicy(5, "exponential")
    server_error: RetryPolicy = RetryPolicy(3, "linear")
    timeout: RetryPolicy = RetryPolicy(2, "fixed")
    connection_error: RetryPolicy = RetryPolicy(3, "exponential")
    backoff_base: float = attrs.field(default=2.0, validator=_finite(1))
    initial_delay: float = attrs.field(default=1.0, validator=_finite(0))
    max_delay: float = attrs.field(default=60.0, validator=_finite(0))
    jitter: bool = True

    @classmethod
    def from_value(cls, value: RetryStrategy | Mapping[str, Any] | None) -> RetryStrategy:
        """The strategy of ``retry_strategy=``: ``None`` (defaults), a dict, or a strategy.

        Raises:
            ConfigurationError: an unknown key or a bad value, named.
        """
        if value is None:
            return cls()
        if isinstance(value, RetryStrategy):
            return value
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f"retry_strategy must be a dict or a RetryStrategy, got {type(value).__name__}"
            )
        numbers = ("backoff_base", "initial_delay", "max_delay")
        unknown = sorted(set(value) - {*_CLASSES, *numbers, "jitter"})
        if unknown:
            raise ConfigurationError(
                f"retry_strategy: unknown keys {unknown}; valid keys: "
                f"{[*_CLASSES, *numbers, 'jitter']}"
            )
        changes: dict[str, Any] = {}
        for error_class in _CLASSES:
            if error_class in value:
                changes[error_class] = _policy(
                    error_class, value[error_class], getattr(cls(), error_class)
                )
        for name in numbers:
            if name in value:
                number = _float(value[name])
                if number is None:
                    raise ConfigurationError(
                        f"retry_strategy[{name!r}] must be a number >= "
                        f"{1 if name == 'backoff_base' else 0} (finite), got {value[name]!r}"
                    )
                changes[name] = number  # the fields' validators check the range
        if "jitter" in value:
            if not isinstance(value["jitter"], bool):
                raise ConfigurationError("retry_strategy['jitter'] must be True or False")
            changes["jitter"] = value["jitter"]
        return cls(**changes)

    def policy(self, error_class: ErrorClass) -> RetryPolicy:
        """The policy of one class of failures."""
        policy: RetryPolicy = getattr(self, error_class)
        return policy

    def delay(
        self,
        error_class: ErrorClass,
        retry: int,
        error: BaseException | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first) of ``error_class``.

        Always a finite number in ``[0, max_delay]``, whatever the server's headers say.
        """
        asked = _retry_after(error) if error is not None else None
        base = self._backoff(error_class, retry) if asked is None else asked
        base = _within(base, self.max_delay)
        if self.jitter and base > 0:
            base = min(base * (1 + (rng or random).random() / 4), self.max_delay)
        return base

    def _backoff(self, error_class: ErrorClass, retry: int) -> float:
        backoff = self.policy(error_class).backoff
        if backoff == "fixed" or self.initial_delay == 0:
            return self.initial_delay
        try:
            if backoff == "linear":
                return self.initial_delay * retry
            return self.initial_delay * self.backoff_base ** (retry - 1)
        except OverflowError:  # past the largest float: far beyond any max_delay
            return math.inf


def _within(seconds: float, max_delay: float) -> float:
    """``seconds`` clamped to ``[0, max_delay]``; NaN (never asked for on purpose) is 0."""
    if math.isnan(seconds):
        return 0.0
    return min(max(seconds, 0.0), max_delay)


def _float(value: object) -> float | None:
    """``value`` as a float, or ``None`` if it is not a number (or an int past any float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _policy(name: str, value: Any, default: RetryPolicy) -> RetryPolicy:
    if isinstance(value, RetryPolicy):
        return value
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"retry_strategy[{name!r}] must be a dict with max_retries and/or backoff"
        )
    unknown = sorted(set(value) - {"max_retries", "backoff"})
    if unknown:
        raise ConfigurationError(
            f"retry_strategy[{name!r}]: unknown keys {unknown}; valid: ['backoff', 'max_retries']"
        )
    retries = value.get("max_retries", default.max_retries)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(
            f"retry_strategy[{name!r}]['max_retries'] must be an integer >= 0, got {retries!r}"
        )
    backoff = value.get("backoff", default.backoff)
    if backoff not in _BACKOFFS:
        raise ConfigurationError(
            f"retry_strategy[{name!r}]['backoff'] must be one of {list(_BACKOFFS)}, got {backoff!r}"
        )
    return RetryPolicy(retries, backoff)


def classify(error: BaseException) -> ErrorClass | None:
    """The class of a failed request, or ``None`` when it must not be retried.

    The SDK's timeout error subclasses its connection error, so it is checked first.
    """
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "connection_error"
    if isinstance(error, openai.APIStatusError):
        should = error.response.headers.get("x-should-retry")
        status = error.status_code
        if should == "false":
            return None
        if status == 429:
            return "rate_limit"
        if status == 408:
            return "timeout"
        if status >= 500 or status == 409 or should == "true":
            return "server_error"
    return None


def _retry_after(error: BaseException) -> float | None:
    """Seconds asked for by a ``retry-after-ms`` or ``Retry-After`` header, if any.

    ``None`` when neither header is there or neither says a number of seconds or a date: a
    server's nonsense (``nan``, ``soon``) falls back to the computed backoff. The value is not
    clamped here: negative and infinite values are, by :func:`_within`.
    """
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if not isinstance(value, str):
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    return _seconds_until(value)


def _number(value: object) -> float | None:
    """A header's value as a number, or ``None`` if it is missing, not a number, or NaN."""
    if not isinstance(value, str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def _seconds_until(value: str) -> float | None:
    """Seconds from now until an HTTP date (negative if past), or ``None`` if not a date."""
    try:
        when = parsedate_to_datetime(value)
        return when.timestamp() - time.time()
    # A hostile date can trip the parser in several ways (a day 0, a year 99999, a
    # timestamp the platform cannot represent): all of them mean "not a date we can use".
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
