"""Every runnable snippet in docs/ and every script in examples/ runs offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _snippets() -> list[tuple[str, str]]:
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for i, block in enumerate(_BLOCK.findall(page.read_text())):
            if "asyncio.run(" in block:  # complete programs; fragments are illustrations
                found.append((f"{page.name}#{i}", block))
    return found


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.mark.parametrize(("where", "code"), _snippets(), ids=[w for w, _ in _snippets()])
def test_docs_snippet_runs(where: str, code: str, tmp_path: Path) -> None:
    """A complete program in the docs runs to the end without error."""
    script = tmp_path / "snippet.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=_offline_env(),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_example_runs_offline(script: Path, tmp_path: Path) -> None:
    """Each example runs against the scripted server when no API key is set."""
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=_offline_env(),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"


def test_demo_command_runs_offline() -> None:
    """`agentfsm demo` runs the weather agent end to end and prints the answer and trace."""
    done = subprocess.run(
        [sys.executable, "-m", "agentfsm.cli", "demo"],
        capture_output=True,
        text=True,
        env=_offline_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "It is sunny and 22 °C in Tokyo." in done.stdout
    assert "stop_reason: response" in done.stdout
    assert "to=executing_tools" in done.stdout
