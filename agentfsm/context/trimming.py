"""Fitting a conversation into the context budget: which messages are sent, and how cut."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from agentfsm._indices import Indices, as_indices
from agentfsm.context import ContextSettings
from agentfsm.context.counting import TokenCounter
from agentfsm.messages import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolMessage,
    UserMessage,
    message_to_openai,
)

__all__ = [
    "MIN_KEPT_TOKENS",
    "SUMMARY_PREFIX",
    "Fit",
    "fit",
    "render",
    "truncate_text",
]

MIN_KEPT_TOKENS = 32
"""Cutting a message to make the context fit keeps at least this many tokens of its content."""

SUMMARY_PREFIX = "Summary of earlier conversation: "
"""What the running summary's system message starts with."""


@attrs.frozen(kw_only=True)
class Fit:
    """What to send of a conversation, decided by `fit`.

    Attributes:
        selected: indices into the messages, in order, of those sent. ``selected``,
            ``dropped`` and ``excluded`` are `Indices`: sequences of ints kept as runs of
            consecutive indices (each equals the tuple of its ints), so that a decision
            over a long conversation stays small; any iterable of ints is taken.
        truncated: index -> tokens of content kept for a message sent cut short (its head
            and tail, with a marker saying how much was cut between them).
        dropped: indices not sent (not counting ``excluded``).
        excluded: finished runs' tool-call groups left out because
            ``keep_function_calls_in_context`` is False.
        tokens: tokens the request costs as rendered: system prompt, summary, notes, the
            selected messages as cut, tool schemas, reply priming, ``reserve`` and
            ``max_completion_tokens``. Exact when nothing is cut; with cut messages an
            upper bound (each counts its whole content budget).
        fits: False when even after dropping and cutting the request is over
            ``max_context_length`` (the run stops with ``context_overflow``).
        notes: system notes to send after the summary: the ``prompt_when_message_is_dropped``
            when messages were dropped, the ``prompt_when_context_overflow`` when messages
            were cut for the context to fit.
    """

    selected: Indices = attrs.field(converter=as_indices)
    truncated: Mapping[int, int] = attrs.field(factory=dict)
    dropped: Indices = attrs.field(factory=Indices, converter=as_indices)
    excluded: Indices = attrs.field(factory=Indices, converter=as_indices)
    tokens: int = 0
    fits: bool = True
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when something is dropped, left out or cut."""
        return bool(self.dropped or self.excluded or self.truncated)


# --------------------------------------------------------------------------- units


class _Kind(enum.Enum):
    SINGLE = "single"  # a user, system or plain assistant message
    GROUP = "group"  # an assistant message with tool calls and one answer per call
    UNANSWERED = "unanswered"  # tool calls not all answered (or duplicate call ids)
    ORPHAN = "orphan"  # a tool result that answers no call before it


_Unit = tuple[int, int, _Kind]  # messages[first:end], kind


def _answered(head: AssistantMessage, messages: Sequence[Message], first: int, end: int) -> int:
    """How many of the tool results messages[first:end] answer ``head``'s calls, in order."""
    open_ids = {call.id for call in head.tool_calls}
    count = 0
    for i in range(first, end):
        result = messages[i]
        assert isinstance(result, ToolMessage)
        if result.tool_call_id not in open_ids:
            break
        open_ids.discard(result.tool_call_id)
        count += 1
    return count


def _units_backward(messages: Sequence[Message], stop: int, start: int) -> Iterator[_Unit]:
    """The units of messages[start:stop], newest first.

    A group takes the tool results that follow its assistant message while each answers one
    of its calls not answered yet; the same grouping a forward reading gives.
    """
    i = stop - 1
    while i >= start:
        message = messages[i]
        if isinstance(message, ToolMessage):
            first = i
            while first - 1 >= start and isinstance(messages[first - 1], ToolMessage):
                first -= 1
            head = messages[first - 1] if first - 1 >= start else None
            if isinstance(head, AssistantMessage) and head.tool_calls:
                answered = _answered(head, messages, first, i + 1)
                end = first + answered
                for orphan in range(i, end - 1, -1):
                    yield orphan, orphan + 1, _Kind.ORPHAN
                ids = {call.id for call in head.tool_calls}
                complete = answered == len(head.tool_calls) == len(ids)
                yield first - 1, end, _Kind.GROUP if complete else _Kind.UNANSWERED
                i = first - 2
            else:
                for orphan in range(i, first - 1, -1):
                    yield orphan, orphan + 1, _Kind.ORPHAN
                i = first - 1
        elif isinstance(message, AssistantMessage) and message.tool_calls:
            yield i, i + 1, _Kind.UNANSWERED
            i -= 1
        else:
            yield i, i + 1, _Kind.SINGLE
            i -= 1


# --------------------------------------------------------------------------- cutting


def _cap(values: Sequence[int], excess: int, floor: int) -> int | None:
    """The largest cap that, applied to ``values`` (all above ``floor``), saves ``excess``.

    None when even capping everything at ``floor`` does not save enough.
    """
    ordered = sorted(values, reverse=True)
    prefix = 0
    for j, value in enumerate(ordered):
        prefix += value
        below = ordered[j + 1] if j + 1 < len(ordered) else floor
        cap = (prefix - excess) // (j + 1)
        if cap >= below:
            return cap
    return None


@attrs.define
class _Sized:
    """One sent message of the current run: its tokens and its content budget."""

    index: int
    tokens: int
    content: int
    is_tool: bool

    @property
    def cuttable(self) -> int:
        """Tokens a context cut could save (content above the floor)."""
        return max(0, self.content - MIN_KEPT_TOKENS)


def _cut_to_save(items: Sequence[_Sized], excess: int) -> dict[int, int] | None:
    """Content budgets saving ``excess`` tokens: tool results first, the largest first."""
    if excess <= 0:
        return {}
    tools = [item for item in items if item.is_tool and item.cuttable]
    cap = _cap([item.content for item in tools], excess, MIN_KEPT_TOKENS)
    if cap is not None:
        return {item.index: cap for item in tools if item.content > cap}
    excess -= sum(item.cuttable for item in tools)
    others = [item for item in items if not item.is_tool and item.cuttable]
    cap = _cap([item.content for item in others], excess, MIN_KEPT_TOKENS)
    if cap is None:
        return None
    budgets = {item.index: MIN_KEPT_TOKENS for item in tools}
    budgets.update({item.index: cap for item in others if item.content > cap})
    return budgets


# --------------------------------------------------------------------------- fit


def _system(text: str) -> dict[str, Any]:
    return {"role": "system", "content": text}


def _preamble(system_prompt: str, summary: str | None) -> list[str]:
    texts = [system_prompt] if system_prompt else []
    if summary:
        texts.append(SUMMARY_PREFIX + summary)
    return texts


def _check_newest_user(messages: Sequence[Message], newest_user: int) -> None:
    if not 0 <= newest_user < len(messages):
        raise ValueError(
            f"newest_user={newest_user} is not an index of the {len(messages)} messages"
        )
    if not isinstance(messages[newest_user], UserMessage):
        kind = type(messages[newest_user]).__name__
        raise ValueError(f"messages[{newest_user}] is a {kind}, not the newest UserMessage")


def fit(
    messages: Sequence[Message],
    *,
    newest_user: int,
    system_prompt: str,
    summary: str | None,
    tools: Sequence[Mapping[str, Any]],
    settings: ContextSettings,
    counter: TokenCounter,
    reserve: int = 0,
    max_completion_tokens: int | None = None,
) -> Fit:
    """Decide which messages to send, and which to cut short, under ``settings``.

    Pure: `render` builds the request from the decision. The input messages are never
    changed; only what is *sent* is shortened or left out. The rules, in the order they
    apply:

    1. **Groups.** An assistant message with tool calls and the tool results answering them
       form one group, sent or left out whole. A tool result that answers nothing, or a
       group whose calls are not all answered, can never be sent and is dropped.
    2. **keep_function_calls_in_context=False.** Groups before the newest user message
       (finished runs) are left out (``excluded``); those runs' plain answers stay.
    3. **max_messages_in_context.** Oldest units go first; the newest user message always
       stays. When the current run alone is too long, the newest user message and as many
       of the newest whole groups as fit are kept.
    4. **max_token_per_message.** A longer message has its text content cut (head and tail
       kept, a marker in the middle) so the message fits; the newest user message is exempt.
    5. **max_context_length.** The request (system prompt, summary, notes, messages, tool
       schemas, reply priming, ``reserve`` and ``max_completion_tokens``) must fit. Earlier
       runs are dropped oldest first; then the largest tool results of the current run are
       cut (down to `MIN_KEPT_TOKENS` each), then its other texts; then the current run's
       oldest groups are dropped; as a last resort the newest user message's text is cut.
       If even that is not enough, ``fits`` is False (the ``context_overflow`` stop).

    The current run is cut before its own groups are dropped because a model that no
    longer sees the results of the calls it just made tends to make them again.

    Only string content is cut; content made of parts (images, audio) never is. A cut
    message's content stays within its budget, so the request as rendered never costs more
    than ``Fit.tokens``.

    Work per call grows with the messages *sent* (plus a cheap pass over older ones when
    ``keep_function_calls_in_context`` is False); a message is tokenized once over its life
    (``counter`` caches counts per message object).

    Args:
        messages: the whole conversation, oldest first (the system prompt not included).
        newest_user: the index of the newest user message, which starts the current run;
            every tool-call group before it is finished.
        system_prompt: the agent's system prompt, sent first (never cut).
        summary: the running summary of dropped messages, sent after the system prompt.
        tools: the tool schemas sent with the request.
        settings: the limits and notes.
        counter: counts the tokens.
        reserve: tokens to keep free besides the answer's (a safety margin).
        max_completion_tokens: the room the answer needs, when the request sets it.

    Returns:
        The decision; `render` turns it into the request's messages.

    Raises:
        ValueError: ``newest_user`` is not the index of a user message, or a negative
            ``reserve`` / ``max_completion_tokens``.
    """
    _check_newest_user(messages, newest_user)
    if reserve < 0 or (max_completion_tokens or 0) < 0:
        raise ValueError("reserve and max_completion_tokens must not be negative")
    limit = settings.max_context_length
    per_message = settings.max_token_per_message
    keep_calls = settings.keep_function_calls_in_context
    count_message = counter.count_message

    fixed = counter.reply_overhead + reserve + (max_completion_tokens or 0)
    preamble = _preamble(system_prompt, summary)
    fixed += counter.count_tools(tools)  # adjusted below once the first message is known
    fixed += sum(counter.count_wire(_system(t)) for t in preamble)
    drop_note = settings.prompt_when_message_is_dropped
    overflow_note = settings.prompt_when_context_overflow
    drop_cost = counter.count_wire(_system(drop_note)) if drop_note else 0
    overflow_cost = counter.count_wire(_system(overflow_note)) if overflow_note else 0

    budgets: dict[int, int] = {}  # content budgets, also of messages later dropped

    def sized(i: int) -> int:
        """Tokens of messages[i] once cut to max_token_per_message (the budget recorded)."""
        total = count_message(messages[i])
        if per_message is None or total <= per_message:
            return total
        content = counter.count_content(messages[i])
        keep = max(0, per_message - (total - content))
        if keep >= content:
            return total
        budgets[i] = keep
        return total - content + keep

    def plain(i: int) -> int:
        return count_message(messages[i])

    size_of = plain if per_message is None else sized
    dropped: list[tuple[int, int]] = []  # runs (first, end) of messages
    excluded: list[tuple[int, int]] = []

    # The current run, newest unit first: kept whole while max_messages_in_context allows.
    message_room = settings.max_messages_in_context
    message_room = None if message_room is None else message_room - 1
    blocked = False  # a unit did not fit: every older one is dropped too
    run: list[tuple[int, int, int]] = []  # (first, end, tokens), newest first
    for first, end, kind in _units_backward(messages, len(messages), newest_user + 1):
        size = end - first
        if kind not in (_Kind.SINGLE, _Kind.GROUP):
            dropped.append((first, end))
        elif blocked or (message_room is not None and size > message_room):
            blocked = True
            dropped.append((first, end))
        else:
            if message_room is not None:
                message_room -= size
            run.append((first, end, sum(map(size_of, range(first, end)))))
    user_tokens = count_message(messages[newest_user])
    run_tokens = sum(tokens for _, _, tokens in run)

    # Earlier runs, newest unit first, while both limits allow; the rest are dropped.
    token_room = None if limit is None else limit - fixed - user_tokens - run_tokens
    history: list[tuple[int, int, int]] = []  # (first, end, tokens), newest first
    boundary = newest_user  # messages[:boundary] are not sent
    if not blocked:
        boundary = 0
        for first, end, kind in _units_backward(messages, newest_user, 0):
            if kind is _Kind.ORPHAN or (kind is _Kind.UNANSWERED and keep_calls):
                dropped.append((first, end))
                continue
            if not keep_calls and kind is not _Kind.SINGLE:
                excluded.append((first, end))
                continue
            size = end - first
            if message_room is not None and size > message_room:
                boundary = end
                break
            tokens = size_of(first) if size == 1 else sum(map(size_of, range(first, end)))
            if token_room is not None and tokens > token_room:
                boundary = end
                break
            if message_room is not None:
                message_room -= size
            if token_room is not None:
                token_room -= tokens
            history.append((first, end, tokens))
    # messages[:boundary] are all dropped, or (finished tool calls) excluded.
    older = boundary if keep_calls else 0  # messages[:older] are dropped
    if not keep_calls:
        for first, end, kind in _units_backward(messages, boundary, 0):
            target = excluded if kind in (_Kind.GROUP, _Kind.UNANSWERED) else dropped
            target.append((first, end))

    def any_dropped() -> bool:
        return bool(dropped or older)

    # The note saying messages were dropped costs tokens too: make room for it.
    if token_room is not None and any_dropped() and drop_cost:
        while history and token_room < drop_cost:
            first, end, tokens = history.pop()
            token_room += tokens
            dropped.append((first, end))

    cut_for_context = False
    if token_room is not None and token_room - (drop_cost if any_dropped() else 0) < 0:
        # Earlier runs are all gone and the current run still does not fit.
        assert limit is not None
        assert not history
        run, cut_for_context = _fit_current_run(
            messages,
            run,
            budgets,
            counter,
            room=limit - fixed - user_tokens,
            drop_cost=drop_cost,
            overflow_cost=overflow_cost,
            dropped=dropped,
            dropped_before=bool(older),
        )
        if not run:
            cut_for_context = _cut_newest_user(
                messages,
                newest_user,
                budgets,
                counter,
                room=limit - fixed - (drop_cost if any_dropped() else 0) - overflow_cost,
            )

    selected = Indices(  # ascending: history and run units are newest first
        [
            *((first, end) for first, end, _ in reversed(history)),
            (newest_user, newest_user + 1),
            *((first, end) for first, end, _ in reversed(run)),
        ]
    )
    truncated = {i: budgets[i] for i in sorted(budgets) if i in selected}
    notes: list[str] = []
    if drop_note and any_dropped():
        notes.append(drop_note)
    if overflow_note and cut_for_context:
        notes.append(overflow_note)
    # Earlier runs cost what the walk summed; the current run is recounted with its cuts.
    total = fixed + sum(counter.count_wire(_system(note)) for note in notes)
    joined = _first_system_text(preamble, notes, messages, selected[0])
    if tools and joined is not None:  # the tool definitions join the first system message
        total += counter.count_tools(tools, system=joined) - counter.count_tools(tools)
    total += sum(unit_tokens for _, _, unit_tokens in history)
    total += _sent_tokens(messages[newest_user], budgets.get(newest_user), counter)
    for first, end, _ in run:
        total += sum(_sent_tokens(messages[i], budgets.get(i), counter) for i in range(first, end))
    return Fit(
        selected=selected,
        truncated=truncated,
        dropped=Indices(sorted([(0, older), *dropped] if older else dropped)),
        excluded=Indices(sorted(excluded)),
        tokens=total,
        fits=limit is None or total <= limit,
        notes=tuple(notes),
    )


def _fit_current_run(
    messages: Sequence[Message],
    run: list[tuple[int, int, int]],
    budgets: dict[int, int],
    counter: TokenCounter,
    *,
    room: int,
    drop_cost: int,
    overflow_cost: int,
    dropped: list[tuple[int, int]],
    dropped_before: bool,
) -> tuple[list[tuple[int, int, int]], bool]:
    """Cut, then drop oldest groups of, the current run (newest first) to fit in ``room``.

    Returns the units kept (newest first; empty when none fit even cut) and whether
    messages were cut. Updates ``budgets`` and ``dropped``.
    """
    items: dict[int, list[_Sized]] = {}
    for first, end, _ in run:
        items[first] = [
            _Sized(
                index=i,
                tokens=_sent_tokens(messages[i], budgets.get(i), counter),
                content=budgets.get(i, counter.count_content(messages[i])),
                is_tool=isinstance(messages[i], ToolMessage),
            )
            for i in range(first, end)
        ]
    # Drop the oldest units until what is left fits, as it is or cut to the floor.
    kept = list(run)
    total = sum(item.tokens for group in items.values() for item in group)
    minimum = total - sum(item.cuttable for group in items.values() for item in group)
    while kept:
        room_left = room - (drop_cost if dropped or dropped_before else 0)
        if total <= room_left:
            return kept, False
        if minimum + overflow_cost <= room_left:
            break
        first, end, _ = kept.pop()
        total -= sum(item.tokens for item in items[first])
        minimum -= sum(item.tokens - item.cuttable for item in items[first])
        dropped.append((first, end))
    if not kept:
        return [], False
    sent = [item for first, _, _ in kept for item in items[first]]
    excess = total - (room - (drop_cost if dropped or dropped_before else 0))
    cuts = _cut_to_save(sent, excess + overflow_cost)
    assert cuts is not None  # the loop above made sure the floor fits
    budgets.update(cuts)
    return kept, bool(cuts)


def _cut_newest_user(
    messages: Sequence[Message],
    newest_user: int,
    budgets: dict[int, int],
    counter: TokenCounter,
    *,
    room: int,
) -> bool:
    """Cut the newest user message's text to fit ``room``, if that can work; True if cut."""
    message = messages[newest_user]
    total = counter.count_message(message)
    content = counter.count_content(message)
    keep = room - (total - content)
    if keep >= content or keep < min(content, MIN_KEPT_TOKENS):
        return False
    budgets[newest_user] = keep
    return True


def _sent_tokens(message: Message, budget: int | None, counter: TokenCounter) -> int:
    total = counter.count_message(message)
    if budget is None:
        return total
    return total - counter.count_content(message) + budget


# --------------------------------------------------------------------------- render


def _first_system_text(
    preamble: Sequence[str], notes: Sequence[str], messages: Sequence[Message], first_sent: int
) -> str | None:
    """The text of the request's first message if it is a system message, as `render` lays
    the request out (system prompt, summary, notes, then the messages sent, the first of
    them ``messages[first_sent]``)."""
    if preamble:
        return preamble[0]
    if notes:
        return notes[0]
    first = messages[first_sent]
    return first.content if isinstance(first, SystemMessage) else None


def render(
    messages: Sequence[Message],
    fit: Fit,
    *,
    system_prompt: str,
    summary: str | None,
    counter: TokenCounter,
) -> list[dict[str, Any]]:
    """The request's messages in OpenAI chat format, as ``fit`` decided.

    The system prompt (if any) first, then the summary (``"Summary of earlier conversation:
    …"``) and the notes as system messages, then the selected messages, cut ones cut with
    `truncate_text`.
    """
    out = [_system(text) for text in _preamble(system_prompt, summary)]
    out.extend(_system(note) for note in fit.notes)
    for i in fit.selected:
        message = messages[i]
        wire = message_to_openai(message)
        budget = fit.truncated.get(i)
        content = getattr(message, "content", None)
        if budget is not None and isinstance(content, str):
            total = counter.count_content(message)  # cached: the text is not tokenized again
            wire["content"] = truncate_text(content, budget, counter, total_tokens=total)
        out.append(wire)
    return out


def _marker(cut: int) -> str:
    return f"\n[… {cut} tokens cut …]\n"


def _head_within(text: str, max_tokens: int, total: int, counter: TokenCounter) -> str:
    """The longest-found head of ``text`` that costs at most ``max_tokens``."""
    keep = len(text) * max_tokens // max(total, 1)
    while keep > 0:
        head = text[:keep]
        tokens = counter.count_text(head)
        if tokens <= max_tokens:
            return head
        keep = min(keep - 1, keep * max_tokens // tokens)
    return ""


def truncate_text(
    text: str, max_tokens: int, counter: TokenCounter, *, total_tokens: int | None = None
) -> str:
    """``text`` cut to at most ``max_tokens`` tokens: its head and tail around a marker.

    The marker (``[… N tokens cut …]`` on its own line) says how many tokens were left out;
    it counts toward ``max_tokens``. When not even the marker fits, the head alone is kept.
    Only the pieces kept are tokenized, besides ``text`` itself unless ``total_tokens`` (its
    token count, when known) is given.

    Example:
        >>> from agentfsm.context.counting import SimpleCounter
        >>> truncate_text("abcdefgh" * 20, 12, SimpleCounter())
        'abcdefghabcd\\n[… 34 tokens cut …]\\nefghabcdefgh'
    """
    total = counter.count_text(text) if total_tokens is None else total_tokens
    if total <= max_tokens:
        return text
    if max_tokens <= 0:
        return ""
    room = max_tokens - counter.count_text(_marker(total))
    if room <= 0:
        return _head_within(text, max_tokens, total, counter)
    keep = len(text) * room // total
    while keep > 0:
        head, tail = text[: (keep + 1) // 2], text[len(text) - keep // 2 :]
        cut = max(1, total - counter.count_text(head) - counter.count_text(tail))
        result = head + _marker(cut) + tail
        tokens = counter.count_text(result)
        if tokens <= max_tokens:
            return result
        keep = min(keep - 1, keep * max_tokens // tokens)
    return _head_within(text, max_tokens, total, counter)
