"""Shared fixtures: the tiktoken cache, a scripted server, and an agent factory bound to it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agentfsm import AsyncOpenAISimpleAgent
from agentfsm.agent import Agent
from agentfsm.testing import ScriptedOpenAIServer

_CACHE = Path(__file__).resolve().parents[2] / "shared" / "tiktoken-cache"
if _CACHE.is_dir():  # machines here cannot download tiktoken's encodings
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_CACHE))


@pytest.fixture
async def server() -> AsyncIterator[ScriptedOpenAIServer]:
    """A scripted server with an empty script; tests add replies with ``server.add``."""
    async with ScriptedOpenAIServer([]) as srv:
        yield srv


AgentFactory = Callable[..., Any]


@pytest.fixture
async def make_agent(server: ScriptedOpenAIServer) -> AsyncIterator[AgentFactory]:
    """Builds agents (``agent_class``, the simple one by default) pointed at the ``server``
    fixture; keywords override the defaults.

    Every agent made is closed after the test.
    """
    made: list[Agent] = []

    def make(agent_class: type[Agent] = AsyncOpenAISimpleAgent, **kwargs: Any) -> Any:
        options: dict[str, Any] = {
            "model": "scripted-model",
            "api_key": "test-key",
            "base_url": server.base_url,
        }
        options.update(kwargs)
        agent = agent_class(**options)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.aclose()
