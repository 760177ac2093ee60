"""The official JSON-Schema-Test-Suite (draft 2020-12) against agentfsm's validator.

Every file for a keyword agentfsm supports runs whole. A schema the validator refuses at
compile time (a remote reference, ``$id`` below the root, an ``$anchor``, a pattern Python's
``re`` cannot read, a keyword agentfsm does not support) is a refusal the test accepts only
for those reasons: every schema it accepts must give the suite's answer for every instance.
Files for keywords agentfsm refuses run too: their schemas must be refused when defined (the
keyword is named), and any schema there that does not use the keyword must answer right.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentfsm.schema._validator import (
    PATH_STYLE,
    SUPPORTED_KEYWORDS,
    SchemaDefinitionError,
    compile_schema,
)

# The suite sits next to the repository, in the shared reference folder.
SUITE = Path(__file__).resolve().parents[2] / "shared/reference/json-schema-test-suite/draft2020-12"

# Files about keywords agentfsm refuses when a schema is defined (see _validator._REFUSED).
REFUSED_FILES = {
    "anchor.json": "$anchor",
    "dynamicRef.json": "$dynamicRef / $dynamicAnchor",
    "refRemote.json": "remote references",
    "unevaluatedItems.json": "unevaluatedItems",
    "unevaluatedProperties.json": "unevaluatedProperties",
    "vocabulary.json": "custom meta-schemas",
    "defs.json": "validation against the remote meta-schema",
}
# Why a schema in a supported file may be refused: each is a documented limit, not a bug.
ACCEPTED_REFUSALS = (
    "only local references",
    "is an anchor",
    "is not supported",
    "is not a valid regular expression",  # \p{…}: Python's re has no Unicode properties
)


def _files() -> list[Path]:
    return sorted(SUITE.glob("*.json")) if SUITE.is_dir() else []


def _cases() -> list[Any]:
    return [pytest.param(path, id=path.stem) for path in _files()]


def _run(path: Path) -> tuple[int, int]:
    """(instances checked, schemas refused); fails on the first wrong answer."""
    checked = refused = 0
    for group in json.loads(path.read_text()):
        try:
            validate = compile_schema(group["schema"], style=PATH_STYLE, lint=False)
        except SchemaDefinitionError as exc:
            refusal = str(exc)
        else:
            refusal = None
        if refusal is not None:
            assert any(reason in refusal for reason in ACCEPTED_REFUSALS) or (
                path.name in REFUSED_FILES
            ), f"{path.name}: {group['description']!r} refused for another reason: {refusal}"
            refused += 1
            continue
        for test in group["tests"]:
            errors: list[str] = []
            validate(test["data"], "$", errors)
            assert (not errors) is test["valid"], (
                f"{path.name}: {group['description']!r} / {test['description']!r}: "
                f"expected {'valid' if test['valid'] else 'invalid'}, got {errors}"
            )
            checked += 1
    return checked, refused


@pytest.mark.skipif(not SUITE.is_dir(), reason="JSON-Schema-Test-Suite not found")
@pytest.mark.parametrize("path", _cases())
def test_suite_file(path: Path) -> None:
    """Every schema the validator accepts in this file gives the suite's answer for each case;
    a file about a keyword agentfsm refuses has its schemas refused at definition."""
    checked, refused = _run(path)
    if path.name in REFUSED_FILES:
        assert refused > 0, f"{path.name}: {REFUSED_FILES[path.name]} should be refused"
    else:
        assert checked > 0


@pytest.mark.skipif(not SUITE.is_dir(), reason="JSON-Schema-Test-Suite not found")
def test_suite_totals() -> None:
    """The supported files run 967 instances; 20 schemas are refused for documented reasons."""
    totals = [_run(path) for path in _files() if path.name not in REFUSED_FILES]
    assert (sum(c for c, _ in totals), sum(r for _, r in totals)) == (967, 20)


def test_every_supported_keyword_has_a_suite_file() -> None:
    """The keywords the validator claims are the ones the suite's supported files cover."""
    covered = {
        "$ref": "ref",
        "dependentRequired": "dependentRequired",
        "dependentSchemas": "dependentSchemas",
        "if": "if-then-else",
        "then": "if-then-else",
        "else": "if-then-else",
    }
    names = {path.stem for path in _files()} or {covered.get(k, k) for k in SUPPORTED_KEYWORDS}
    missing = sorted(k for k in SUPPORTED_KEYWORDS if covered.get(k, k) not in names)
    assert missing == []
