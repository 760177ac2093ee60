"""The accurate counter against the prompt tokens the OpenAI API reported for small requests.

The requests and figures are hmarr/openai-chat-tokens' (MIT), measured with gpt-3.5-turbo
and kept in ``../shared/reference/token-counts.json`` (its "about" says how). A request
costs what the agent says it costs: its messages' ``count_wire``, its tools' ``count_tools``
(told the first system message's text, which the functions join) and ``reply_overhead``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from agentfsm.context.counting import AccurateCounter, encoding_for_model

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "token-counts.json"
LEGACY = "the legacy `function` role or `function_call` key, which agentfsm never sends"


def load_cases() -> list[dict[str, Any]]:
    """The reference cases, or none when the file is not there (a skip says so)."""
    if not REFERENCE.is_file():
        return []
    cases: list[dict[str, Any]] = json.loads(REFERENCE.read_text(encoding="utf-8"))["cases"]
    return cases


def is_legacy(case: Mapping[str, Any]) -> bool:
    """Whether a case uses message shapes the chat API has deprecated."""
    return any(m["role"] == "function" or "function_call" in m for m in case["messages"])


CASES = load_cases()


@cache
def counter_for(model: str) -> AccurateCounter:
    """One accurate counter per encoding (loading it is the slow part)."""
    return AccurateCounter(encoding_for_model(model))


def first_system_text(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The text of the first system message, which the request's functions join."""
    for message in messages:
        if message["role"] == "system":
            return str(message["content"])
    return None


def prompt_tokens(case: Mapping[str, Any]) -> int:
    """What the counter says the case's request costs."""
    counter = counter_for(case["model"])
    messages = case["messages"]
    return (
        sum(counter.count_wire(m) for m in messages)
        + counter.count_tools(case["tools"], system=first_system_text(messages))
        + counter.reply_overhead
    )


@pytest.mark.skipif(not CASES, reason=f"no reference file at {REFERENCE}")
def test_the_reference_holds_the_expected_cases() -> None:
    """21 cases, of which the 5 legacy ones are the only ones left out."""
    legacy = [case["case"] for case in CASES if is_legacy(case)]
    assert len(CASES) == 21
    assert legacy == [
        "function-role msg {}",
        "function-role msg json",
        "function-role nested",
        "assistant function_call (legacy key)",
        "assistant function_call ws (legacy key)",
    ]


@pytest.mark.skipif(not CASES, reason=f"no reference file at {REFERENCE}")
@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case["case"]) for case in CASES if not is_legacy(case)],
)
def test_prompt_tokens_equal_what_the_api_reported(case: dict[str, Any]) -> None:
    """Messages, tools and the reply's priming cost exactly the API's prompt_tokens."""
    assert prompt_tokens(case) == case["api_prompt_tokens"]
