"""A booking agent whose tools are strict: the server holds the model to their schemas exactly.

The ``book_table`` tool takes a pydantic model with constraints; ``@tool(strict=True)`` sends
it in OpenAI's strict function form (every property required, optional ones nullable, closed
objects). The script shows the schema sent, then a conversation in which the model first asks
for too many guests, reads the error, and books again.

Offline (default): runs against agentfsm's scripted OpenAI-compatible server.
For real: set OPENAI_API_KEY (and optionally OPENAI_BASE_URL, MODEL) and run it again.

    python examples/strict_tools.py
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from agentfsm import AsyncOpenAISimpleAgent, tool


class Booking(BaseModel):
    """A table booking.

    Attributes:
        name: who the table is for.
        guests: how many people come.
        at: when, in ISO 8601 (e.g. 2025-06-01T19:30:00).
        seating: where to sit, if the guest has a preference.
    """

    name: str
    guests: Annotated[int, Field(ge=1, le=8)]
    at: dt.datetime
    seating: Literal["inside", "terrace"] | None = None


@tool(strict=True)
def book_table(booking: Booking, user_id: str | None) -> str:
    """Book a table at the restaurant.

    Args:
        booking: the booking to make.
    """
    where = f", {booking.seating}" if booking.seating else ""
    return f"Booked a table for {booking.guests} at {booking.at:%H:%M}{where} ({user_id})."


@tool(strict=True)
def opening_hours(day: dt.date) -> str:
    """The restaurant's opening hours on a day.

    Args:
        day: the day, in ISO 8601 (e.g. 2025-06-01).
    """
    return "closed" if day.weekday() == 0 else "12:00-23:00"  # closed on Mondays


def _script() -> list[object]:
    from agentfsm.testing import call, text, tool_calls

    booking = {"name": "Ada", "guests": 12, "at": "2025-06-01T19:30:00", "seating": None}
    return [
        tool_calls(call("opening_hours", {"day": "2025-06-01"})),
        tool_calls(call("book_table", {"booking": booking})),  # too many guests
        tool_calls(call("book_table", {"booking": {**booking, "guests": 8}})),
        text("Your table for 8 is booked for 19:30 on June 1st."),
    ]


@contextlib.asynccontextmanager
async def endpoint() -> AsyncIterator[tuple[str | None, str | None, str]]:
    """The real endpoint when OPENAI_API_KEY is set, else a scripted server."""
    if os.environ.get("OPENAI_API_KEY"):
        yield None, None, os.environ.get("MODEL", "gpt-4o-mini")
        return
    from agentfsm.testing import ScriptedOpenAIServer

    async with ScriptedOpenAIServer(_script()) as server:
        yield server.base_url, "offline", "scripted-model"


async def main() -> None:
    print("The schema sent for book_table:")
    print(json.dumps(book_table.to_openai(), indent=2))
    async with endpoint() as (base_url, api_key, model):
        agent = AsyncOpenAISimpleAgent(
            agent_name="Booking Agent",
            model=model,
            api_key=api_key,
            base_url=base_url,
            system_prompt="You book tables. Today is 2025-05-30. Check the opening hours first.",
            tool_registry=[book_table, opening_hours],
            max_turns=6,
        )
        response = await agent.send_message(
            "A table for 12 on June 1st at 19:30 for Ada please, or as many as you can seat.",
            user_id="ada",
            chat_id="booking-1",
        )
        for message in response.history:
            if message["role"] == "tool":
                print(f"  tool result: {message['content']}")
        print(f"\n{response.output}\n(stop_reason={response.stop_reason.value})")


if __name__ == "__main__":
    asyncio.run(main())
