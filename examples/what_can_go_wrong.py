"""What a caller sees when things go wrong: bad replies, rate limits, failing tools, cut
streams, and bad input.

Offline (default): a scripted server plays a broken, rate-limited, flaky model, with fake
sleeps so nothing waits for real. For real: set OPENAI_API_KEY (and optionally
OPENAI_BASE_URL, MODEL); then one normal question is asked and the two input mistakes are
shown (they fail before anything is sent).

    python examples/what_can_go_wrong.py
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from agentfsm import (
    AsyncOpenAISimpleAgent,
    AsyncOpenAIStreamingAgent,
    ConfigurationError,
    InvalidHistoryError,
    RetryEvent,
    tool,
)


@tool
def read_invoice(number: str) -> str:
    """Reads an invoice.

    Args:
        number: the invoice number.
    """
    raise LookupError(f"no invoice {number!r}")


def on_retry(event: RetryEvent) -> None:
    print(
        f"  on_retry: attempt {event.attempt} failed ({event.error_class}, "
        f"{event.error.type}), next in {event.delay:.1f}s"
    )


async def input_mistakes(options: dict[str, Any]) -> None:
    print("\n5. A keyword another library uses")
    try:
        AsyncOpenAISimpleAgent(tools=[read_invoice], **options)
    except ConfigurationError as error:
        print(f"  ConfigurationError: {str(error).split(' Valid keywords')[0]}")

    print("\n6. A history whose tool result answers no call")
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "tool", "tool_call_id": "call_9", "content": "42"},
    ]
    async with AsyncOpenAISimpleAgent(**options) as agent:
        try:
            await agent.send_message("and now?", history=history)
        except InvalidHistoryError as error:
            print(f"  InvalidHistoryError at {error.path}: {error.reason}")


async def offline() -> None:
    from agentfsm.testing import FakeClock, ScriptedOpenAIServer, call, fault, text, tool_calls

    clock = FakeClock()
    async with ScriptedOpenAIServer() as server:
        options: dict[str, Any] = {
            "model": "scripted-model",
            "api_key": "offline",
            "base_url": server.base_url,
            "clock": clock,
            "sleep": clock.sleep,
            "retry_strategy": {"jitter": False},
            "hooks": {"on_retry": on_retry},
        }
        async with AsyncOpenAISimpleAgent(tool_registry=[read_invoice], **options) as agent:
            print("1. A 200 reply that is not a chat completion")
            server.add(fault.raw({"choices": [{"index": 0, "finish_reason": "stop"}]}))
            response = await agent.send_message("hi")
            assert response.error is not None
            print(f"  stop_reason: {response.stop_reason.value}")
            print(f"  error: {response.error.type}: {response.error.message}")
            server.add(text("Hello again."))
            response = await agent.send_message("hi?", conversation=response.conversation)
            print(f"  the same chat, next message: {response.output!r}")

            print("\n2. A 429, retried")
            server.add(fault.rate_limit(retry_after=2), text("Answered after the wait."))
            response = await agent.send_message("are you busy?")
            print(f"  stop_reason: {response.stop_reason.value}, output: {response.output!r}")
            print(f"  attempts: {response.requests[-1].attempts}")

            print("\n3. A tool that raises")
            server.add(
                tool_calls(call("read_invoice", {"number": "A-17"})),
                text("I could not find invoice A-17."),
            )
            response = await agent.send_message("what is on invoice A-17?")
            result = next(m for m in response.history if m["role"] == "tool")
            print(f"  the tool result the model read: {result['content']!r}")
            print(f"  stop_reason: {response.stop_reason.value}, output: {response.output!r}")

        async with AsyncOpenAIStreamingAgent(**options) as agent:
            print("\n4. A stream cut before its end (no finish_reason, no [DONE])")
            half = {"choices": [{"index": 0, "delta": {"content": "The answer is"}}]}
            server.add(fault.raw_stream(half), text("The answer is 42."))
            response = await agent.send_message("what is the answer?")
            print(f"  stop_reason: {response.stop_reason.value}, output: {response.output!r}")

        await input_mistakes({key: options[key] for key in ("model", "api_key", "base_url")})
    print(f"\nslept (fake): {clock.sleeps}")


async def online() -> None:
    options: dict[str, Any] = {"model": os.environ.get("MODEL", "gpt-4o-mini")}
    async with AsyncOpenAISimpleAgent(hooks={"on_retry": on_retry}, **options) as agent:
        response = await agent.send_message("Say hello in five words.")
        print(f"stop_reason: {response.stop_reason.value}, output: {response.output!r}")
        if response.error is not None:
            error = response.error
            print(f"error: {error.type} ({error.status}): {error.message}")
    await input_mistakes(options)


if __name__ == "__main__":
    asyncio.run(online() if os.environ.get("OPENAI_API_KEY") else offline())
