"""MkDocs hook: diagrams generated from the code at build time, never drawn by hand.

A page asks for a diagram with a placeholder on a line of its own:

- ``<!-- machine-diagram -->``: the state machine, ``agentfsm.viz.machine_mermaid()``.
- ``<!-- run-diagram -->``: the path of one real run of the weather agent against the
  scripted server (offline), ``agentfsm.viz.run_mermaid(conversation)``.

Each becomes a ``<pre class="mermaid">`` block, drawn in the browser by Mermaid (loaded once
per page that has one); without JavaScript the Mermaid text itself shows.
"""

from __future__ import annotations

import asyncio
import functools
import html
import sys
from pathlib import Path
from typing import Any

try:
    import agentfsm  # noqa: F401
except ImportError:  # building from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MACHINE = "<!-- machine-diagram -->"
RUN = "<!-- run-diagram -->"
MERMAID_JS = """<script type="module">
import mermaid from "https://cdn.jsdelivr.net/npm/mermaid@11/dist/mermaid.esm.min.mjs";
mermaid.initialize({ startOnLoad: true });
</script>"""


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the diagram placeholders of a page with the generated diagrams."""
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
