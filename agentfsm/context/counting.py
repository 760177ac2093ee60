"""Token counting: what a chat-completions request costs, by tiktoken or by estimate."""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from agentfsm.context.images import estimate_image_tokens
from agentfsm.errors import ConfigurationError
from agentfsm.messages import (
    AssistantMessage,
    AudioPart,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    RawPart,
    TextPart,
    UserMessage,
    message_to_openai,
)

__all__ = [
    "CHARS_PER_TOKEN",
    "NON_TEXT_PART_TOKENS",
    "AccurateCounter",
    "SimpleCounter",
    "TokenCounter",
    "encoding_for_model",
    "make_counter",
]

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_OVERHEAD = 3
TOKENS_PER_TOOL_CALL = 3
NON_TEXT_PART_TOKENS = 85
"""What an audio, file or raw part is counted as (and every image, by `SimpleCounter`): a flat
estimate. 85 tokens is what OpenAI bills for an image sent with ``detail: "low"``;
`AccurateCounter` counts image parts with the tile formula instead.
"""
CHARS_PER_TOKEN = 4
"""The ratio `SimpleCounter` assumes: about four characters of English text per token."""

# How OpenAI shows function tools to the model: as TypeScript-like types in a ``functions``
# namespace (see _render_functions). The constants are hmarr/openai-chat-tokens', found there by
# fitting the API's usage.prompt_tokens: the namespace costs 9 tokens more than its text; when
# the request has a system message the functions join the first one, which saves 4 of them but
# gives that message a trailing newline (1 token more, or none when it merges with the text's
# last token, as after a colon).
_FUNCTIONS_OVERHEAD = 9
_JOINED_SYSTEM_SAVING = 4
_NEWLINE_TAIL_CHARS = 256  # how much of a system text decides what its newline costs
_TOOL_TEXTS_MAX = 64  # rendered tool lists whose tokens are kept (an agent has one or a few)

# count_text caches short strings (system prompts, tool descriptions, notes) that come back
# on every request; message contents are cached per message object instead.
_TEXT_CACHE_MAX_CHARS = 16_384  # longer strings are not kept
_TEXT_CACHE_BUDGET = 1_000_000  # characters held in all before the cache starts afresh


class TokenCounter(Protocol):
    """Counts the tokens of chat-completions requests.

    ``count_message`` and ``count_content`` are cached per message object, so counting a
    growing conversation again on every step tokenizes each message once.

    Messages follow OpenAI's published recipe (the openai-cookbook notebook "How to count
    tokens with tiktoken", checked there against the API's ``usage.prompt_tokens``): every
    message costs 3 tokens, plus the tokens of each of its string values (``role``,
    ``content``, ``refusal``…), plus 1 more when it has a ``name``; every request adds 3
    tokens priming the reply (``<|start|>assistant<|message|>``).

    Tools are counted as the model reads them (hmarr/openai-chat-tokens, whose rendering
    reproduces the API's figures; OpenAI's harmony format publishes the same "functions"
    namespace): the functions rendered as TypeScript-like types, ``namespace functions {
    // description  type name = (_: { // property description  prop?: type, }) => any; }
    // namespace functions``, cost the tokens of that text plus 9; when the request has a
    system message (pass its text as ``system``) they join it, 4 fewer, and the system text
    gains a trailing newline. This agrees with both cookbook figures (101 and 105 tokens for
    its weather tool) and with every small request of hmarr's test suite. A tool that is not
    a function counts as its compact JSON.

    Each tool call of an assistant message costs 3 plus the tokens of its name and of its
    arguments (as the legacy ``function_call`` did, measured); a ``tool`` result costs like
    any message (its ``tool_call_id`` is not text the model reads, so it is not counted);
    non-text content parts (images, audio, files) count `NON_TEXT_PART_TOKENS` each, but
    images by the tile formula where counters know it.

    A ``response_format`` is an estimate: OpenAI does not say how the chat models see it.
    Its json_schema counts as a system message holding the "Response Formats" section that
    OpenAI's harmony format (published for the gpt-oss models) puts in the developer
    message: ``# Response Formats``, ``## {name}``, ``// {description}`` and the schema as
    compact JSON, each on its own line, a blank line after each heading. Strict-mode tools
    (``"strict": true``) are rendered like any function: their nullable properties
    (``"type": ["string", "null"]``) read ``string | null``.
    """

    @property
    def name(self) -> str:
        """What counts: ``"accurate:o200k_base"``, ``"simple"``."""
        ...

    @property
    def reply_overhead(self) -> int:
        """Tokens every request adds to prime the reply (3 for OpenAI models)."""
        ...

    def count_message(self, message: Message) -> int:
        """Tokens ``message`` costs in a request, its per-message overhead included."""
        ...

    def count_content(self, message: Message) -> int:
        """Tokens of ``message``'s string ``content`` (0 for none or content parts)."""
        ...

    def count_wire(self, message: Mapping[str, Any]) -> int:
        """Tokens an OpenAI chat-format message dict costs (not cached)."""
        ...

    def count_tools(self, tools: Sequence[Mapping[str, Any]], *, system: str | None = None) -> int:
        """Tokens the ``tools`` of a request cost (0 for none).

        ``system`` is the text of the request's first system message, if it has one: the
        functions join that message, which costs a few tokens less than a message of their
        own (so leaving it out over-counts by at most 4).
        """
        ...

    def count_response_format(self, response_format: Mapping[str, Any]) -> int:
        """Tokens a request's ``response_format`` costs, estimated (0 for ``text`` and
        ``json_object``)."""
        ...

    def count_text(self, text: str) -> int:
        """Tokens of a bare string."""
        ...


def _image_of(value: Any) -> ImagePart | None:
    """The image of an ``image_url`` value, liberally: ``{"url", "detail"}`` with any other
    fields, or the older shape, the URL itself."""
    if isinstance(value, str):
        return ImagePart.from_url(value)
    if isinstance(value, Mapping) and isinstance(url := value.get("url"), str):
        detail = value.get("detail")
        return ImagePart.from_url(url, detail if detail in ("auto", "low", "high") else None)
    return None


def _compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# ------------------------------------------------------------------ schemas as the model reads them
#
# _render_functions follows hmarr/openai-chat-tokens (src/functions.ts) exactly wherever it
# defines the output; where it does not (a ``type`` list, ``const``, an ``enum`` without a
# type, ``$ref``, ``allOf``/``oneOf``, no ``type``), the choice is the nearest TypeScript, as
# OpenAI's harmony renderer writes it (a type list as a union, ``integer`` as ``number``).


def _js(value: Any) -> str:
    """``value`` as a JavaScript template string shows it (``${value}``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    return _compact_json(value)


def _literal(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else _js(value)


class _Schemas:
    """Renders JSON schemas as TypeScript types, resolving ``$ref`` against one root."""

    __slots__ = ("_defs",)

    def __init__(self, root: Mapping[str, Any]) -> None:
        defs: dict[str, Any] = {}
        for key in ("$defs", "definitions"):
            found = root.get(key)
            if isinstance(found, Mapping):
                defs.update((f"#/{key}/{name}", schema) for name, schema in found.items())
        self._defs = defs

    def properties(self, schema: Mapping[str, Any], indent: int, seen: frozenset[str]) -> str:
        """The lines of an object's properties, without the braces around them."""
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return ""
        required = schema.get("required")
        if not isinstance(required, (list, tuple)):
            required = ()
        lines: list[str] = []
        for name, prop in properties.items():
            description = prop.get("description") if isinstance(prop, Mapping) else None
            if isinstance(description, str) and description and indent < 2:
                lines.append(f"// {description}")
            mark = "" if name in required else "?"
            lines.append(f"{name}{mark}: {self.type(prop, indent, seen)},")
        pad = " " * indent
        return "\n".join(pad + line for line in lines)

    def type(self, schema: Any, indent: int, seen: frozenset[str]) -> str:
        """One schema as a TypeScript type."""
        if not isinstance(schema, Mapping):
            return "any"
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = self._defs.get(ref)
            if target is None or ref in seen:
                return ref.rsplit("/", 1)[-1]
            return self.type(target, indent, seen | {ref})
        for key, joiner in (("anyOf", " | "), ("oneOf", " | "), ("allOf", " & ")):
            variants = schema.get(key)
            if isinstance(variants, (list, tuple)) and variants:
                return joiner.join(self.type(v, indent, seen) for v in variants)
        kind = schema.get("type")
        if isinstance(kind, (list, tuple)):
            return " | ".join(self.type({**schema, "type": k}, indent, seen) for k in kind)
        enum = schema.get("enum")
        enum = enum if isinstance(enum, (list, tuple)) else None
        if kind == "string":
            return "string" if enum is None else " | ".join(f'"{_js(v)}"' for v in enum)
        if kind in ("number", "integer"):
            return "number" if enum is None else " | ".join(_js(v) for v in enum)
        if kind in ("boolean", "null"):
            return str(kind)
        if kind == "object" or (kind is None and "properties" in schema):
            return "\n".join(("{", self.properties(schema, indent + 2, seen), "}"))
        if kind == "array":
            items = schema.get("items")
            return f"{self.type(items, indent, seen)}[]" if items is not None else "any[]"
        if enum:
            return " | ".join(_literal(v) for v in enum)
        if "const" in schema:
            return _literal(schema["const"])
        return "any"


def _render_functions(functions: Sequence[Mapping[str, Any]]) -> str:
    """The ``functions`` namespace the model reads for these function definitions."""
    lines = ["namespace functions {", ""]
    for function in functions:
        description = function.get("description")
        if isinstance(description, str) and description:
            lines.append(f"// {description}")
        name = function.get("name", "")
        parameters = function.get("parameters")
        if isinstance(parameters, Mapping) and parameters.get("properties"):
            lines.append(f"type {name} = (_: {{")
            lines.append(_Schemas(parameters).properties(parameters, 0, frozenset()))
            lines.append("}) => any;")
        else:
            lines.append(f"type {name} = () => any;")
        lines.append("")
    lines.append("} // namespace functions")
    return "\n".join(lines)


def _render_response_format(response_format: Mapping[str, Any]) -> str | None:
    """The "Response Formats" section for a ``response_format`` (None for none).

    Harmony's shape: the headings ``# Response Formats`` and ``## {name}``, each followed by
    a blank line, then ``// {description}`` and the schema as compact JSON. A bare JSON schema
    is taken as the json_schema's schema.
    """
    kind = response_format.get("type")
    if kind in ("text", "json_object"):
        return None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        spec = spec if isinstance(spec, Mapping) else {}
        schema: Any = spec.get("schema", {})
    else:
        spec, schema = {}, response_format
    name = spec.get("name", "response")
    description = spec.get("description")
    comment = f"// {description}\n" if isinstance(description, str) and description else ""
    return f"# Response Formats\n\n## {name}\n\n{comment}{_compact_json(schema)}"


# A message's counts as stored (agentfsm.serde): "encoding:total:content", several joined by
# ";". A load only checks the form; a counter reads the numbers when it first needs them.
_STORED_COUNTS = re.compile(
    r"[A-Za-z0-9_.\-]{1,64}:[0-9]{1,18}:[0-9]{1,18}(?:;[A-Za-z0-9_.\-]{1,64}:[0-9]{1,18}:[0-9]{1,18})*"
)


def _pack_counts(counts: tuple[Any, ...] | str) -> str:
    """The stored form of a message's counts (a loaded string is kept as it is)."""
    if isinstance(counts, str):
        return counts
    if len(counts) == 3:
        return f"{counts[0]}:{counts[1]}:{counts[2]}"
    return ";".join(
        f"{counts[k]}:{counts[k + 1]}:{counts[k + 2]}" for k in range(0, len(counts), 3)
    )


def _unpack_counts(message: Message, text: str) -> tuple[Any, ...] | None:
    """A message's stored counts, read into its slot; a count that contradicts itself
    (content above total) is dropped, to be counted afresh."""
    if ";" not in text:  # one encoding: the usual case
        key, total, content = text.split(":")
        counts: tuple[Any, ...] | None = (key, int(total), int(content))
        if counts is not None and counts[2] > counts[1]:
            counts = None
        object.__setattr__(message, "_tokens", counts)
        return counts
    flat: list[Any] = []
    for entry in text.split(";"):
        key, total, content = entry.split(":")
        if int(content) <= int(total):
            flat += (key, int(total), int(content))
    several = tuple(flat) or None
    object.__setattr__(message, "_tokens", several)
    return several


class _Entry(weakref.ref):  # type: ignore[type-arg]
    """A cached count: a weak reference to the message, carrying its counts."""

    __slots__ = ("content", "key", "total")

    key: int
    total: int
    content: int


class _Counter:
    """The accounting shared by every counter; subclasses say how a string is tokenized."""

    def __init__(self) -> None:
        # id(message) -> a weak reference to it carrying its counts. The reference's callback
        # removes the entry when the message goes away, so the cache never outlives its
        # messages; and an entry is used only while it still points at the very message
        # asked about, so a reused id never finds a stale count.
        cache: dict[int, _Entry] = {}

        def forget(entry: _Entry) -> None:
            if cache.get(entry.key) is entry:
                cache.pop(entry.key, None)

        self._cache = cache
        self._forget = forget
        self._rendered: dict[str, int] = {}

    @property
    def name(self) -> str:
        """What counts."""
        raise NotImplementedError

    @property
    def reply_overhead(self) -> int:
        """Tokens every request adds to prime the reply."""
        return REPLY_OVERHEAD

    @property
    def cached_messages(self) -> int:
        """How many messages' counts are held (they are dropped when the messages are)."""
        return len(self._cache)

    def count_text(self, text: str) -> int:
        """Tokens of a bare string."""
        raise NotImplementedError

    # -------------------------------------------------------------------- messages

    _stored_as: str | None = None  # the key of counts kept on the message (see messages.py)

    def count_message(self, message: Message) -> int:
        """Tokens ``message`` costs in a request, its per-message overhead included.

        Cached per message object: a message counted before is not tokenized again.
        """
        stored = message._tokens
        if stored is not None:
            if isinstance(stored, str):
                stored = _unpack_counts(message, stored)
            if stored is not None and stored[0] == self._stored_as:
                total: int = stored[1]
                return total
        entry = self._cache.get(id(message))
        if entry is not None and entry() is message:
            return entry.total
        return self._count_fresh(message)[0]

    def count_content(self, message: Message) -> int:
        """Tokens of ``message``'s string ``content`` (0 for none or content parts), cached."""
        stored = message._tokens
        if stored is not None:
            if isinstance(stored, str):
                stored = _unpack_counts(message, stored)
            if stored is not None and stored[0] == self._stored_as:
                content: int = stored[2]
                return content
        entry = self._cache.get(id(message))
        if entry is not None and entry() is message:
            return entry.content
        return self._count_fresh(message)[1]

    def count_wire(self, message: Mapping[str, Any]) -> int:
        """Tokens an OpenAI chat-format message dict costs (not cached)."""
        return self._count_wire(message)[0]

    def _count_fresh(self, message: Message) -> tuple[int, int]:
        """(total, content) of a message this counter has not seen: from the counts stored
        with it (a loaded message) or by tokenizing it; kept with the message when it can be
        stored, in this counter's cache otherwise."""
        key = self._stored_as
        stored = message._tokens
        if isinstance(stored, str):
            stored = _unpack_counts(message, stored)
        if key is not None and stored is not None:
            for k in range(3, len(stored) - 2, 3):  # [0:3] is not this counter's: see callers
                if stored[k] == key:
                    total, content = stored[k + 1], stored[k + 2]
                    rest = (*stored[:k], *stored[k + 3 :])
                    object.__setattr__(message, "_tokens", (key, total, content, *rest))
                    return total, content
        wire = message_to_openai(message)
        plain = not isinstance(message, UserMessage) or isinstance(message.content, str)
        if not plain:
            wire["content"] = message.content  # typed parts: an image is counted by its size
        total, content = self._count_wire(wire)
        if isinstance(message, AssistantMessage) and message.content is None:
            content = 0
        if key is not None and plain:  # parts may count by the model (images): not stored
            object.__setattr__(message, "_tokens", (key, total, content, *(stored or ())))
            return total, content
        entry = _Entry(message, self._forget)
        entry.key, entry.total, entry.content = id(message), total, content
        self._cache[entry.key] = entry
        return total, content

    def _count_wire(self, message: Mapping[str, Any]) -> tuple[int, int]:
        """(total tokens, tokens of a string ``content``) of one wire message."""
        count = self.count_text
        total = TOKENS_PER_MESSAGE
        content_tokens = 0
        for key, value in message.items():
            if key == "content":
                if isinstance(value, str):
                    content_tokens = count(value)
                    total += content_tokens
                elif isinstance(value, Sequence):
                    total += self._parts_tokens(value)
            elif key == "tool_calls":
                total += self._tool_calls_tokens(value)
            elif key == "tool_call_id":
                continue
            elif isinstance(value, str):
                total += count(value)
                if key == "name":
                    total += TOKENS_PER_NAME
        return total, content_tokens

    def _parts_tokens(self, parts: Sequence[Any]) -> int:
        """Tokens of content parts: typed parts, or wire dicts (``count_wire``'s)."""
        total = 0
        for part in parts:
            if isinstance(part, str):
                total += self.count_text(part)
            elif isinstance(part, Mapping):
                total += self._wire_part_tokens(part)
            elif isinstance(part, (TextPart, ImagePart, AudioPart, FilePart, RawPart)):
                total += self._part_tokens(part)
        return total

    def _wire_part_tokens(self, part: Mapping[str, Any]) -> int:
        """Tokens of a wire dict (or a raw part's): text by its tokens, an image as its
        typed part (its size read from a data URL's header), any other by the flat estimate.
        """
        kind = part.get("type")
        if kind == "text" and isinstance(text := part.get("text"), str):
            return self.count_text(text)
        if kind == "image_url":
            image = _image_of(part.get("image_url"))
            if image is not None:
                return self._part_tokens(image)
        return NON_TEXT_PART_TOKENS

    def _part_tokens(self, part: ContentPart) -> int:
        """Tokens of one content part: text by its tokens, a raw part as its wire dict, any
        other by the flat estimate (see subclasses for images)."""
        if isinstance(part, TextPart):
            return self.count_text(part.text)
        if isinstance(part, RawPart):
            return self._wire_part_tokens(part.data)
        return NON_TEXT_PART_TOKENS

    def _tool_calls_tokens(self, calls: Any) -> int:
        if not isinstance(calls, Sequence):
            return 0
        total = 0
        for call in calls:
            function = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(function, Mapping):
                continue
            total += TOKENS_PER_TOOL_CALL
            for field in ("name", "arguments"):
                value = function.get(field)
                if isinstance(value, str):
                    total += self.count_text(value)
                elif value is not None:
                    total += self.count_text(_compact_json(value))
        return total

    # -------------------------------------------------------------------- tools

    def count_tools(self, tools: Sequence[Mapping[str, Any]], *, system: str | None = None) -> int:
        """Tokens the ``tools`` of a request cost: the rendered ``functions`` namespace and 9,
        less 4 when they join the request's first system message, whose text is ``system``
        (that message gains a trailing newline: 1 token more or none); any other tool as its
        compact JSON. See `TokenCounter`.
        """
        if not tools:
            return 0
        functions: list[Mapping[str, Any]] = []
        total = 0
        for tool in tools:
            function = tool.get("function") if tool.get("type", "function") == "function" else None
            if isinstance(function, Mapping):
                functions.append(function)
            else:
                total += self.count_text(_compact_json(tool))
        if not functions:
            return total
        total += self._count_rendered(_render_functions(functions)) + _FUNCTIONS_OVERHEAD
        if system is not None:
            total += self._newline_tokens(system) - _JOINED_SYSTEM_SAVING
        return total

    def count_response_format(self, response_format: Mapping[str, Any]) -> int:
        """Tokens a request's ``response_format`` costs, estimated: a json_schema (or a bare
        JSON schema) as a system message holding harmony's "Response Formats" section for it;
        ``text`` and ``json_object`` cost nothing. See `TokenCounter`.
        """
        section = _render_response_format(response_format)
        if section is None:
            return 0
        return TOKENS_PER_MESSAGE + self.count_text("system") + self._count_rendered(section)

    def _newline_tokens(self, text: str) -> int:
        """Tokens a trailing newline adds to ``text`` (0 when it merges with its end)."""
        return self.count_text(text + "\n") - self.count_text(text)

    def _count_rendered(self, text: str) -> int:
        """Tokens of a rendered schema text, kept whatever its length: an agent sends the same
        tools (and output schema) with every request."""
        tokens = self._rendered.get(text)
        if tokens is None:
            if len(self._rendered) >= _TOOL_TEXTS_MAX:
                self._rendered.clear()
            tokens = self._rendered[text] = self.count_text(text)
        return tokens


class AccurateCounter(_Counter):
    """Counts with the model's own tokenizer (tiktoken).

    Args:
        encoding: the tiktoken encoding, e.g. ``"o200k_base"`` (see `encoding_for_model`).

    Raises:
        ConfigurationError: the encoding cannot be loaded (unknown, or not downloadable and
            not in ``TIKTOKEN_CACHE_DIR``). There is no silent fallback to estimates.
    """

    def __init__(self, encoding: str = "o200k_base") -> None:
        super().__init__()
        import tiktoken  # loaded by the first accurate counter, not by importing agentfsm

        known = tiktoken.list_encoding_names()
        if encoding not in known:
            raise ConfigurationError(
                f"Unknown tiktoken encoding {encoding!r}; use one of {', '.join(known)}, "
                "or context_handling_method='simple'."
            )
        try:
            self._encoding = tiktoken.get_encoding(encoding)
        except Exception as error:  # the download failed: network, proxy, disk, bad file
            raise ConfigurationError(
                f"Cannot load the tiktoken encoding {encoding!r} "
                f"({type(error).__name__}: {error}). tiktoken downloads it on first use: "
                "allow network access to openaipublic.blob.core.windows.net once, or set "
                "the TIKTOKEN_CACHE_DIR environment variable to a folder holding the "
                "encoding file (copy it from a machine where tiktoken has run), or use "
                "context_handling_method='simple'."
            ) from error
        self._encoding_name = encoding
        self._stored_as = encoding  # its counts are kept with the messages, and stored
        self._encode: Callable[[str], list[int]] = self._encoding.encode_ordinary
        self._texts: dict[str, int] = {}
        self._texts_size = 0

    @classmethod
    def for_model(cls, model: str, default_encoding: str = "o200k_base") -> AccurateCounter:
        """A counter with the encoding ``model`` uses (see `encoding_for_model`)."""
        counter = cls(encoding_for_model(model, default_encoding))
        counter._model = model
        return counter

    _model: str | None = None

    def _part_tokens(self, part: ContentPart) -> int:
        """Images by OpenAI's tile formula, from the size the part carries (an image of
        unknown size counts as 1024 x 1024); other parts as every counter does."""
        if isinstance(part, ImagePart):
            return estimate_image_tokens(part.width, part.height, part.detail, model=self._model)
        return super()._part_tokens(part)

    @property
    def name(self) -> str:
        """``"accurate:<encoding>"``."""
        return f"accurate:{self._encoding_name}"

    @property
    def encoding(self) -> str:
        """The tiktoken encoding's name."""
        return self._encoding_name

    def count_text(self, text: str) -> int:
        """Tokens of ``text``; special tokens such as ``<|endoftext|>`` count as plain text."""
        if len(text) > _TEXT_CACHE_MAX_CHARS:
            return len(self._encode(text))
        tokens = self._texts.get(text)
        if tokens is None:
            tokens = len(self._encode(text))
            if self._texts_size + len(text) > _TEXT_CACHE_BUDGET:
                self._texts = {}
                self._texts_size = 0
            self._texts[text] = tokens
            self._texts_size += len(text)
        return tokens

    def _newline_tokens(self, text: str) -> int:
        """Tokens a trailing newline adds to ``text``, from its end only: the tokenizer splits
        text into words, spaces and punctuation before merging, so only the last of those can
        take the newline in (a long system prompt is not tokenized twice)."""
        tail = text[-_NEWLINE_TAIL_CHARS:]
        return self.count_text(tail + "\n") - self.count_text(tail)

    def __repr__(self) -> str:
        return f"AccurateCounter(encoding={self._encoding_name!r})"


class SimpleCounter(_Counter):
    """Estimates tokens from character counts: ``ceil(characters / 4)`` per string.

    Four characters per token is OpenAI's rule of thumb for English text; code, JSON and
    most other languages take more tokens per character, so this under-counts them (leave a
    margin in ``max_context_length``). The per-message, per-name, tool-call, tool-schema,
    response-format and reply overheads are the same as `AccurateCounter`'s, and tool and
    output schemas are rendered the same way before their characters are counted. It is about
    two orders of magnitude cheaper and needs no tokenizer file.
    """

    @property
    def name(self) -> str:
        """``"simple"``."""
        return "simple"

    def count_text(self, text: str) -> int:
        """``ceil(len(text) / 4)``."""
        return -(-len(text) // CHARS_PER_TOKEN)

    def __repr__(self) -> str:
        return "SimpleCounter()"


# ------------------------------------------------------------------------ model -> encoding

_O200K = re.compile(r"^(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-oss|o[134](?![0-9a-z]))")
_CL100K = re.compile(
    r"^(gpt-4(?![0-9a-z.])|gpt-3\.5|gpt-35|text-embedding-3|text-embedding-ada-002)"
)


def encoding_for_model(model: str, default: str = "o200k_base") -> str:
    """The tiktoken encoding of an OpenAI model name, or ``default`` for other models.

    ``o200k_base`` for the gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1/o3/o4 and chatgpt-4o families;
    ``cl100k_base`` for gpt-4 (gpt-4, gpt-4-turbo, gpt-4-0613…), gpt-3.5 and the
    text-embedding-3 / ada-002 models. Provider prefixes (``openai/gpt-4o`` on OpenRouter,
    ``azure/…``), fine-tune names (``ft:gpt-4o-mini:org::id``), OpenRouter variants
    (``:free``) and case are ignored; Azure's ``gpt-35-turbo`` spelling is understood.

    Example:
        >>> encoding_for_model("openai/gpt-4o-mini")
        'o200k_base'
        >>> encoding_for_model("gpt-35-turbo-16k")
        'cl100k_base'
        >>> encoding_for_model("llama-3.1-70b", default="cl100k_base")
        'cl100k_base'
    """
    name = model.strip().lower().rsplit("/", 1)[-1]
    if name.startswith("ft:"):
        name = name[3:]
    name = name.split(":", 1)[0]
    if _O200K.match(name):
        return "o200k_base"
    if _CL100K.match(name):
        return "cl100k_base"
    return default


def make_counter(method: str, model: str, default_encoding: str = "o200k_base") -> TokenCounter:
    """The counter for a ``context_handling_method``: ``"accurate"`` or ``"simple"``.

    Raises:
        ConfigurationError: an unknown method, or an encoding that cannot be loaded.
    """
    if method == "accurate":
        return AccurateCounter.for_model(model, default_encoding)
    if method == "simple":
        return SimpleCounter()
    raise ConfigurationError(
        f"context_handling_method must be 'accurate' or 'simple', got {method!r}"
    )
