"""The command line that runs a scripted server in its own process, for benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from agentfsm.testing._scenarios import weather
from agentfsm.testing._server import ScriptedOpenAIServer, ScriptFunction

__all__ = ["main"]

_SCENARIOS: dict[str, ScriptFunction] = {"weather": weather}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agentfsm.testing",
        description=(
            "Serve a scripted OpenAI-compatible chat-completions API. Prints "
            "'READY <base_url>' once listening, then serves until SIGTERM or SIGINT."
        ),
    )
    parser.add_argument("--scenario", choices=sorted(_SCENARIOS), default="weather")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--model", default="scripted-model")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        # Windows has no add_signal_handler; there Ctrl+C raises KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    server = ScriptedOpenAIServer(
        _SCENARIOS[args.scenario], model=args.model, host=args.host, port=args.port
    )
    async with server:
        print(f"READY {server.base_url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` by default.

    Returns:
        The exit status.
    """
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
