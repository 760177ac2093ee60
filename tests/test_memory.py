"""Idle conversations share what they hold nothing in, without changing their values."""

from __future__ import annotations

from decimal import Decimal

import attrs

from agentfsm import Conversation, RequestRecord, Usage, dumps, loads
from agentfsm.state import ContextWindow


def _record(cost: str = "0", prompt: int = 300) -> RequestRecord:
    return RequestRecord(
        model="m", usage=Usage(prompt, 10, prompt + 10, requests=1), cost=Decimal(cost)
    )


def test_fresh_conversations_share_their_empty_and_zero_values() -> None:
    a, b = Conversation(chat_id="a"), Conversation(chat_id="b")
    assert a.metadata is b.metadata
    assert a.metadata == {}
    assert dict(a.metadata) == {}
    assert a.usage is b.run_usage
    assert a.usage == Usage()
    assert a.cost is b.run_cost
    assert str(a.cost) == "0"
    window = ContextWindow(selected=(0, 1), truncated={})
    assert window.truncated is ContextWindow(selected=()).truncated
    assert window.truncated == {}
    assert ContextWindow(selected=(0,), truncated={0: 5}).truncated == {0: 5}


def test_counting_requests_shares_totals_and_keeps_exact_values() -> None:
    first = Conversation(chat_id="c").with_request(_record()).with_request(_record(prompt=500))
    assert first.usage is first.run_usage  # one run: run totals are the lifetime totals
    assert first.usage == Usage(800, 20, 820, requests=2)
    assert first.cost is first.run_cost is Conversation(chat_id="d").cost
    assert first.requests[0].usage is not None
    # a second run's totals part from the lifetime ones, and add up as before
    second = attrs.evolve(first, run_usage=Usage(), run_cost=Decimal(0)).with_request(
        _record("0.25")
    )
    assert second.run_usage == Usage(300, 10, 310, requests=1)
    assert second.usage == Usage(1100, 30, 1130, requests=3)
    assert (str(second.cost), str(second.run_cost)) == ("0.25", "0.25")
    # a zero that prints differently is not replaced by the shared one
    third = Conversation(chat_id="e").with_request(_record("0.00"))
    assert str(third.cost) == "0.00"
    assert str(third.run_cost) == "0.00"


def test_usage_sum_with_nothing_is_the_other_operand() -> None:
    used = Usage(5, 6, 11, requests=1)
    assert Usage() + used is used
    assert used + Usage() is used
    estimated = Usage(requests=1, estimated=True)
    assert (Usage() + estimated).estimated
    assert (estimated + used) == Usage(5, 6, 11, requests=2, estimated=True)


def test_shared_values_round_trip_and_compare_as_before() -> None:
    conversation = Conversation(chat_id="c", metadata={}).with_request(_record())
    again = loads(dumps(conversation))
    assert again == conversation
    assert dumps(again) == dumps(conversation)
    assert Conversation(chat_id="x") == Conversation(chat_id="x", metadata={})
