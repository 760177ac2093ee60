"""A 200-turn chat that stays inside a small context window with summary_dropping.

Offline (default): a scripted model answers and writes the summaries, and the script prints
what was dropped and summarized along the way. For real: set OPENAI_API_KEY (and optionally
OPENAI_BASE_URL, MODEL, SUMMARY_MODEL, TURNS) and run it again.

    python examples/long_conversation.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from typing import Any

from agentfsm import AsyncOpenAISimpleAgent, ContextOverflowEvent, MessageDroppedEvent

TURNS = int(os.environ.get("TURNS", "200" if not os.environ.get("OPENAI_API_KEY") else "12"))
drops: list[int] = []


def on_dropped(event: MessageDroppedEvent) -> None:
    drops.append(len(event.messages))
    if event.turn == 0 and (len(drops) <= 3 or len(drops) % 50 == 0):
        summary = (event.summary or "")[:90]
        print(
            f"  dropped {len(event.messages)} message(s), {event.tokens} tokens -> "
            f"summary now: {summary!r}"
        )


def on_overflow(event: ContextOverflowEvent) -> None:
    print(f"  cut to fit: {event.tokens_needed} tokens against {event.limit}: {event.truncated}")


@contextlib.asynccontextmanager
async def endpoint() -> AsyncIterator[dict[str, Any]]:
    if os.environ.get("OPENAI_API_KEY"):
        yield {
            "model": os.environ.get("MODEL", "gpt-4o-mini"),
            "summary_model": os.environ.get("SUMMARY_MODEL"),
        }
        return
    from agentfsm.testing import RecordedRequest, Reply, ScriptedOpenAIServer, text

    def scripted(request: RecordedRequest) -> Reply:
        last = request.messages[-1]["content"]
        if request.model == "summarizer":  # fold the dropped facts into one line
            facts = sorted({int(n) for n in re.findall(r"#(\d+)", last)})
            return text(f"The user shared facts #{facts[0]} to #{facts[-1]}; all acknowledged.")
        number = re.findall(r"fact #(\d+)", last)
        return text(f"Noted fact #{number[0] if number else '?'}.")

    async with ScriptedOpenAIServer(scripted) as server:
        yield {
            "model": "scripted-model",
            "summary_model": "summarizer",
            "base_url": server.base_url,
            "api_key": "offline",
        }


async def main() -> None:
    async with endpoint() as options:
        agent = AsyncOpenAISimpleAgent(
            system_prompt="You are a note taker. Acknowledge each fact in one short sentence.",
            max_context_length=1_500,
            max_messages_in_context=12,
            dropping_strategy="summary_dropping",
            prompt_when_message_is_dropped="Older messages were summarized above.",
            hooks={"on_message_dropped": on_dropped, "on_context_overflow": on_overflow},
            **options,
        )
        response = None
        for turn in range(1, TURNS + 1):
            message = f"Remember fact #{turn}: the sky on day {turn} was shade {turn * 7 % 100}."
            conversation = response.conversation if response else None
            response = await agent.send_message(message, user_id="u1", conversation=conversation)
        assert response is not None
        conv = response.conversation
        window = conv.context
        print(f"\n{TURNS} turns: {len(conv.messages)} messages kept in the conversation,")
        print(
            f"  {window.dropped if window else 0} left out of the last request "
            f"({window.tokens if window else '?'} tokens sent, limit 1,500)"
        )
        print(f"  {sum(drops)} messages dropped over the chat, in {len(drops)} steps")
        print(f"  summary: {conv.summary!r}")
        print(f"  last answer: {response.output!r}")
        await agent.aclose()


if __name__ == "__main__":
    asyncio.run(main())
