"""Cost of fitting a growing conversation into the context, with both token counters.

A conversation grows one turn at a time (question, tool call, tool result, answer); after
each turn ``fit()`` runs, as the agent's ``trimming_context`` phase does, so old messages'
counts are cached and only the new turn is tokenized. At 10, 100, 1,000 and 10,000
messages it prints the time of that one ``fit()`` (new turn fresh), of a repeat ``fit()``
(everything cached), and of a cold ``fit()`` on fresh copies of the same messages (what every
turn would cost without the cache). Then the speed of counting fresh messages, simple vs
accurate.

    python benchmarks/context.py [--limit 16000] [--no-limit]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import attrs

_CACHE = Path(__file__).resolve().parents[2] / "shared" / "tiktoken-cache"
if _CACHE.is_dir():  # machines here cannot download tiktoken's encodings
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_CACHE))

from agentfsm.context import ContextSettings  # noqa: E402
from agentfsm.context.counting import AccurateCounter, SimpleCounter, TokenCounter  # noqa: E402
from agentfsm.context.trimming import Fit, fit  # noqa: E402
from agentfsm.messages import (  # noqa: E402
    AssistantMessage,
    Message,
    ToolCall,
    ToolMessage,
    UserMessage,
)

CHECKPOINTS = (10, 100, 1_000, 10_000)
SYSTEM = "You are a research assistant. Answer briefly and cite the documents you used."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the documents.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to find."}},
            },
        },
    }
]
VOCABULARY = ["the", "river", "stone", "cloud", "maple", "orbit", "quartz", "tiger"]
VOCABULARY += ["report", "figure", "table", "value"]


def prose(n: int, seed: int) -> str:
    """n words of varied text, different for every seed (no two texts alike)."""
    words = (VOCABULARY[(seed * 7 + i * 5 + i // 3) % len(VOCABULARY)] for i in range(n))
    return f"#{seed} " + " ".join(words)


def turn(t: int) -> list[Message]:
    """One turn: question, a call, its result (~300 tokens), the answer."""
    call = ToolCall(f"call_{t}", "search", f'{{"query": "topic {t}"}}')
    return [
        UserMessage(f"Question: {prose(30, t)}"),
        AssistantMessage(tool_calls=(call,)),
        ToolMessage(call.id, prose(300, -t), tool_name="search"),
        AssistantMessage(f"Answer: {prose(60, t)}"),
    ]


def timed(action: Callable[[], object], repeat: int = 1) -> float:
    """Median seconds of ``action``."""
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs)


def fit_all(
    messages: list[Message], newest: int, settings: ContextSettings, counter: TokenCounter
) -> Fit:
    """fit() as the agent calls it."""
    return fit(
        messages,
        newest_user=newest,
        system_prompt=SYSTEM,
        summary=None,
        tools=TOOLS,
        settings=settings,
        counter=counter,
    )


def measure(
    messages: list[Message],
    newest: int,
    settings: ContextSettings,
    counter: TokenCounter,
    counter_factory: Callable[[], TokenCounter],
) -> tuple[float, float, float]:
    """Median seconds of fit() with the newest message fresh, all cached, nothing cached."""
    fresh = []
    for _ in range(5):
        messages[-1] = attrs.evolve(messages[-1])  # a new object: not counted yet
        fresh.append(timed(lambda: fit_all(messages, newest, settings, counter)))
    warm = timed(lambda: fit_all(messages, newest, settings, counter), repeat=5)
    cold = []
    for _ in range(3):
        copies = [attrs.evolve(m) for m in messages]
        cold_counter = counter_factory()
        cold.append(timed(lambda: fit_all(copies, newest, settings, cold_counter)))  # noqa: B023
    return statistics.median(fresh), warm, statistics.median(cold)


def growing(counter_factory: Callable[[], TokenCounter], settings: ContextSettings) -> None:
    """Grow a conversation turn by turn, fitting as the agent does; print the checkpoints.

    Each turn: the question arrives and fit() runs; the call and its result arrive and
    fit() runs again; the answer arrives. At a checkpoint the first of these fit() calls is
    timed (the question fresh, the rest cached), then repeated (all cached), then run on
    fresh copies of every message with a fresh counter (nothing cached).
    """
    counter = counter_factory()
    messages: list[Message] = []
    pending = list(CHECKPOINTS)
    t = 0
    while pending:
        question, call, result, answer = turn(t)
        t += 1
        newest = len(messages)
        messages.append(question)
        if len(messages) >= pending[0]:
            pending.pop(0)
            fresh, warm, cold = measure(messages, newest, settings, counter, counter_factory)
            sent = len(fit_all(messages, newest, settings, counter).selected)
            print(
                f"  {counter.name:<22} {len(messages):>7,} {sent:>6,} "
                f"{fresh * 1e3:>10.3f} {warm * 1e3:>10.3f} {cold * 1e3:>10.2f}"
            )
        else:
            fit_all(messages, newest, settings, counter)
        messages.extend((call, result))
        fit_all(messages, newest, settings, counter)
        messages.append(answer)


def counting_speed() -> None:
    """Count fresh messages with both counters; print the throughput and the ratio."""
    messages = [m for t in range(500) for m in turn(t)]
    results = {}
    for counter in (SimpleCounter(), AccurateCounter()):
        copies = [attrs.evolve(m) for m in messages]
        count = counter.count_message
        began = time.perf_counter()
        for message in copies:
            count(message)
        seconds = time.perf_counter() - began
        tokens = sum(counter.count_message(m) for m in copies)
        results[counter.name] = seconds
        print(
            f"  {counter.name:<22} {len(messages):,} messages, {tokens:,} tokens: "
            f"{seconds * 1e3:8.2f} ms ({seconds / len(messages) * 1e6:6.2f} µs/message)"
        )
    ratio = results["accurate:o200k_base"] / results["simple"]
    print(f"  simple is {ratio:.0f}x faster than accurate on fresh messages")
    texts = [f"{n} {m.content}" for n, m in enumerate(messages) if isinstance(m.content, str)]
    bare: dict[str, float] = {}
    for counter in (SimpleCounter(), AccurateCounter()):
        count_text = counter.count_text
        began = time.perf_counter()
        for one in texts:
            count_text(one)
        bare[counter.name] = time.perf_counter() - began
    ratio = bare["accurate:o200k_base"] / bare["simple"]
    print(
        f"  their {len(texts):,} texts alone: simple {bare['simple'] * 1e3:.2f} ms, "
        f"accurate {bare['accurate:o200k_base'] * 1e3:.2f} ms: simple is {ratio:.0f}x faster"
    )


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=16_000, help="max_context_length")
    parser.add_argument(
        "--no-limit", action="store_true", help="also run without any limit (all messages sent)"
    )
    args = parser.parse_args()
    configurations = [
        (f"max_context_length={args.limit:,}", ContextSettings(max_context_length=args.limit))
    ]
    if args.no_limit:
        configurations.append(("no limits (everything is sent)", ContextSettings()))
    for title, settings in configurations:
        print(f"fit() per turn, {title}; times in ms")
        print(
            f"  {'counter':<22} {'messages':>7} {'sent':>6} "
            f"{'new turn':>10} {'repeat':>10} {'uncached':>10}"
        )
        for factory in (SimpleCounter, AccurateCounter):
            growing(factory, settings)
        print()
    print("counting fresh messages")
    counting_speed()


if __name__ == "__main__":
    main()
