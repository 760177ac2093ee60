"""The ``agentfsm`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agentfsm`` console script; returns the exit status."""
    from agentfsm import __version__

    parser = argparse.ArgumentParser(
        prog="agentfsm", description="LLM agents as explicit state machines."
    )
    parser.add_argument("--version", action="version", version=f"agentfsm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "demo", help="run the weather agent offline against the built-in scripted server"
    )
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "demo":
            asyncio.run(_demo())
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"agentfsm: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


async def _demo() -> None:
    try:
        from agentfsm.testing import ScriptedOpenAIServer, weather_scenario
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the demo needs the testing extra: pip install 'agentfsm[testing]'"
        ) from error
    from agentfsm import AsyncOpenAISimpleAgent, ToolContext, tool

    @tool
    async def get_weather(city: str, context: ToolContext) -> str:
        """Current weather for a city.

        Args:
            city: the city name, e.g. "Tokyo".
        """
        return f"Sunny, 22 °C in {city} (asked by {context.user_id})"

    async with ScriptedOpenAIServer(weather_scenario) as server:
        agent = AsyncOpenAISimpleAgent(
            agent_name="Weather Agent",
            model="scripted-model",
            api_key="not-needed-offline",
            base_url=server.base_url,
            system_prompt="You are a helpful assistant.",
            tool_registry=[get_weather],
            context_handling_method="simple",  # offline: no tokenizer download
        )
        print(f"agentfsm demo: {agent!r}\n  scripted server at {server.base_url}\n")
        response = await agent.send_message(
            "what is the weather in tokyo", user_id="u1", chat_id="demo", debug_print=True
        )
        print()
        print(f"output:      {response.output}")
        print(f"stop_reason: {response.stop_reason.value}")
        print(f"turns:       {response.turns}")
        print(
            f"usage:       {response.usage.total_tokens} tokens in "
            f"{response.usage.requests} requests"
        )
        print(
            "path:        "
            + " → ".join(
                ["trimming_context"] + [r.to_phase.value for r in response.conversation.transitions]
            )
        )


if __name__ == "__main__":
    sys.exit(main())
