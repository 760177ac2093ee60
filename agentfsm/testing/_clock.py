"""A fake clock and sleep, so retry and polling logic is tested without real waiting."""

from __future__ import annotations

import asyncio

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that only moves when something sleeps on it.

    Pass it as both the agent's clock and its sleep::

        clock = FakeClock()
        agent = AsyncOpenAISimpleAgent(..., clock=clock, sleep=clock.sleep)
        ...
        assert clock.sleeps == [1.0, 2.0]      # the backoff delays, in order

    Attributes:
        now: the current time (Unix seconds).
        sleeps: every delay slept, in order.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        """The current time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Record ``seconds``, move the clock by it, and yield to the loop once."""
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)
