"""A soak: hundreds of chats on one real SQLite store, with faults, stops, cancels and racing
messages. When the dust settles every chat is finished, valid, holds each answered message
once, and takes one more message."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agentfsm import (
    AgentFSMError,
    AsyncOpenAIStreamingAgent,
    Phase,
    RunInProgressError,
    ToolMessage,
    UserMessage,
    tool,
)
from agentfsm.messages import history_from_openai
from agentfsm.store import ConcurrentUpdateError, SQLiteStore
from agentfsm.testing import RecordedRequest, ScriptedOpenAIServer, call, fault, text, tool_calls

CHATS = 300
SEED = 20261206


ATTEMPTS: Counter[str] = Counter()


def _reply(request: RecordedRequest) -> Any:
    """A reply chosen by a random generator seeded from the request and how often it was
    asked: answers, tool calls, 429s, 5xx, slow answers and streams cut mid-way."""
    messages = request.messages
    key = f"{SEED}:{len(messages)}:{messages[-1].get('content')!r}"
    ATTEMPTS[key] += 1
    rng = random.Random(f"{key}:{ATTEMPTS[key]}")
    last = messages[-1]
    if last.get("role") == "user" and str(last.get("content", "")).startswith("final"):
        return text("final answer")
    roll = rng.random()
    if roll < 0.08:
        return fault.rate_limit(retry_after=0)
    if roll < 0.14:
        return fault.server_error(503)
    if roll < 0.20 and request.body.get("stream"):
        return fault.raw_stream({"choices": [{"index": 0, "delta": {"content": "Partial answ"}}]})
    if roll < 0.28:
        return fault.delay(0.02, text("slow answer"))
    if last.get("role") == "user" and roll < 0.75:
        return tool_calls(
            call("lookup", {"key": f"k{rng.randrange(100)}"}),
            *([call("slow_lookup", {"key": "s"})] if rng.random() < 0.3 else []),
        )
    return text(f"answer {rng.randrange(1000)}")


@tool
async def lookup(key: str) -> str:
    """Looks a key up."""
    await asyncio.sleep(0)
    return f"value of {key}"


@tool
async def slow_lookup(key: str) -> str:
    """Looks a key up, slowly."""
    await asyncio.sleep(0.03)
    return f"slow value of {key}"


async def _drive(agent: Any, chat_id: str, rng: random.Random, sent: Counter[str]) -> None:
    """Two messages to one chat, each maybe stopped, cancelled, or raced by another."""
    for n in range(2):
        message = f"{chat_id} message {n}"
        run = asyncio.ensure_future(agent.send_message(message, chat_id=chat_id, user_id="u"))
        action = rng.random()
        if action < 0.15:
            await asyncio.sleep(rng.random() * 0.03)
            agent.request_stop(chat_id)
        elif action < 0.30:
            await asyncio.sleep(rng.random() * 0.03)
            run.cancel()
        elif action < 0.40:
            racer = f"{chat_id} racer {n}"
            try:
                await agent.send_message(racer, chat_id=chat_id, user_id="u")
                sent[racer] += 1
            except (RunInProgressError, ConcurrentUpdateError):  # the first got there first
                pass
        try:
            await run
            sent[message] += 1
        except asyncio.CancelledError:
            pass  # stored or not, depending on when the cancel came: at most once
        except (RunInProgressError, ConcurrentUpdateError):  # the racer got there first
            pass


async def test_hundreds_of_chats_with_faults_stops_and_cancels_settle_cleanly(
    tmp_path: Path,
) -> None:
    """Every chat ends finished with a valid history, each answered message stored exactly
    once (cancelled ones at most once), and every chat takes one more message."""
    rng = random.Random(SEED)
    sent: Counter[str] = Counter()
    async with ScriptedOpenAIServer(_reply) as server:
        store = SQLiteStore(tmp_path / "soak.db")
        agent = AsyncOpenAIStreamingAgent(
            model="m",
            api_key="k",
            base_url=server.base_url,
            store=store,
            tool_registry=[lookup, slow_lookup],
            retry_strategy={"initial_delay": 0.001, "max_delay": 0.005, "jitter": False},
        )
        async with agent:
            await asyncio.gather(
                *(
                    _drive(agent, f"chat{i}", random.Random(rng.random()), sent)
                    for i in range(CHATS)
                )
            )
            for i in range(CHATS):
                chat_id = f"chat{i}"
                stored = await store.load(chat_id)
                if stored is None:  # every message was cancelled before its run was saved
                    assert not any(t.startswith(f"{chat_id} ") for t in sent), chat_id
                    continue
                assert stored.phase in (Phase.DONE, Phase.STOPPED), (chat_id, stored.phase)
                history_from_openai(agent.response(stored).history)  # valid to send back
                users = Counter(m.content for m in stored.messages if isinstance(m, UserMessage))
                for text_, count in users.items():
                    assert count == 1, (chat_id, text_, count)
                for text_ in (t for t in sent if t.startswith(f"{chat_id} ")):
                    assert users[text_] == 1, (chat_id, text_)
                assert _every_call_answered_once(stored.messages), chat_id
                try:
                    final = await agent.send_message("final", chat_id=chat_id, user_id="u")
                except AgentFSMError as error:  # pragma: no cover - the assertion's message
                    pytest.fail(f"{chat_id} cannot continue: {error}")
                assert final.output == "final answer", chat_id
        await store.aclose()


def _every_call_answered_once(messages: tuple[Any, ...]) -> bool:
    """Every tool call has exactly one result, right after its assistant message."""
    open_calls: set[str] = set()
    for message in messages:
        if isinstance(message, ToolMessage):
            if message.tool_call_id not in open_calls:
                return False
            open_calls.discard(message.tool_call_id)
        else:
            if open_calls:
                return False
            open_calls = {c.id for c in getattr(message, "tool_calls", ())}
    return not open_calls
