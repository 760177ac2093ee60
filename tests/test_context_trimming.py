"""Tests for agentfsm.context.trimming: what fit() sends, drops, cuts, and that it stays valid."""

from __future__ import annotations

import doctest
from collections.abc import Sequence
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentfsm.context.trimming
from agentfsm.context import ContextSettings
from agentfsm.context.counting import AccurateCounter, SimpleCounter, TokenCounter
from agentfsm.context.trimming import (
    MIN_KEPT_TOKENS,
    SUMMARY_PREFIX,
    Fit,
    fit,
    render,
    truncate_text,
)
from agentfsm.messages import (
    AssistantMessage,
    Message,
    RawPart,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    UserMessage,
)

SIMPLE = SimpleCounter()
ACCURATE = AccurateCounter()
SYSTEM = "You are a careful assistant."
DROPPED_NOTE = "Older messages were left out."
OVERFLOW_NOTE = "Some messages were cut short."
TOOLS: list[dict[str, Any]] = [
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


def words(n: int, seed: int = 0) -> str:
    """About n tokens of varied English-like text."""
    vocabulary = ["alpha", "river", "stone", "cloud", "tiger", "maple", "orbit", "quartz"]
    return " ".join(vocabulary[(seed + i * 3) % len(vocabulary)] for i in range(n))


def group(call_id: str, result: str, content: str | None = None) -> list[Message]:
    """An assistant message with one call and its result."""
    return [
        AssistantMessage(content=content, tool_calls=(ToolCall(call_id, "search", "{}"),)),
        ToolMessage(call_id, result, tool_name="search"),
    ]


def run(question: str, results: Sequence[str], answer: str | None, tag: str) -> list[Message]:
    """A user question, one group per result, then (if given) the final answer."""
    out: list[Message] = [UserMessage(question)]
    for i, result in enumerate(results):
        out.extend(group(f"{tag}-{i}", result))
    if answer is not None:
        out.append(AssistantMessage(answer))
    return out


def decide(
    messages: Sequence[Message],
    *,
    counter: TokenCounter = SIMPLE,
    system_prompt: str = SYSTEM,
    summary: str | None = None,
    tools: Sequence[dict[str, Any]] = (),
    reserve: int = 0,
    max_completion_tokens: int | None = None,
    **options: Any,
) -> Fit:
    """fit() with the newest user message found, and settings from keywords."""
    newest = max(i for i, m in enumerate(messages) if isinstance(m, UserMessage))
    return fit(
        messages,
        newest_user=newest,
        system_prompt=system_prompt,
        summary=summary,
        tools=tools,
        settings=ContextSettings(**options),
        counter=counter,
        reserve=reserve,
        max_completion_tokens=max_completion_tokens,
    )


def sent(
    messages: Sequence[Message],
    decision: Fit,
    *,
    counter: TokenCounter = SIMPLE,
    system_prompt: str = SYSTEM,
    summary: str | None = None,
) -> list[dict[str, Any]]:
    """The rendered request."""
    return render(messages, decision, system_prompt=system_prompt, summary=summary, counter=counter)


def request_tokens(
    wire: Sequence[dict[str, Any]],
    counter: TokenCounter,
    tools: Sequence[dict[str, Any]] = (),
    reserve: int = 0,
) -> int:
    """Tokens of a rendered request, counted from scratch (tool definitions join the first
    system message, as the API renders them)."""
    first = wire[0] if wire else {}
    system = first.get("content") if first.get("role") == "system" else None
    return (
        sum(counter.count_wire(m) for m in wire)
        + counter.count_tools(tools, system=system)
        + counter.reply_overhead
        + reserve
    )


def openai_problems(wire: Sequence[dict[str, Any]]) -> list[str]:
    """Why the OpenAI chat API would reject this message list (empty: it would not)."""
    problems: list[str] = []
    open_calls: set[str] = set()
    answered: set[str] = set()
    expecting_results = False
    for n, message in enumerate(wire):
        if message["role"] == "tool":
            if not expecting_results:
                problems.append(f"[{n}] tool message without an assistant call before it")
            elif message["tool_call_id"] not in open_calls:
                problems.append(f"[{n}] answers no open call")
            elif message["tool_call_id"] in answered:
                problems.append(f"[{n}] answers a call twice")
            answered.add(message["tool_call_id"])
            continue
        if open_calls - answered:
            problems.append(f"[{n}] calls left unanswered: {sorted(open_calls - answered)}")
        calls = [c["id"] for c in message.get("tool_calls", [])]
        open_calls, answered = set(calls), set()
        expecting_results = bool(calls)
    if open_calls - answered:
        problems.append(f"calls left unanswered at the end: {sorted(open_calls - answered)}")
    return problems


# --------------------------------------------------------------------------- no limits


def test_without_limits_everything_is_sent_and_counted_exactly() -> None:
    """No limits: every message, in order, and tokens equals the rendered request's count."""
    messages = [*run("Q1", ["r1", "r2"], "A1", "a"), *run("Q2", ["r3"], None, "b")]
    decision = decide(messages, tools=TOOLS, summary="Earlier: hello.")
    assert decision == Fit(selected=tuple(range(len(messages))), tokens=decision.tokens, fits=True)
    wire = sent(messages, decision, summary="Earlier: hello.")
    assert decision.tokens == request_tokens(wire, SIMPLE, TOOLS)


def test_render_puts_system_prompt_summary_and_notes_first() -> None:
    """System prompt, summary, notes, then the messages."""
    messages = [*run("Q1", [words(200)], "A1", "a"), UserMessage("Q2")]
    decision = decide(
        messages,
        summary="They said hi.",
        max_messages_in_context=2,
        prompt_when_message_is_dropped=DROPPED_NOTE,
    )
    wire = sent(messages, decision, summary="They said hi.")
    assert wire == [
        {"role": "system", "content": SYSTEM},
        {"role": "system", "content": SUMMARY_PREFIX + "They said hi."},
        {"role": "system", "content": DROPPED_NOTE},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]


def test_an_empty_system_prompt_is_not_sent() -> None:
    """No system prompt, no empty system message."""
    messages = [UserMessage("Hi")]
    wire = sent(messages, decide(messages, system_prompt=""), system_prompt="")
    assert wire == [{"role": "user", "content": "Hi"}]


def test_the_input_messages_are_never_changed() -> None:
    """Cutting and dropping change only what is sent."""
    messages = (*run("Q1", [words(500)], "A1", "a"), *run("Q2", [words(900)], None, "b"))
    before = [attrs.evolve(m) for m in messages]
    decision = decide(messages, max_context_length=400, max_token_per_message=300)
    sent(messages, decision)
    assert list(messages) == before
    assert decision.truncated


# --------------------------------------------------------------------------- max messages


def test_max_messages_drops_oldest_groups_whole() -> None:
    """The oldest units go first; a group is never split."""
    messages = [*run("Q1", ["r1"], "A1", "a"), *run("Q2", ["r2"], "A2", "b"), UserMessage("Q3")]
    decision = decide(messages, max_messages_in_context=4)
    # Q2 (4), the group (5, 6), A2 (7), Q3 (8): the group makes it 5, so Q2 goes too.
    assert decision.selected == (5, 6, 7, 8)
    assert decision.dropped == (0, 1, 2, 3, 4)
    decision = decide(messages, max_messages_in_context=3)
    assert decision.selected == (7, 8)  # the group does not fit in the 2 slots left: dropped


def test_max_messages_keeps_the_newest_user_message_and_newest_groups() -> None:
    """When the current run is too long, its user message and newest groups are kept."""
    messages = [*run("Q0", [], "A0", "z"), *run("Q1", ["r1", "r2", "r3"], None, "a")]
    decision = decide(messages, max_messages_in_context=5)
    assert decision.selected == (2, 5, 6, 7, 8)
    assert decision.dropped == (0, 1, 3, 4)
    assert openai_problems(sent(messages, decision)) == []
    assert decide(messages, max_messages_in_context=1).selected == (2,)


# --------------------------------------------------------------------------- per message


def test_long_messages_are_cut_to_max_token_per_message() -> None:
    """A long tool result and a long old question are cut; the newest question is not."""
    messages = [*run(words(400), [words(1000)], "A1", "a"), UserMessage(words(700))]
    decision = decide(messages, counter=ACCURATE, max_token_per_message=100)
    assert set(decision.truncated) == {0, 2}
    wire = sent(messages, decision, counter=ACCURATE)
    for message in wire[1:-1]:
        assert ACCURATE.count_wire(message) <= 100
    assert wire[-1]["content"] == words(700)
    assert "tokens cut" in wire[3]["content"]
    assert wire[3]["content"].startswith(words(10))
    assert decision.fits
    assert decision.notes == ()


def test_a_message_whose_overhead_exceeds_the_limit_keeps_no_content() -> None:
    """Tool calls cannot be cut: their message keeps the calls and loses its text."""
    call = ToolCall("c1", "search", '{"query": "' + words(50) + '"}')
    messages: list[Message] = [
        UserMessage("Q"),
        AssistantMessage(content=words(40), tool_calls=(call,)),
        ToolMessage("c1", "ok"),
        UserMessage("Q2"),
    ]
    decision = decide(messages, max_token_per_message=20)
    assert decision.truncated == {1: 0}
    assert sent(messages, decision)[2]["content"] == ""


# --------------------------------------------------------------------------- context length


def test_oldest_runs_are_dropped_first_to_fit_the_context() -> None:
    """Earlier runs go oldest first, whole; the note says so and costs its tokens."""
    messages = [
        *run(words(100, 1), [words(100, 2)], words(100, 3), "a"),
        *run(words(100, 4), [words(100, 5)], words(100, 6), "b"),
        UserMessage(words(100, 7)),
    ]
    everything = decide(messages).tokens
    decision = decide(
        messages,
        max_context_length=everything - 10,
        prompt_when_message_is_dropped=DROPPED_NOTE,
    )
    assert (decision.selected, decision.dropped) == (tuple(range(1, 9)), (0,))
    assert decision.notes == (DROPPED_NOTE,)
    assert decision.fits
    wire = sent(messages, decision)
    assert decision.tokens == request_tokens(wire, SIMPLE) <= everything - 10

    decision = decide(messages, max_context_length=everything - 400)
    assert (decision.selected, decision.dropped) == ((4, 5, 6, 7, 8), (0, 1, 2, 3))
    assert decision.tokens == request_tokens(sent(messages, decision), SIMPLE)


def test_the_current_run_is_cut_before_its_groups_are_dropped() -> None:
    """A huge result of the current run is cut (largest first), not dropped."""
    messages = [
        *run("old question", ["old result"], "old answer", "a"),
        *run("new question", [words(50), words(3000)], None, "b"),
    ]
    decision = decide(
        messages,
        max_context_length=600,
        prompt_when_context_overflow=OVERFLOW_NOTE,
        prompt_when_message_is_dropped=DROPPED_NOTE,
    )
    assert decision.selected == (4, 5, 6, 7, 8)
    assert list(decision.truncated) == [8]
    assert decision.notes == (DROPPED_NOTE, OVERFLOW_NOTE)
    assert decision.fits
    assert request_tokens(sent(messages, decision), SIMPLE) <= decision.tokens <= 600


def test_tool_results_are_cut_before_assistant_text() -> None:
    """Assistant text in the current run is cut only once tool results are at the floor."""
    messages = [
        UserMessage("Q"),
        *group("c1", words(300), content=words(300, 1)),
    ]
    everything = decide(messages).tokens
    decision = decide(messages, max_context_length=everything - 300)
    assert list(decision.truncated) == [2]
    assert decision.truncated[2] > MIN_KEPT_TOKENS
    decision = decide(messages, max_context_length=everything - 600)
    assert decision.truncated[2] == MIN_KEPT_TOKENS
    assert 1 in decision.truncated
    assert decision.fits


def test_current_run_groups_are_dropped_when_cutting_is_not_enough() -> None:
    """Too many calls even at the floor: the oldest groups of the run go."""
    messages = [UserMessage("Q"), *[m for i in range(10) for m in group(f"c{i}", words(200))]]
    decision = decide(messages, max_context_length=400)
    assert decision.fits
    assert decision.dropped[:2] == (1, 2)
    assert openai_problems(sent(messages, decision)) == []
    assert request_tokens(sent(messages, decision), SIMPLE) <= 400


def test_the_newest_question_is_cut_as_a_last_resort() -> None:
    """Only when nothing else is left is the user's own question cut."""
    messages = [*run("Q1", ["r1"], "A1", "a"), UserMessage(words(2000))]
    decision = decide(messages, max_context_length=300, prompt_when_context_overflow=OVERFLOW_NOTE)
    assert decision.selected == (4,)
    assert decision.truncated[4] < SIMPLE.count_text(words(2000))
    assert decision.notes == (OVERFLOW_NOTE,)
    assert decision.fits
    assert request_tokens(sent(messages, decision), SIMPLE) <= 300


def test_it_does_not_fit_when_the_fixed_part_is_too_big() -> None:
    """A system prompt, tools and reserve over the limit cannot fit: fits is False."""
    messages = [UserMessage("Hi")]
    decision = decide(messages, system_prompt=words(500), max_context_length=100)
    assert not decision.fits
    assert decision.selected == (0,)


def test_tools_reserve_and_completion_room_count_toward_the_limit() -> None:
    """Tool schemas, reserve and max_completion_tokens are part of the budget."""
    messages = [*run(words(50), [], words(50), "a"), UserMessage("Q")]
    plain = decide(messages)
    tools = SIMPLE.count_tools(TOOLS, system=SYSTEM)  # the tools join the system prompt
    heavy = decide(messages, tools=TOOLS, reserve=7, max_completion_tokens=100)
    assert heavy.tokens == plain.tokens + tools + 107
    squeezed = decide(
        messages,
        tools=TOOLS,
        reserve=7,
        max_completion_tokens=100,
        max_context_length=plain.tokens + tools + 107 - 1,
    )
    assert squeezed.selected == (1, 2)
    assert squeezed.fits


# --------------------------------------------------------------------------- function calls


def test_finished_tool_calls_can_be_left_out() -> None:
    """keep_function_calls_in_context=False: old groups excluded, old answers and new calls kept."""
    messages = [*run("Q1", ["r1", "r2"], "A1", "a"), *run("Q2", ["r3"], None, "b")]
    decision = decide(messages, keep_function_calls_in_context=False)
    assert decision.excluded == (1, 2, 3, 4)
    assert decision.selected == (0, 5, 6, 7, 8)
    assert decision.dropped == ()
    assert decision.notes == ()


def test_broken_groups_and_orphan_results_are_never_sent() -> None:
    """A call without a result and a result without a call are dropped, the rest is valid."""
    messages: list[Message] = [
        UserMessage("Q1"),
        ToolMessage("ghost", "orphan"),
        AssistantMessage(tool_calls=(ToolCall("c1", "f"), ToolCall("c2", "f"))),
        ToolMessage("c1", "only one answered"),
        ToolMessage("c1", "answered twice"),
        AssistantMessage("A1"),
        UserMessage("Q2"),
        AssistantMessage(tool_calls=(ToolCall("c3", "f"),)),
    ]
    decision = decide(messages)
    assert decision.selected == (0, 5, 6)
    assert decision.dropped == (1, 2, 3, 4, 7)
    assert openai_problems(sent(messages, decision)) == []


def test_newest_user_must_point_at_a_user_message() -> None:
    """A wrong index is a ValueError, not a silent mistake."""
    messages: list[Message] = [UserMessage("Q"), AssistantMessage("A")]
    with pytest.raises(ValueError, match="not the newest UserMessage"):
        fit(
            messages,
            newest_user=1,
            system_prompt="",
            summary=None,
            tools=[],
            settings=ContextSettings(),
            counter=SIMPLE,
        )
    with pytest.raises(ValueError, match="not an index"):
        fit(
            messages,
            newest_user=2,
            system_prompt="",
            summary=None,
            tools=[],
            settings=ContextSettings(),
            counter=SIMPLE,
        )


# --------------------------------------------------------------------------- truncate_text


@pytest.mark.parametrize("counter", [SIMPLE, ACCURATE], ids=["simple", "accurate"])
def test_truncate_text_keeps_head_and_tail_within_budget(counter: TokenCounter) -> None:
    """The head and the tail survive, the marker counts what was cut, the budget holds."""
    text = "BEGIN " + words(2000) + " END"
    total = counter.count_text(text)
    for budget in (15, 40, 100, 1000):
        cut = truncate_text(text, budget, counter)
        assert counter.count_text(cut) <= budget
        assert cut.startswith("BEGIN")
        assert cut.endswith("END")
        missing = int(cut.split("[… ")[1].split(" tokens cut")[0])
        assert 0 < missing < total
        assert abs(missing - (total - counter.count_text(cut))) <= 15
    assert truncate_text(text, total, counter) == text


@pytest.mark.parametrize("counter", [SIMPLE, ACCURATE], ids=["simple", "accurate"])
def test_truncate_text_with_no_room_for_the_marker(counter: TokenCounter) -> None:
    """Budgets too small for the marker keep just the head; zero keeps nothing."""
    text = words(500)
    assert truncate_text(text, 0, counter) == ""
    short = truncate_text(text, 3, counter)
    assert text.startswith(short)
    assert 0 < counter.count_text(short) <= 3


def test_docstring_examples_run() -> None:
    """The examples in trimming's docstrings are right."""
    assert doctest.testmod(agentfsm.context.trimming).failed == 0


# --------------------------------------------------------------------------- speed


class TracingCounter(SimpleCounter):
    """A simple counter recording every string it tokenizes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def count_text(self, text: str) -> int:
        self.seen.append(text)
        return super().count_text(text)


def test_fit_never_tokenizes_a_message_twice() -> None:
    """Turn after turn, fit() tokenizes only the messages that are new."""
    counter = TracingCounter()
    messages: list[Message] = []
    contents: list[str] = []
    for turn in range(30):
        for message in (
            UserMessage(f"question {turn} {words(30)}"),
            AssistantMessage(f"answer {turn} {words(30)}"),
        ):
            messages.append(message)
            contents.append(str(message.content))
        decide(messages[:-1], counter=counter, max_context_length=500, max_token_per_message=40)
        decide(messages, counter=counter, max_context_length=500, max_token_per_message=40)
    tokenized = [text for text in counter.seen if text in set(contents)]
    assert sorted(tokenized) == sorted(contents)


# --------------------------------------------------------------------------- properties


@attrs.frozen
class Conversation:
    """A generated conversation and what the test knows of it."""

    messages: tuple[Message, ...]
    newest_user: int
    malformed: frozenset[int]  # indices of orphan results and unanswered calls


@st.composite
def conversations(draw: st.DrawFn) -> Conversation:
    """Runs of user question, tool-call groups and answers, with a few malformed pieces."""
    messages: list[Message] = []
    malformed: set[int] = set()
    sizes = st.integers(min_value=0, max_value=300)
    newest_user = 0
    runs = draw(st.integers(min_value=1, max_value=5))
    call = 0
    for r in range(runs):
        newest_user = len(messages)
        if draw(st.booleans()):
            messages.append(UserMessage(words(draw(sizes), r)))
        else:
            messages.append(
                UserMessage((TextPart(words(draw(sizes), r)), RawPart({"type": "image_url"})))
            )
        last = r == runs - 1
        for _ in range(draw(st.integers(min_value=0, max_value=4))):
            piece = draw(
                st.sampled_from(["group", "group", "group", "note", "orphan", "unanswered"])
            )
            if piece == "group":
                calls = tuple(
                    ToolCall(f"call{call + k}", "search", "{}")
                    for k in range(draw(st.integers(1, 3)))
                )
                call += len(calls)
                content = words(draw(sizes), call) if draw(st.booleans()) else None
                messages.append(AssistantMessage(content=content, tool_calls=calls))
                messages.extend(ToolMessage(c.id, words(draw(sizes), call)) for c in calls)
            elif piece == "note":
                messages.append(SystemMessage(words(draw(sizes), 5)))
            elif piece == "orphan":
                malformed.add(len(messages))
                messages.append(ToolMessage("nobody", words(draw(sizes))))
            else:
                malformed.add(len(messages))
                messages.append(AssistantMessage(tool_calls=(ToolCall(f"lost{call}", "f"),)))
                call += 1
        if not last:
            messages.append(AssistantMessage(words(draw(sizes), 7)))
    return Conversation(tuple(messages), newest_user, frozenset(malformed))


limits = st.fixed_dictionaries(
    {
        "max_context_length": st.none() | st.integers(min_value=30, max_value=3000),
        "max_token_per_message": st.none() | st.integers(min_value=1, max_value=400),
        "max_messages_in_context": st.none() | st.integers(min_value=1, max_value=20),
        "keep_function_calls_in_context": st.booleans(),
        "prompt_when_message_is_dropped": st.none() | st.just(DROPPED_NOTE),
        "prompt_when_context_overflow": st.none() | st.just(OVERFLOW_NOTE),
    }
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conversation=conversations(),
    options=limits,
    counter=st.sampled_from([SIMPLE, ACCURATE]),
    system_prompt=st.sampled_from(["", SYSTEM, words(150)]),
    summary=st.none() | st.just("They talked about rivers."),
    tools=st.sampled_from([[], TOOLS]),
    reserve=st.integers(min_value=0, max_value=100),
    max_completion_tokens=st.none() | st.integers(min_value=0, max_value=200),
)
def test_fit_always_sends_a_valid_request_within_the_limits(
    conversation: Conversation,
    options: dict[str, Any],
    counter: TokenCounter,
    system_prompt: str,
    summary: str | None,
    tools: list[dict[str, Any]],
    reserve: int,
    max_completion_tokens: int | None,
) -> None:
    """Whatever the conversation and limits, fit() keeps every rule and the API's format."""
    messages = conversation.messages
    newest = conversation.newest_user
    copy = [attrs.evolve(m) for m in messages]
    settings_ = ContextSettings(**options)
    decision = fit(
        messages,
        newest_user=newest,
        system_prompt=system_prompt,
        summary=summary,
        tools=tools,
        settings=settings_,
        counter=counter,
        reserve=reserve,
        max_completion_tokens=max_completion_tokens,
    )
    wire = render(messages, decision, system_prompt=system_prompt, summary=summary, counter=counter)
    selected, dropped, excluded = decision.selected, decision.dropped, decision.excluded

    # Nothing changed in the input; every index is sent, dropped or excluded, once.
    assert list(messages) == copy
    assert sorted([*selected, *dropped, *excluded]) == list(range(len(messages)))
    assert list(selected) == sorted(selected)
    assert newest in selected

    # Valid for the API: groups whole, every call answered once, no orphan result.
    assert openai_problems(wire) == []
    assert not conversation.malformed & set(selected)

    # Left out only finished runs' tool calls, and only when asked.
    if settings_.keep_function_calls_in_context:
        assert excluded == ()
    for i in excluded:
        assert i < newest
        assert isinstance(messages[i], ToolMessage) or (
            isinstance(messages[i], AssistantMessage) and messages[i].tool_calls  # type: ignore[union-attr]
        )
    if not settings_.keep_function_calls_in_context:
        for i in selected:
            if i < newest and isinstance(messages[i], AssistantMessage):
                assert not messages[i].tool_calls  # type: ignore[union-attr]

    # Dropped oldest first: every well-formed dropped message is older than every sent one,
    # except the newest user message, which is always sent.
    well_formed_dropped = [i for i in dropped if i not in conversation.malformed]
    others = [i for i in selected if i != newest]
    if well_formed_dropped and others:
        assert max(well_formed_dropped) < min(others)

    # The message count limit holds.
    if settings_.max_messages_in_context is not None:
        assert len(selected) <= settings_.max_messages_in_context

    # Per-message limit: every sent message but the newest question is within it,
    # unless its non-content part alone is over (then it keeps no content).
    per_message = settings_.max_token_per_message
    body = wire[len(wire) - len(selected) :]
    if per_message is not None:
        for i, message in zip(selected, body, strict=True):
            if i != newest and isinstance(message.get("content"), str):
                bare = counter.count_wire({**message, "content": ""})
                assert counter.count_wire(message) <= max(per_message, bare)

    # The count: exact without cuts, an upper bound with; within the limit when it fits.
    reserved = reserve + (max_completion_tokens or 0)
    counted = request_tokens(wire, counter, tools, reserved)
    if decision.truncated:
        assert counted <= decision.tokens
    else:
        assert counted == decision.tokens
    limit = settings_.max_context_length
    if limit is None:
        assert decision.fits
    if decision.fits and limit is not None:
        assert counted <= decision.tokens <= limit
    if limit is None and per_message is None:
        assert decision.truncated == {}

    # Notes say what happened.
    assert (DROPPED_NOTE in decision.notes) == bool(
        dropped and settings_.prompt_when_message_is_dropped
    )
    if OVERFLOW_NOTE in decision.notes:
        assert decision.truncated
        assert limit is not None
    if newest in decision.truncated:
        assert limit is not None
        assert selected == (newest,)


@settings(max_examples=150, deadline=None)
@given(conversation=conversations(), keep=st.booleans())
def test_without_limits_only_malformed_and_excluded_messages_are_left_out(
    conversation: Conversation, keep: bool
) -> None:
    """No limits: everything well-formed is sent, uncut."""
    decision = fit(
        conversation.messages,
        newest_user=conversation.newest_user,
        system_prompt=SYSTEM,
        summary=None,
        tools=[],
        settings=ContextSettings(keep_function_calls_in_context=keep),
        counter=SIMPLE,
    )
    assert set(decision.dropped) == set(conversation.malformed) - set(decision.excluded)
    assert decision.truncated == {}
    assert decision.fits
