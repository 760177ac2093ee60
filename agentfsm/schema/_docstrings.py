"""Reading descriptions out of Google-, NumPy- and Sphinx-style docstrings."""

from __future__ import annotations

import inspect
import re

import attrs

__all__ = ["Docstring", "parse_docstring"]


@attrs.frozen
class Docstring:
    """What a docstring says about a function or a class.

    Attributes:
        description: the prose before the first section or field.
        params: parameter name → description (``Args:``, ``Parameters`` or ``:param x:``).
        attributes: attribute name → description (``Attributes:`` or ``:ivar x:``).
    """

    description: str = ""
    params: dict[str, str] = attrs.field(factory=dict)
    attributes: dict[str, str] = attrs.field(factory=dict)


_PARAM_SECTIONS = frozenset(
    {
        "args",
        "arguments",
        "parameters",
        "params",
        "keyword args",
        "keyword arguments",
        "other parameters",
    }
)
_ATTRIBUTE_SECTIONS = frozenset({"attributes"})
_OTHER_SECTIONS = frozenset(
    {
        "returns",
        "return",
        "yields",
        "yield",
        "receives",
        "raises",
        "warns",
        "example",
        "examples",
        "note",
        "notes",
        "warning",
        "warnings",
        "see also",
        "todo",
        "references",
        "methods",
    }
)
_KNOWN_SECTIONS = _PARAM_SECTIONS | _ATTRIBUTE_SECTIONS | _OTHER_SECTIONS
_GOOGLE_HEADER = re.compile(r"^([A-Za-z][A-Za-z ]*):\s*$")
_NUMPY_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
_GOOGLE_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:(.*)$")
_NUMPY_ENTRY = re.compile(r"^\*{0,2}(\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::.*)?$")
# :param x: …, :param int x: …, :parameter x: …, :arg x: …, :ivar x: …, :returns: …
_SPHINX_FIELD = re.compile(r"^:(\w+)((?:\s+[^:]+?)?)\s*:(.*)$")
_SPHINX_PARAM = frozenset({"param", "parameter", "arg", "argument", "key", "keyword"})
_SPHINX_ATTRIBUTE = frozenset({"ivar", "var", "cvar"})


def parse_docstring(doc: str | None) -> Docstring:
    """Split a docstring into its prose and its per-parameter and per-attribute descriptions.

    Google (``Args:`` / ``Attributes:`` sections), NumPy (``Parameters`` underlined with
    dashes) and Sphinx (``:param name:`` / ``:ivar name:`` fields) styles are read; entries
    may continue on more-indented lines, which are joined with single spaces.

    Args:
        doc: the docstring, or None.

    Returns:
        The parts; empty when there is no docstring.
    """
    if not doc:
        return Docstring()
    lines = inspect.cleandoc(doc).splitlines()
    prose: list[str] = []
    params: dict[str, str] = {}
    attributes: dict[str, str] = {}
    in_sections = False  # prose after the first section or field is not the description
    index = 0
    while index < len(lines):
        section = _section_at(lines, index)
        if section is not None:
            title, body_start = section
            target = params if title in _PARAM_SECTIONS else None
            if title in _ATTRIBUTE_SECTIONS:
                target = attributes
            numpy = body_start == index + 2
            index = _read_section(lines, body_start, target, numpy)
            in_sections = True
        elif _SPHINX_FIELD.match(lines[index]):
            index = _read_sphinx_field(lines, index, params, attributes)
            in_sections = True
        else:
            if not in_sections:
                prose.append(lines[index])
            index += 1
    return Docstring(description="\n".join(prose).strip(), params=params, attributes=attributes)


def _section_at(lines: list[str], index: int) -> tuple[str, int] | None:
    """(lower-cased title, first body line) if a known section starts at ``index``."""
    line = lines[index]
    header = _GOOGLE_HEADER.match(line)
    if header and header.group(1).strip().lower() in _KNOWN_SECTIONS:
        return header.group(1).strip().lower(), index + 1
    title = line.strip().lower()
    if (
        title in _KNOWN_SECTIONS
        and index + 1 < len(lines)
        and _NUMPY_UNDERLINE.match(lines[index + 1])
    ):
        return title, index + 2
    return None


def _read_section(lines: list[str], index: int, target: dict[str, str] | None, numpy: bool) -> int:
    """Read entries until the next section; return the index of the line after the section."""
    entry_indent: int | None = None
    names: list[str] = []
    while index < len(lines):
        line = lines[index]
        if _section_at(lines, index) is not None or _SPHINX_FIELD.match(line):
            break
        if not line.strip():
            index += 1
            continue
        indent = len(line) - len(line.lstrip())
        if entry_indent is None:
            entry_indent = indent
        if indent < entry_indent:
            break  # prose after a Google section, dedented back
        if indent == entry_indent:
            names = _start_entry(line.strip(), target, numpy)
        elif names and target is not None:
            for name in names:
                target[name] = f"{target[name]} {line.strip()}".strip()
        index += 1
    return index


def _start_entry(text: str, target: dict[str, str] | None, numpy: bool) -> list[str]:
    if target is None:
        return []
    if numpy:
        entry = _NUMPY_ENTRY.match(text)
        if entry is None:
            return []
        names = [name.strip().lstrip("*") for name in entry.group(1).split(",")]
        for name in names:
            target[name] = ""
        return names
    google = _GOOGLE_ENTRY.match(text)
    if google is None:
        return []
    target[google.group(1)] = google.group(2).strip()
    return [google.group(1)]


def _read_sphinx_field(
    lines: list[str], index: int, params: dict[str, str], attributes: dict[str, str]
) -> int:
    field = _SPHINX_FIELD.match(lines[index])
    if field is None:  # pragma: no cover - the caller matched it
        return index + 1
    kind, argument, text = field.group(1), field.group(2).split(), field.group(3).strip()
    index += 1
    while index < len(lines) and lines[index][:1].isspace() and lines[index].strip():
        text = f"{text} {lines[index].strip()}".strip()
        index += 1
    if argument:
        name = argument[-1].lstrip("*")
        if kind in _SPHINX_PARAM:
            params[name] = text
        elif kind in _SPHINX_ATTRIBUTE:
            attributes[name] = text
    return index
