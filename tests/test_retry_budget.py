"""Resilient model calls: retries, timeouts, fallbacks, usage, cost and the budget guard."""

from __future__ import annotations

import asyncio
import math
import random
import socket
from datetime import timezone
from decimal import Decimal
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfsm import (
    AsyncOpenAISimpleAgent,
    ConfigurationError,
    ModelRequestError,
    Phase,
    RetryStrategy,
    StopReason,
    Usage,
    tool,
)
from agentfsm.testing import FakeClock, ScriptedOpenAIServer, call, fault, text, tool_calls

from .conftest import AgentFactory

NO_JITTER = {"jitter": False}


@tool
def lookup(q: str) -> str:
    """Looks something up."""
    return f"found {q}"


def _fake(make_agent: AgentFactory, **kwargs: Any) -> tuple[AsyncOpenAISimpleAgent, FakeClock]:
    clock = FakeClock()
    options: dict[str, Any] = {"clock": clock, "sleep": clock.sleep, "retry_strategy": NO_JITTER}
    options.update(kwargs)
    return make_agent(**options), clock


async def test_429_with_retry_after_waits_what_the_server_asks(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A Retry-After header wins over the computed backoff; retry-after-ms too."""
    server.add(fault.rate_limit(retry_after=7), fault.rate_limit(retry_after_ms=1500), text("ok"))
    retries: list[Any] = []
    agent, clock = _fake(make_agent, hooks={"on_retry": retries.append})
    response = await agent.send_message("hi")

    assert response.output == "ok"
    assert clock.sleeps == [7.0, 1.5]
    assert [(r.attempt, r.error_class, r.error.status, r.delay) for r in retries] == [
        (1, "rate_limit", 429, 7.0),
        (2, "rate_limit", 429, 1.5),
    ]
    assert response.requests[0].attempts == 3
    assert len(server.requests) == 3


async def test_429_without_header_backs_off_exponentially(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Without a header, rate limits wait initial_delay * base^(n-1)."""
    server.add(fault.rate_limit(), fault.rate_limit(), fault.rate_limit(), text("ok"))
    agent, clock = _fake(
        make_agent, retry_strategy={"jitter": False, "initial_delay": 0.5, "backoff_base": 3}
    )
    assert (await agent.send_message("hi")).output == "ok"
    assert clock.sleeps == [0.5, 1.5, 4.5]


async def test_500_then_success_retries_linearly(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Server errors are retried with linear backoff and the run succeeds."""
    server.add(fault.server_error(500), fault.server_error(503), text("back"))
    agent, clock = _fake(make_agent)
    response = await agent.send_message("hi")
    assert (response.output, response.stop_reason) == ("back", StopReason.RESPONSE)
    assert clock.sleeps == [1.0, 2.0]


async def test_timeouts_are_retried_then_end_the_run(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A server that never answers: request_timeout per attempt, fixed backoff, then error."""
    server.add(fault.hang(), fault.hang(), fault.hang())
    agent, clock = _fake(
        make_agent,
        request_timeout=0.1,
        retry_strategy={"timeout": {"max_retries": 2, "backoff": "fixed"}, "jitter": False},
    )
    response = await agent.send_message("hi")
    assert response.stop_reason is StopReason.ERROR
    assert response.error is not None
    assert response.error.type == "APITimeoutError"
    assert clock.sleeps == [1.0, 1.0]
    assert len(server.requests) == 3


async def test_connection_refused_is_retried_as_a_connection_error(
    make_agent: AgentFactory,
) -> None:
    """Nothing listening: connection errors retried (exponential), then stopped with error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent, clock = _fake(make_agent, base_url=f"http://127.0.0.1:{port}/v1")
    response = await agent.send_message("hi")
    assert response.stop_reason is StopReason.ERROR
    assert response.error is not None
    assert response.error.type == "APIConnectionError"
    assert clock.sleeps == [1.0, 2.0, 4.0]


async def test_exhausted_retries_keep_the_conversation_and_can_be_retried_later(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """After the last retry the run is stopped/error with everything up to the request."""
    server.add(
        tool_calls(call("lookup", {"q": "x"})),
        *[fault.server_error(502)] * 4,
        text("finally"),
    )
    agent, clock = _fake(make_agent, tool_registry=[lookup])
    response = await agent.send_message("go")

    assert response.stop_reason is StopReason.ERROR
    assert response.error is not None
    assert (response.error.status, response.error.model) == (502, "scripted-model")
    assert [m["role"] for m in response.history] == ["user", "assistant", "tool"]
    assert response.conversation.phase is Phase.STOPPED
    assert clock.sleeps == [1.0, 2.0, 3.0]

    again = await agent.send_message("try again", conversation=response.conversation)
    assert again.output == "finally"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(
    server: ScriptedOpenAIServer, make_agent: AgentFactory, status: int
) -> None:
    """4xx errors end the run at once, exactly like exhausted retries."""
    server.add(fault.status(status, "you did something wrong"))
    agent, clock = _fake(make_agent)
    response = await agent.send_message("hi")
    assert response.stop_reason is StopReason.ERROR
    assert response.error is not None
    assert (response.error.status, response.error.message) == (status, "you did something wrong")
    assert clock.sleeps == []
    assert len(server.requests) == 1


async def test_raise_on_error_raises_a_typed_error_with_the_conversation(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """raise_on_error=True raises ModelRequestError naming the status and server message."""
    server.add(fault.status(400, "context too long"))
    agent, _ = _fake(make_agent)
    with pytest.raises(ModelRequestError) as info:
        await agent.send_message("hi", chat_id="c1", raise_on_error=True)
    assert "HTTP 400" in str(info.value)
    assert "context too long" in str(info.value)
    assert info.value.status == 400
    assert info.value.chat_id == "c1"
    assert info.value.conversation.stop_reason is StopReason.ERROR
    assert info.value.conversation.messages[-1].content == "hi"


async def test_a_stop_during_backoff_stops_at_once(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """The backoff sleep is cancellable: a stop during a 60 s wait ends the run now."""
    server.add(fault.rate_limit(retry_after=60))
    agent = make_agent(hooks={"on_retry": lambda e: agent.request_stop(e.chat_id)})
    response = await asyncio.wait_for(agent.send_message("hi", chat_id="c1"), timeout=10)
    assert response.stop_reason is StopReason.USER_STOP
    assert len(server.requests) == 1


async def test_sdk_retries_are_disabled(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """With our retries set to zero, a 500 reaches the server exactly once (no SDK retry)."""
    server.add(fault.server_error(500), text("never"))
    agent, _ = _fake(make_agent, retry_strategy={"server_error": {"max_retries": 0}})
    response = await agent.send_message("hi")
    assert response.stop_reason is StopReason.ERROR
    assert len(server.requests) == 1


def test_jitter_never_shortens_a_delay_and_never_passes_max_delay() -> None:
    """With jitter, delays lie between the computed (or asked) delay and max_delay."""
    import random

    strategy = RetryStrategy.from_value({"max_delay": 10})
    asked = SimpleNamespace(response=SimpleNamespace(headers={"retry-after": "4"}))
    huge = SimpleNamespace(response=SimpleNamespace(headers={"retry-after": "999"}))
    rng = random.Random(7)
    for _ in range(200):
        assert 4 <= strategy.delay("rate_limit", 1, asked, rng) <= 10
        assert strategy.delay("rate_limit", 1, huge, rng) == 10
        assert 1 <= strategy.delay("server_error", 1, None, rng) <= 1.25


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"rate_limits": {}}, "unknown keys ['rate_limits']"),
        ({"timeout": {"backoff": "random"}}, "must be one of ['exponential', 'linear', 'fixed']"),
        ({"server_error": {"max_retries": -1}}, "max_retries'] must be an integer >= 0"),
        ({"max_delay": "soon"}, "must be a number >= 0"),
        ({"jitter": "yes"}, "must be True or False"),
        ("fast", "must be a dict or a RetryStrategy"),
    ],
)
def test_bad_retry_strategies_are_refused(value: Any, message: str) -> None:
    """Unknown keys and bad values in retry_strategy are named."""
    with pytest.raises(ConfigurationError) as info:
        AsyncOpenAISimpleAgent(model="m", api_key="k", retry_strategy=value)
    assert message in str(info.value)


def test_budget_without_pricing_is_refused() -> None:
    """A budget needs prices to count against."""
    with pytest.raises(ConfigurationError, match="budget_control needs pricing"):
        AsyncOpenAISimpleAgent(
            model="m", api_key="k", budget_control={"max_budget_for_this_chat": 1}
        )


@pytest.mark.parametrize(
    ("pricing", "message"),
    [
        ({"input_per_million": 1}, "missing keys ['output_per_million']"),
        ({"input_per_million": 1, "output_per_million": -2}, "finite number >= 0"),
        ({"input_per_million": 1, "output_per_million": 2, "extra": 1}, "unknown keys ['extra']"),
    ],
)
def test_bad_pricing_is_refused(pricing: Any, message: str) -> None:
    """Pricing is validated at construction."""
    with pytest.raises(ConfigurationError) as info:
        AsyncOpenAISimpleAgent(model="m", api_key="k", pricing=pricing)
    assert message in str(info.value)


USAGE = {
    "prompt_tokens": 1234,
    "completion_tokens": 567,
    "prompt_tokens_details": {"cached_tokens": 200},
    "completion_tokens_details": {"reasoning_tokens": 100},
}
PRICES = {"input_per_million": 0.15, "output_per_million": 0.60, "cached_input_per_million": 0.075}
# (1034 * 0.15 + 200 * 0.075 + 567 * 0.60) / 1e6 = (155.1 + 15 + 340.2) / 1e6:
ONE_REQUEST = Decimal("0.0005103")


async def test_cost_is_exact_over_many_requests(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """Usage (cached, reasoning) is recorded per request; cost is exact decimal arithmetic."""
    server.add(
        *[tool_calls(call("lookup", {"q": str(i)}), usage=USAGE) for i in range(29)],
        text("done", usage=USAGE),
    )
    agent = make_agent(tool_registry=[lookup], max_turns=30, pricing=PRICES)
    response = await agent.send_message("go")

    assert response.stop_reason is StopReason.RESPONSE
    assert response.usage == Usage(
        prompt_tokens=1234 * 30,
        completion_tokens=567 * 30,
        total_tokens=1801 * 30,
        cached_tokens=200 * 30,
        reasoning_tokens=100 * 30,
        requests=30,
    )
    assert [r.cost for r in response.requests] == [ONE_REQUEST] * 30
    assert response.cost == ONE_REQUEST * 30 == Decimal("0.015309")
    assert response.conversation.cost == response.cost

    server.add(text("more", usage=USAGE))
    second = await agent.send_message("again", conversation=response.conversation)
    assert second.cost == ONE_REQUEST
    assert second.conversation.cost == ONE_REQUEST * 31


async def test_pricing_may_be_a_callable(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """pricing=(model, usage) -> cost is called per request."""
    seen: list[tuple[str, int]] = []

    def price(model: str, usage: Usage) -> str:
        seen.append((model, usage.total_tokens))
        return "0.25"

    server.add(text("a", usage={"prompt_tokens": 3, "completion_tokens": 4}))
    response = await make_agent(pricing=price).send_message("hi")
    assert response.cost == Decimal("0.25")
    assert seen == [("scripted-model", 7)]


async def test_budget_stops_exactly_before_the_request_that_would_exceed_it(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """With a reserve of one request's cost, the run stops before spending past the budget."""
    server.add(*[tool_calls(call("lookup", {"q": str(i)}), usage=USAGE) for i in range(10)])
    exceeded: list[Any] = []
    agent = make_agent(
        tool_registry=[lookup],
        pricing=PRICES,
        budget_control={
            "max_budget_for_this_chat": ONE_REQUEST * Decimal("3.5"),
            "reserved_budget": ONE_REQUEST,
        },
        hooks={"on_budget_exceeded": exceeded.append},
    )
    response = await agent.send_message("go")

    assert response.stop_reason is StopReason.BUDGET_EXCEEDED
    assert len(server.requests) == 3
    assert response.cost == ONE_REQUEST * 3
    assert [(e.spent, e.reserve, e.stopped) for e in exceeded] == [
        (ONE_REQUEST * 3, ONE_REQUEST, True)
    ]
    assert [m["role"] for m in response.history][-2:] == ["assistant", "tool"]


async def test_a_non_binding_budget_only_fires_the_hook(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """stop_on_budget_exceeded=False: the hook fires and the run goes on."""
    server.add(tool_calls(call("lookup", {"q": "a"}), usage=USAGE), text("done", usage=USAGE))
    exceeded: list[Any] = []
    agent = make_agent(
        tool_registry=[lookup],
        pricing=PRICES,
        budget_control={"max_budget_for_this_chat": "0.0001", "stop_on_budget_exceeded": False},
        hooks={"on_budget_exceeded": exceeded.append},
    )
    response = await agent.send_message("go")
    assert response.stop_reason is StopReason.RESPONSE
    assert [e.stopped for e in exceeded] == [False]


async def test_a_per_call_budget_overrides_the_agents(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """send_message(budget_control=...) replaces the agent's budget for that call only."""
    server.add(text("one", usage=USAGE), text("two", usage=USAGE))
    agent = make_agent(pricing=PRICES, budget_control={"max_budget_for_this_chat": 100})
    first = await agent.send_message("a")
    blocked = await agent.send_message(
        "b", conversation=first.conversation, budget_control={"max_budget_for_this_chat": "0"}
    )
    assert blocked.stop_reason is StopReason.BUDGET_EXCEEDED
    assert len(server.requests) == 1
    third = await agent.send_message("c", conversation=blocked.conversation)
    assert third.output == "two"


async def test_fallback_model_answers_when_the_primary_fails_for_good(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """A primary that fails (404 model not found) hands the same request to the next model."""
    async with ScriptedOpenAIServer([text("from backup", usage=USAGE)], model="backup") as other:
        server.add(fault.status(404, "The model `gpt-x` does not exist"))
        fallbacks: list[Any] = []
        agent = make_agent(
            pricing=PRICES,
            fallback_models=[
                {
                    "model": "backup",
                    "base_url": other.base_url,
                    "api_key": "other-key",
                    "pricing": {"input_per_million": 1, "output_per_million": 2},
                }
            ],
            hooks={"on_fallback": fallbacks.append},
        )
        response = await agent.send_message("hi")

    assert response.output == "from backup"
    assert [(f.from_model, f.to_model, f.error.status) for f in fallbacks] == [
        ("scripted-model", "backup", 404)
    ]
    assert response.requests[0].model == "backup"
    assert response.conversation.messages[-1].model == "backup"  # type: ignore[union-attr]
    assert response.cost == (Decimal(1234) * 1 + Decimal(567) * 2) / 1_000_000
    assert other.requests[0].messages == server.requests[0].messages
    assert other.requests[0].headers["authorization"] == "Bearer other-key"


async def test_all_models_failing_stops_with_the_last_error(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """When every model fails, the run stops with the last model's error."""
    async with ScriptedOpenAIServer([fault.status(401, "bad key")]) as other:
        server.add(fault.status(404, "no such model"))
        agent = make_agent(fallback_models=[{"model": "backup", "base_url": other.base_url}])
        response = await agent.send_message("hi")
    assert response.error is not None
    assert (response.error.model, response.error.status) == ("backup", 401)


# --------------------------------------------------------------------------- hostile Retry-After

PAST = "Wed, 21 Oct 2015 07:28:00 GMT"
FAR_FUTURE = "Fri, 31 Dec 9999 23:59:59 GMT"


@pytest.mark.parametrize(
    ("headers", "waited"),
    [
        ({"Retry-After": "nan"}, 1.0),  # not a number: the computed backoff
        ({"Retry-After": "NaN"}, 1.0),
        ({"Retry-After": "inf"}, 60.0),  # forever: capped at max_delay
        ({"Retry-After": "1e999"}, 60.0),
        ({"Retry-After": "-inf"}, 0.0),  # negative: no wait
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "soon"}, 1.0),
        ({"Retry-After": ""}, 1.0),
        ({"Retry-After": PAST}, 0.0),
        ({"Retry-After": FAR_FUTURE}, 60.0),
        ({"Retry-After": "Mon, 32 Foo 2024 99:99:99 GMT"}, 1.0),
        ({"retry-after-ms": "nan"}, 1.0),
        ({"retry-after-ms": "inf"}, 60.0),
        ({"retry-after-ms": "-1500"}, 0.0),
        ({"retry-after-ms": "nan", "Retry-After": "3"}, 3.0),  # the other header still counts
        ({"retry-after-ms": "later", "Retry-After": "nan"}, 1.0),
    ],
    ids=lambda value: repr(value) if isinstance(value, dict) else None,
)
async def test_hostile_retry_after_headers_give_a_delay_within_bounds(
    server: ScriptedOpenAIServer,
    make_agent: AgentFactory,
    headers: dict[str, str],
    waited: float,
) -> None:
    """A 429's Retry-After of nan, inf, negative, nonsense or any date: the wait is finite and
    within [0, max_delay], and the retried request answers."""
    server.add(fault.status(429, "slow down", headers=headers), text("ok"))
    agent, clock = _fake(make_agent)
    response = await agent.send_message("hi")
    assert (response.output, clock.sleeps) == ("ok", [waited])


async def test_a_nan_retry_after_does_not_hang_a_run_on_the_real_sleep(
    server: ScriptedOpenAIServer, make_agent: AgentFactory
) -> None:
    """With asyncio.sleep itself, a `Retry-After: nan` no longer waits forever."""
    server.add(fault.status(429, "slow down", headers={"Retry-After": "nan"}), text("ok"))
    agent = make_agent(retry_strategy={"initial_delay": 0.01, "jitter": False})
    response = await asyncio.wait_for(agent.send_message("hi"), timeout=10)
    assert response.output == "ok"


_HEADER = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e999", "-1e999", "0", "1_0", PAST]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.datetimes(timezones=st.just(timezone.utc)).map(lambda d: format_datetime(d, usegmt=True)),
)


@settings(max_examples=200, deadline=None)
@given(
    retry_after=st.none() | _HEADER,
    retry_after_ms=st.none() | _HEADER,
    max_delay=st.floats(0, 1e6),
    retry=st.integers(1, 5000),
    jitter=st.booleans(),
)
def test_any_retry_after_header_gives_a_finite_delay_within_max_delay(
    retry_after: str | None, retry_after_ms: str | None, max_delay: float, retry: int, jitter: bool
) -> None:
    """Whatever the headers hold and however many retries, 0 <= delay <= max_delay."""
    headers = {
        name: value
        for name, value in (("retry-after", retry_after), ("retry-after-ms", retry_after_ms))
        if value is not None
    }
    error = SimpleNamespace(response=SimpleNamespace(headers=headers))
    strategy = RetryStrategy.from_value({"max_delay": max_delay, "jitter": jitter})
    for error_class in ("rate_limit", "server_error", "timeout", "connection_error"):
        delay = strategy.delay(error_class, retry, error, random.Random(retry))  # type: ignore[arg-type]
        assert math.isfinite(delay)
        assert 0 <= delay <= max_delay


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"max_delay": math.nan}, "['max_delay'] must be a number >= 0 (finite), got nan"),
        ({"max_delay": math.inf}, "['max_delay'] must be a number >= 0 (finite), got inf"),
        ({"initial_delay": 10**400}, "['initial_delay'] must be a number >= 0 (finite)"),
        ({"backoff_base": 0.5}, "['backoff_base'] must be a number >= 1 (finite), got 0.5"),
    ],
)
def test_non_finite_retry_settings_are_refused(value: Any, message: str) -> None:
    """NaN, infinite and too-large numbers in retry_strategy are configuration errors."""
    with pytest.raises(ConfigurationError) as info:
        AsyncOpenAISimpleAgent(model="m", api_key="k", retry_strategy=value)
    assert message in str(info.value)
    with pytest.raises(ConfigurationError):
        RetryStrategy(max_delay=math.nan)
