"""Pictures and plain data of the machine and of one conversation's run, for people and UIs.

Everything here is generated from :mod:`agentfsm.machine` (``EDGES`` and ``GUARDS``) and from
a :class:`~agentfsm.Conversation`'s own records, so no picture can drift from the code::

    print(machine_mermaid())             # the machine as a Mermaid stateDiagram-v2
    print(machine_mermaid(agent))        # edges the agent's configuration rules out greyed
    print(run_mermaid(conversation))     # the path one conversation took
    run_timeline(conversation)           # one JSON-ready dict per transition
    snapshot(conversation, agent)        # what a UI shows, JSON-ready

The command ``agentfsm graph [--format mermaid|dot|json]`` prints the machine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from agentfsm import machine
from agentfsm.composition import child_chat_id
from agentfsm.messages import AssistantMessage
from agentfsm.state import Conversation, Phase, RequestRecord, StopReason

if TYPE_CHECKING:
    from agentfsm.agent import Agent

__all__ = [
    "machine_dot",
    "machine_json",
    "machine_mermaid",
    "run_mermaid",
    "run_timeline",
    "snapshot",
]

_INITIAL = Phase.TRIMMING_CONTEXT
_ERROR_REASONS = (StopReason.ERROR, StopReason.CONTEXT_OVERFLOW)  # the ones ``error`` explains
_GREY = "fill:#f4f4f4,color:#a0a0a0,stroke:#c8c8c8,stroke-dasharray:4 4"


# --------------------------------------------------------------------------- the machine


@attrs.frozen
class _Edge:
    """One arrow of the machine: an action's outcome, or one guard, leaving ``source``."""

    source: Phase
    target: Phase
    label: str
    kind: str  # "action", "guard", "user_guard" or "new_run"
    impossible: str | None = None  # why the agent's configuration rules it out


def _edges(agent: Agent | None) -> list[_Edge]:
    """Every edge of the table, in table order; a guard edge per guard of its phase."""
    edges: list[_Edge] = []
    for (source, outcome), target in machine.EDGES.items():
        if outcome is machine.GuardTripped:
            for guard in machine.GUARDS:  # priority order
                if source in guard.phases:
                    edges.append(_Edge(source, target, guard.stop_reason.value, "guard"))
        elif outcome is machine.UserGuardTripped and agent is not None:
            for user in agent.wiring.guards:  # each of the agent's guards, where it is checked
                if source is _USER_GUARD_PHASES[user.on]:
                    edges.append(_Edge(source, target, f"guard {user.name}", "user_guard"))
            if not agent.wiring.guards:
                edges.append(_Edge(source, target, outcome.reason, "user_guard"))
        else:
            edges.append(_Edge(source, target, outcome.reason, "action"))
    for (source, outcome), target in machine.NEW_RUN.items():  # the next user message
        edges.append(_Edge(source, target, outcome.reason, "new_run"))
    return [attrs.evolve(e, impossible=_ruled_out(e, agent)) for e in edges]


_USER_GUARD_PHASES = {
    "input": Phase.AWAITING_MODEL,
    "model": Phase.AWAITING_MODEL,
    "output": Phase.AWAITING_MODEL,
    "tools": Phase.EXECUTING_TOOLS,
}


def _ruled_out(edge: _Edge, agent: Agent | None) -> str | None:
    """Why ``agent`` can never take ``edge``, or ``None`` when it can."""
    if agent is None:
        return None
    if not agent.tools and Phase.EXECUTING_TOOLS in (edge.source, edge.target):
        return "no tools"
    if edge.kind == "user_guard" and not agent.wiring.guards:
        return "no guards"
    if edge.kind != "guard":
        return None
    if edge.label == StopReason.BUDGET_EXCEEDED.value and not _budget_possible(agent):
        return "no budget"
    if (
        edge.label == StopReason.MAX_FUNCTION_CALLS.value
        and agent.limits.max_function_calls is None
    ):
        return "no max_function_calls"
    if edge.label == StopReason.CONTEXT_OVERFLOW.value and not agent.context.trims:
        return "no context limits"
    # user_stop stays: agent.request_stop() works with or without a stop-signal function
    return None


def _budget_possible(agent: Agent) -> bool:
    """A budget can stop a run: the agent's own, or one given per call (that needs pricing)."""
    budget = agent.limits.budget
    if budget is not None:
        return budget.stop_on_budget_exceeded
    return agent.wiring.priced  # send_message(budget_control=...) is allowed


def _merged(edges: Sequence[_Edge]) -> list[_Edge]:
    """Edges drawn once per (source, target, label): a guard and an action can share one.

    ``user_stop`` is both the stop guard (checked before an action) and the outcome of an
    action cut by a stop; a picture shows it once, possible if either way is.
    """
    seen: dict[tuple[Phase, Phase, str], _Edge] = {}
    for edge in edges:
        key = (edge.source, edge.target, edge.label)
        held = seen.get(key)
        if held is None:
            seen[key] = edge
        elif held.impossible is not None and edge.impossible is None:
            seen[key] = attrs.evolve(held, impossible=None)
    return list(seen.values())


def _impossible_phases(edges: Sequence[_Edge]) -> list[Phase]:
    """Phases other than the initial one that no possible edge enters."""
    entered = {e.target for e in edges if e.impossible is None}
    return [p for p in Phase if p is not _INITIAL and p not in entered]


def machine_mermaid(agent: Agent | None = None) -> str:
    """The machine as a Mermaid ``stateDiagram-v2``, generated from ``EDGES`` and ``GUARDS``.

    Action edges are labelled with their outcome's ``reason``, guard edges with their
    ``stop_reason`` (``awaiting_model --> stopped: max_turns``).

    Args:
        agent: when given, edges its configuration makes impossible are marked: labelled
            ``(impossible, <why>)`` after a ``%% impossible`` comment, and phases no
            possible edge enters are greyed with the ``impossible`` class. Without tools
            nothing reaches ``executing_tools``; without a budget (or pricing for a per-call
            one) ``budget_exceeded``; without ``max_function_calls`` that guard; without
            context limits ``context_overflow``. ``user_stop`` is always possible
            (``agent.request_stop``).

    Returns:
        The diagram's text, ending with a newline.
    """
    edges = _merged(_edges(agent))
    lines = [
        "stateDiagram-v2",
        "    %% generated from agentfsm.machine: python -m agentfsm graph",
        "    direction LR",
        f"    [*] --> {_INITIAL.value}",
    ]
    for edge in edges:
        if edge.impossible is None:
            lines.append(f"    {edge.source.value} --> {edge.target.value}: {edge.label}")
        else:
            lines.append(f"    %% impossible ({edge.impossible})")
            lines.append(
                f"    {edge.source.value} --> {edge.target.value}: "
                f"{edge.label} (impossible, {edge.impossible})"
            )
    lines.extend(f"    {phase.value} --> [*]" for phase in Phase if phase.terminal)
    greyed = _impossible_phases(edges)
    if greyed:
        lines.append(f"    classDef impossible {_GREY}")
        lines.append(f"    class {','.join(p.value for p in greyed)} impossible")
    return "\n".join(lines) + "\n"


def machine_dot(agent: Agent | None = None) -> str:
    """The machine as a Graphviz ``digraph``; impossible edges and phases dashed and grey.

    Args:
        agent: as for :func:`machine_mermaid`.

    Returns:
        The graph's DOT text, ending with a newline.
    """
    edges = _merged(_edges(agent))
    greyed = set(_impossible_phases(edges))
    grey = 'style="rounded,dashed", color=gray, fontcolor=gray'
    lines = [
        "digraph agentfsm {",
        "    // generated from agentfsm.machine: python -m agentfsm graph --format dot",
        "    rankdir=LR;",
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
        '    start [shape=point, label=""];',
    ]
    for phase in Phase:
        attributes = ["peripheries=2"] if phase.terminal else []
        if phase in greyed:
            attributes.append(grey)
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"    {phase.value}{suffix};")
    lines.append(f"    start -> {_INITIAL.value};")
    for edge in edges:
        attributes = [f'label="{edge.label}"']
        if edge.impossible is not None:
            attributes[0] = f'label="{edge.label}\\n(impossible, {edge.impossible})"'
            attributes.append("style=dashed, color=gray, fontcolor=gray")
        lines.append(f"    {edge.source.value} -> {edge.target.value} [{', '.join(attributes)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def machine_json(agent: Agent | None = None) -> dict[str, Any]:
    """The machine as JSON-ready data: one entry per phase and per table edge.

    Unlike the pictures, edges are not merged: the stop guard and an action cut by a stop
    are two edges with the same label and different ``kind``.

    Args:
        agent: as for :func:`machine_mermaid`.

    Returns:
        ``{"initial", "phases": [{"name", "terminal", "possible"}], "edges": [{"from",
        "to", "label", "kind" ("action" or "guard"), "possible", "impossible_because"}]}``.
    """
    edges = _edges(agent)
    greyed = set(_impossible_phases(edges))
    return {
        "initial": _INITIAL.value,
        "phases": [
            {"name": p.value, "terminal": p.terminal, "possible": p not in greyed} for p in Phase
        ],
        "edges": [
            {
                "from": e.source.value,
                "to": e.target.value,
                "label": e.label,
                "kind": e.kind,
                "possible": e.impossible is None,
                "impossible_because": e.impossible,
            }
            for e in edges
        ],
    }


# --------------------------------------------------------------------------- one run


def run_timeline(conversation: Conversation) -> list[dict[str, Any]]:
    """One JSON-ready dict per transition of ``conversation``, in order.

    Returns:
        Dicts with exactly the keys ``from``, ``to``, ``reason``, ``turn``, ``at`` (Unix
        seconds) and ``duration`` (seconds until the next transition; ``None`` for the
        last).
    """
    records = conversation.transitions
    return [
        {
            "from": record.from_phase.value,
            "to": record.to_phase.value,
            "reason": record.reason,
            "turn": record.turn,
            "at": record.at,
            "duration": records[i + 1].at - record.at if i + 1 < len(records) else None,
        }
        for i, record in enumerate(records)
    ]


def run_mermaid(
    conversation: Conversation, children: Mapping[str, Conversation] | None = None
) -> str:
    """The path ``conversation`` took, as a Mermaid ``flowchart LR`` of numbered steps.

    One node per phase visited, one arrow per ``TransitionRecord`` (``3 · tools_finished ·
    turn 1``). Nodes carry what is known of the step: the turn a model call made, its
    retries (``RequestRecord.attempts``), the tools an ``executing_tools`` step ran (from the
    messages), messages dropped from the context (the last ``ContextWindow`` only: earlier
    windows are not kept), and, at the end, the stop reason. Continued conversations show
    every run, joined by their ``user_message`` transitions.

    Args:
        conversation: the conversation to draw.
        children: sub-agent chats by chat id (``await load_children(store, conversation)``):
            each is drawn as a nested box, linked from the ``executing_tools`` step whose
            tool call ran it, and its own children inside it.

    Returns:
        The diagram's text, ending with a newline.
    """
    lines = ["flowchart LR"]
    classes: list[str] = []
    _draw_run(conversation, "n", "    ", children or {}, lines, classes)
    lines.append("    classDef done fill:#dff3e3,stroke:#3a8f50")
    lines.append("    classDef stopped fill:#fbe3e3,stroke:#b94a48")
    lines.append("    classDef current stroke-width:3px")
    lines.extend(classes)
    return "\n".join(lines) + "\n"


def _draw_run(
    conv: Conversation,
    prefix: str,
    indent: str,
    children: Mapping[str, Conversation],
    lines: list[str],
    classes: list[str],
) -> None:
    """Append the nodes and arrows of ``conv``'s path (ids ``{prefix}{i}``), its children's
    boxes after them, and the class of its last node."""
    records = conv.transitions
    phases = [records[0].from_phase if records else conv.phase]
    phases.extend(record.to_phase for record in records)
    notes = _step_notes(conv)
    for i, phase in enumerate(phases):
        text = "<br/>".join([phase.value, *notes.get(i, [])])
        left, right = ('(["', '"])') if phase.terminal else ('["', '"]')
        lines.append(f"{indent}{prefix}{i}{left}{_quote(text)}{right}")
    for i, record in enumerate(records):
        label = f"{i + 1} · {record.reason} · turn {record.turn}"
        lines.append(f'{indent}{prefix}{i} -->|"{_quote(label)}"| {prefix}{i + 1}')
    last = len(phases) - 1
    kind = phases[last].value if phases[last].terminal else "current"
    classes.append(f"    class {prefix}{last} {kind}")
    count = 0
    for i, message in sorted(_answers(conv).items()):
        if records[i].to_phase is not Phase.EXECUTING_TOOLS:
            continue
        for call in message.tool_calls:
            child = children.get(child_chat_id(conv.chat_id, call.id))
            if child is None:
                continue
            count += 1
            sub = f"{prefix}c{count}_"
            who = child.agent_name
            who = who if who == call.name else f"{who} as {call.name}"
            title = _quote(f"{who} · {call.id}")
            lines.append(f'{indent}subgraph {sub}box["{title}"]')
            lines.append(f"{indent}    direction LR")
            _draw_run(child, sub, indent + "    ", children, lines, classes)
            lines.append(f"{indent}end")
            lines.append(f"{indent}{prefix}{i + 1} -.-> {sub}0")


def _stop_of_reason() -> dict[str, StopReason]:
    """The stop reason each transition reason into a terminal phase stands for."""
    found = {g.stop_reason.value: g.stop_reason for g in machine.GUARDS}
    for _, outcome in machine.EDGES:
        if outcome is not machine.GuardTripped and outcome.stop_reason is not None:
            found[outcome.reason] = outcome.stop_reason
    return found


_STOP_OF_REASON = _stop_of_reason()


def _quote(text: str) -> str:
    """``text`` safe inside a quoted Mermaid label."""
    return text.replace('"', "#quot;")


def _step_notes(conv: Conversation) -> dict[int, list[str]]:
    """What is known of each node (by its index in the path) beyond its phase."""
    records = conv.transitions
    notes: dict[int, list[str]] = {}
    answered = _answered(conv)
    messages = _answers(conv)
    requests = _requests_of(conv, answered)
    for i in answered:
        record = records[i]
        node = notes.setdefault(i, [])
        node.append(f"turn {record.turn}")
        request = requests.get(i)
        if request is not None and request.attempts > 1:
            retries = request.attempts - 1
            node.append(f"{retries} {'retry' if retries == 1 else 'retries'}")
        message = messages.get(i)
        if message is None:
            continue
        if message.interrupted:
            node.append("answer interrupted")
        if message.tool_calls and record.to_phase is Phase.EXECUTING_TOOLS:
            counts = Counter(call.name for call in message.tool_calls)
            names = ", ".join(n if c == 1 else f"{n} ×{c}" for n, c in counts.items())
            leaving = records[i + 1] if i + 1 < len(records) else None
            ran = leaving is None or leaving.reason != StopReason.MAX_FUNCTION_CALLS.value
            notes.setdefault(i + 1, []).append(names if ran else f"not run: {names}")
    window = conv.context
    if window is not None and (window.dropped or window.truncated):
        fitted = [
            i
            for i, r in enumerate(records)
            if r.from_phase is Phase.TRIMMING_CONTEXT and r.to_phase is Phase.AWAITING_MODEL
        ]
        if fitted:
            node = notes.setdefault(fitted[-1], [])
            if window.dropped:
                node.append(f"dropped {window.dropped} message{'s' * (window.dropped != 1)}")
            if window.truncated:
                cut = len(window.truncated)
                node.append(f"truncated {cut} message{'s' * (cut != 1)}")
    for i, record in enumerate(records):  # every run's end, the earlier ones too
        if not record.to_phase.terminal:
            continue
        stop = _STOP_OF_REASON.get(record.reason)
        if i == len(records) - 1 and conv.stop_reason is not None:
            stop = conv.stop_reason
        if stop is None:
            continue
        node = notes.setdefault(i + 1, [])
        node.append(f"stop_reason: {stop.value}")
        if i == len(records) - 1 and conv.error is not None and stop in _ERROR_REASONS:
            node.append(_clip(f"{conv.error.type}: {conv.error.message}", 60))
    return notes


def _answered(conv: Conversation) -> list[int]:
    """The transitions leaving ``awaiting_model`` after a model call was answered."""
    records = conv.transitions
    return [
        i
        for i, record in enumerate(records)
        if record.from_phase is Phase.AWAITING_MODEL
        and record.turn > (records[i - 1].turn if i else 0)
    ]


def _answers(conv: Conversation) -> dict[int, AssistantMessage]:
    """The answer each answered transition brought, by the transition's index."""
    produced = [m for m in conv.messages if isinstance(m, AssistantMessage)]
    # the newest answers align: older assistant messages came in with a given history
    return dict(zip(reversed(_answered(conv)), reversed(produced), strict=False))


def _requests_of(conv: Conversation, answered: Sequence[int]) -> dict[int, RequestRecord]:
    """The request record of each answered transition.

    ``requests`` also holds the requests that wrote running summaries, in the
    ``trimming_context`` step before; when there are any, each answer takes the newest record
    made no later than its transition (leaving enough for the answers after it).
    """
    requests = conv.requests
    if len(requests) == len(answered):
        return dict(zip(answered, requests, strict=True))
    found: dict[int, RequestRecord] = {}
    start = 0
    for k, i in enumerate(answered):
        at = conv.transitions[i].at
        end = len(requests) - (len(answered) - k - 1)
        chosen = None
        for j in range(start, end):
            if requests[j].at <= at:
                chosen = j
        if chosen is None:
            continue
        found[i] = requests[chosen]
        start = chosen + 1
    return found


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- for UIs


def snapshot(conversation: Conversation, agent: Agent | None = None) -> dict[str, Any]:
    """What a UI shows about a conversation, JSON-ready, without digging into the state.

    Args:
        conversation: the conversation.
        agent: the agent running it, for its limits (``None``: those keys are ``None``).

    Returns:
        ``chat_id``, ``phase``, ``finished``, ``stop_reason``, ``error`` (``{"type",
        "message", "status"}`` or ``None``), ``tool_calls_in_flight`` (``[{"id", "name"}]``),
        ``turns`` and ``max_turns``, ``function_calls`` and ``max_function_calls``,
        ``tokens`` (``{"context"``: tokens of the last context window or ``None``,
        ``"total"``: lifetime ``usage.total_tokens}``), ``context_limit``
        (``max_context_length``), ``cost`` and ``budget`` (USD as strings; the budget is the
        run's own or the agent's, ``None`` without one) and ``version``.
    """
    conv = conversation
    budget = conv.budget
    if budget is None and agent is not None:
        budget = agent.limits.budget
    error = conv.error
    return {
        "chat_id": conv.chat_id,
        "phase": conv.phase.value,
        "finished": conv.finished,
        "stop_reason": conv.stop_reason.value if conv.stop_reason is not None else None,
        "error": (
            None
            if error is None or conv.stop_reason not in _ERROR_REASONS
            else {"type": error.type, "message": error.message, "status": error.status}
        ),
        "tool_calls_in_flight": [
            {"id": call.id, "name": call.name} for call in conv.pending_tool_calls
        ],
        "turns": conv.turn,
        "max_turns": agent.limits.max_turns if agent is not None else None,
        "function_calls": conv.function_calls,
        "max_function_calls": agent.limits.max_function_calls if agent is not None else None,
        "tokens": {
            "context": conv.context.tokens if conv.context is not None else None,
            "total": conv.usage.total_tokens,
        },
        "context_limit": agent.context.max_context_length if agent is not None else None,
        "cost": str(conv.cost),
        "budget": str(budget.max_budget_for_this_chat) if budget is not None else None,
        "version": conv.version,
    }
