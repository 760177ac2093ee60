"""The ready-made agents: one machine, configured for a kind of model interaction."""

from __future__ import annotations

from agentfsm.agent import Agent

__all__ = ["AsyncOpenAISimpleAgent"]


class AsyncOpenAISimpleAgent(Agent):
    """An agent that sends plain (non-streaming) chat-completions requests.

    Example:
        ```python
        agent = AsyncOpenAISimpleAgent(model="gpt-4o-mini", tool_registry=[get_weather])
        response = await agent.send_message("weather in Tokyo?", user_id="u1")
        print(response.output, response.stop_reason)
        ```

    Every keyword is documented on :class:`~agentfsm.agent.Agent`.
    """
