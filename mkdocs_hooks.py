"""MkDocs hook: diagrams and tables generated from the code at build time, never by hand.

A page asks for one with a placeholder on a line of its own:

- ``<!-- machine-diagram -->``: the state machine, ``agentfsm.viz.machine_mermaid()``.
- ``<!-- run-diagram -->``: the path of one real run of the weather agent against the
  scripted server (offline), ``agentfsm.viz.run_mermaid(conversation)``.
- ``<!-- hooks-table -->``: every hook of ``agentfsm.hooks.HOOK_EVENTS``, its event class and
  the event's own fields with their docstring descriptions.
- ``<!-- guards-table -->``: ``agentfsm.machine.GUARDS`` in priority order.
- ``<!-- edges-table -->``: ``agentfsm.machine.EDGES`` and the ``NEW_RUN`` edges.

A diagram becomes a ``<pre class="mermaid">`` block, drawn in the browser by Mermaid (loaded
once per page that has one); without JavaScript the Mermaid text itself shows. A table
becomes a Markdown table.
"""

from __future__ import annotations

import asyncio
import functools
import html
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

try:
    import agentfsm  # noqa: F401
except ImportError:  # building from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MACHINE = "<!-- machine-diagram -->"
RUN = "<!-- run-diagram -->"
HOOKS_TABLE = "<!-- hooks-table -->"
GUARDS_TABLE = "<!-- guards-table -->"
EDGES_TABLE = "<!-- edges-table -->"
MERMAID_JS = """<script type="module">
import mermaid from "https://cdn.jsdelivr.net/npm/mermaid@11/dist/mermaid.esm.min.mjs";
mermaid.initialize({ startOnLoad: true });
</script>"""


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the placeholders of a page with the generated diagrams and tables."""
    for placeholder, table in TABLES.items():
        if placeholder in markdown:
            markdown = markdown.replace(placeholder, table())
    if MACHINE not in markdown and RUN not in markdown:
        return markdown
    from agentfsm.viz import machine_mermaid

    if MACHINE in markdown:
        markdown = markdown.replace(MACHINE, _block(machine_mermaid()))
    if RUN in markdown:
        markdown = markdown.replace(RUN, _block(_weather_run()))
    return f"{markdown}\n\n{MERMAID_JS}\n"


def _block(diagram: str) -> str:
    return f'\n<pre class="mermaid">\n{html.escape(diagram)}</pre>\n'


@functools.cache
def _weather_run() -> str:
    """The path of the weather agent's run, from a real run against the scripted server."""
    return asyncio.run(_run_weather_agent())


async def _run_weather_agent() -> str:
    from agentfsm import AsyncOpenAISimpleAgent, tool
    from agentfsm.testing import ScriptedOpenAIServer, weather_scenario
    from agentfsm.viz import run_mermaid

    @tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"Sunny, 22 °C in {city}"

    async with ScriptedOpenAIServer(weather_scenario) as server:
        agent = AsyncOpenAISimpleAgent(
            model="scripted-model",
            api_key="offline",
            base_url=server.base_url,
            tool_registry=[get_weather],
            context_handling_method="simple",  # no tokenizer download at build time
        )
        async with agent:
            response = await agent.send_message("what is the weather in tokyo")
    return run_mermaid(response.conversation)


# --------------------------------------------------------------------------- tables


def hooks_table() -> str:
    """Every hook: its event class, when it fires, and the event's own fields."""
    from agentfsm.hooks import HOOK_EVENTS, Event

    common = set(_fields(Event))
    rows = []
    for name, event in HOOK_EVENTS.items():
        described = _attributes(event)
        own = [field for field in _fields(event) if field not in common]
        own += [
            attribute
            for attribute, value in vars(event).items()
            if isinstance(value, property) and not attribute.startswith("_")
        ]
        fields = [
            f"`{field}`" + (f": {described[field]}" if described.get(field) else "")
            for field in own
        ]
        rows.append([f"`{name}`", f"`{event.__name__}`", _fires(event), "<br>".join(fields)])
    return _table(["hook", "event", "fires when", "own fields"], rows)


def guards_table() -> str:
    """The guards in priority order, with the hook (and event) each fires when it holds."""
    from agentfsm.hooks import HOOK_EVENTS
    from agentfsm.machine import GUARDS

    rows = []
    for guard in GUARDS:
        row = [
            f"`{guard.name}`",
            f"`{guard.stop_reason.value}`",
            ", ".join(f"`{phase.value}`" for phase in _in_order(guard.phases)),
        ]
        event = getattr(guard, "event", None)
        hook = getattr(guard, "hook", None)
        if isinstance(hook, str) and event is None:
            event = HOOK_EVENTS.get(hook)
        fired = [f"`{hook}`" if isinstance(hook, str) else "", _name(event)]
        row.append(" ".join(part for part in fired if part))
        rows.append(row)
    header = ["guard", "`stop_reason`", "checked before", "fires (event)"]
    if not any(row[-1] for row in rows):  # no guard names a hook (yet): no empty column
        header, rows = header[:-1], [row[:-1] for row in rows]
    return _table(header, rows)


def edges_table() -> str:
    """Every move of the machine: ``EDGES``, then the ``NEW_RUN`` edges of a new message."""
    from agentfsm.machine import EDGES, NEW_RUN

    rows = [_edge(phase, outcome, target) for (phase, outcome), target in EDGES.items()]
    for key, target in NEW_RUN.items():
        if isinstance(key, tuple):  # (phase, outcome type), like EDGES
            rows.append(_edge(key[0], key[1], target))
        else:  # phase -> phase, for a new user message
            rows.append([f"`{key.value}`", "a new user message", "`user_message`", "",
                         f"`{target.value}`"])  # fmt: skip
    header = ["from", "outcome", "reason", "also fires", "to"]
    if not any(row[3] for row in rows):
        header, rows = [*header[:3], header[4]], [[*row[:3], row[4]] for row in rows]
    return _table(header, rows)


TABLES: dict[str, Callable[[], str]] = {
    HOOKS_TABLE: hooks_table,
    GUARDS_TABLE: guards_table,
    EDGES_TABLE: edges_table,
}


def _edge(phase: Any, outcome: type, target: Any) -> list[str]:
    reason = inspect.getattr_static(outcome, "reason", None)
    hook = inspect.getattr_static(outcome, "hook", None)
    return [
        f"`{phase.value}`",
        f"`{outcome.__name__}`",
        f"`{reason}`" if isinstance(reason, str) else "the guard's `stop_reason`",
        f"`{hook}`" if isinstance(hook, str) else "the guard's hook" if hook else "",
        f"`{target.value}`",
    ]


def _fields(cls: type) -> list[str]:
    import attrs

    return [field.name for field in attrs.fields(cls)]


def _in_order(phases: Iterable[Any]) -> list[Any]:
    from agentfsm.state import Phase

    order = list(Phase)
    return sorted(phases, key=order.index)


def _name(value: object) -> str:
    return f"`{value.__name__}`" if isinstance(value, type) else ""


def _fires(event: type) -> str:
    """The first line of the event's docstring, without its ``on_x:`` prefix."""
    first = (inspect.getdoc(event) or "").split("\n\n")[0]
    return _markdown(re.sub(r"^``on_\w+``: ", "", " ".join(first.split())))


def _attributes(cls: type) -> dict[str, str]:
    """The ``Attributes:`` entries of ``cls``'s docstring (and its properties' docstrings)."""
    described: dict[str, str] = {}
    for name, value in vars(cls).items():
        if isinstance(value, property) and value.__doc__:
            described[name] = _markdown(" ".join(value.__doc__.split()))
    lines = (inspect.getdoc(cls) or "").splitlines()
    if "Attributes:" not in lines:
        return described
    current: str | None = None
    for line in lines[lines.index("Attributes:") + 1 :]:
        if line and not line.startswith(" "):
            break  # the next section
        entry = re.match(r"^    (\w+)(?: \([^)]*\))?: (.*)$", line)
        if entry:
            current = entry.group(1)
            described[current] = entry.group(2)
        elif current and line.strip():
            described[current] += " " + line.strip()
    return {name: _markdown(text) for name, text in described.items()}


def _markdown(text: str) -> str:
    """Docstring text for a table cell: RST literals as Markdown, pipes escaped."""
    return text.replace("``", "`").replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
