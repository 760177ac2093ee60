"""``Usage``: the tokens of one or more model requests."""

from __future__ import annotations

import attrs

__all__ = ["Usage"]


@attrs.frozen(weakref_slot=False)
class Usage:
    """Tokens used by one or more model requests.

    Values are immutable, so a sum with nothing in it is the other operand itself (a
    conversation after its first request shares the request's ``Usage``).

    Attributes:
        requests: how many requests the figures cover.
        estimated: at least one figure was estimated (the server reported no usage).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0
    estimated: bool = False

    def __add__(self, other: Usage) -> Usage:
        if other.__class__ is Usage and self.__class__ is Usage:
            if other == _NOTHING:
                return self
            if self == _NOTHING:
                return other
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            requests=self.requests + other.requests,
            estimated=self.estimated or other.estimated,
        )

    def __sub__(self, earlier: Usage) -> Usage:
        """What these totals added since ``earlier`` totals of the same chat (estimated if
        anything was estimated and something was added)."""
        return Usage(
            prompt_tokens=self.prompt_tokens - earlier.prompt_tokens,
            completion_tokens=self.completion_tokens - earlier.completion_tokens,
            total_tokens=self.total_tokens - earlier.total_tokens,
            cached_tokens=self.cached_tokens - earlier.cached_tokens,
            reasoning_tokens=self.reasoning_tokens - earlier.reasoning_tokens,
            requests=self.requests - earlier.requests,
            estimated=self.estimated and self != earlier,
        )


_NOTHING = Usage()
