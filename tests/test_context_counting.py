"""Tests for agentfsm.context.counting: the accounting, the per-message cache, the counters."""

from __future__ import annotations

import base64
import doctest
import gc
import json
import math
import struct
from typing import Any

import openai
import pytest
import tiktoken

import agentfsm.context.counting
from agentfsm.context import ContextSettings
from agentfsm.context.counting import (
    NON_TEXT_PART_TOKENS,
    AccurateCounter,
    SimpleCounter,
    TokenCounter,
    encoding_for_model,
    make_counter,
)
from agentfsm.context.trimming import fit, render
from agentfsm.errors import ConfigurationError
from agentfsm.media import Image
from agentfsm.messages import (
    AssistantMessage,
    AudioPart,
    FilePart,
    ImagePart,
    Message,
    RawPart,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    UserMessage,
    message_to_openai,
)
from agentfsm.testing import ScriptedOpenAIServer, text

O200K = tiktoken.get_encoding("o200k_base")
CL100K = tiktoken.get_encoding("cl100k_base")


def tokens(value: str, encoding: Any = O200K) -> int:
    """Tokens of a string, straight from tiktoken."""
    return len(encoding.encode(value))


# The openai-cookbook's example ("How to count tokens with tiktoken"), for which it reports
# the API's own usage.prompt_tokens: 129 for gpt-3.5-turbo / gpt-4, 124 for gpt-4o(-mini).
COOKBOOK_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on "
        "opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the "
        "client deliverable.",
    },
]

# The cookbook's tools example; the API reported 105 (gpt-3.5-turbo, gpt-4) and 101 (gpt-4o).
COOKBOOK_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
COOKBOOK_TOOL_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]

IMAGE = ImagePart("https://example.com/cat.png", "low")  # 85 tokens by every counter


def every_kind() -> list[Message]:
    """One message of every kind the counter has to handle."""
    return [
        SystemMessage("Be brief."),
        UserMessage("What's the weather in Tokyo and Paris?", name="alice"),
        AssistantMessage(
            content="Let me check.",
            tool_calls=(
                ToolCall("call_1", "get_weather", '{"city": "Tokyo"}'),
                ToolCall("call_2", "get_weather", '{"city": "Paris"}'),
            ),
        ),
        ToolMessage("call_1", "Sunny, 22 °C", tool_name="get_weather"),
        ToolMessage("call_2", "Rain, 14 °C", tool_name="get_weather"),
        AssistantMessage("Tokyo is sunny; Paris is rainy."),
        UserMessage((TextPart("And what is in this picture?"), IMAGE)),
        AssistantMessage(refusal="I cannot help with that."),
    ]


def request_tokens(counter: TokenCounter, wire: list[dict[str, Any]]) -> int:
    """What the counter says a request of these wire messages (without tools) costs."""
    return sum(counter.count_wire(m) for m in wire) + counter.reply_overhead


@pytest.fixture(scope="module")
def accurate() -> AccurateCounter:
    """An o200k_base counter, shared (loading the encoding is the slow part)."""
    return AccurateCounter("o200k_base")


# --------------------------------------------------------------------------- the formula


@pytest.mark.parametrize(("encoding", "expected"), [("o200k_base", 124), ("cl100k_base", 129)])
def test_cookbook_example_matches_the_api_figures(encoding: str, expected: int) -> None:
    """The cookbook's conversation costs what the API reported for it."""
    counter = AccurateCounter(encoding)
    assert request_tokens(counter, COOKBOOK_MESSAGES) == expected


@pytest.mark.parametrize(("encoding", "expected"), [("o200k_base", 101), ("cl100k_base", 105)])
def test_cookbook_tools_example_matches_the_api_figures(encoding: str, expected: int) -> None:
    """Messages plus the cookbook's tool schema, joined to its system message, cost what the
    API reported."""
    counter = AccurateCounter(encoding)
    system = COOKBOOK_TOOL_MESSAGES[0]["content"]
    tools = counter.count_tools(COOKBOOK_TOOLS, system=system)
    assert request_tokens(counter, COOKBOOK_TOOL_MESSAGES) + tools == expected


def test_cookbook_example_counted_independently(accurate: AccurateCounter) -> None:
    """3 per message, every value's tokens, 1 per name, 3 to prime the reply."""
    expected = 3
    for message in COOKBOOK_MESSAGES:
        expected += 3 + sum(tokens(v) for v in message.values()) + ("name" in message)
    assert request_tokens(accurate, COOKBOOK_MESSAGES) == expected


def test_each_kind_of_message_follows_the_formula(accurate: AccurateCounter) -> None:
    """Names, tool calls, tool results, parts and refusals are counted as documented."""
    system, user, calls, result, _, answer, parts, refusal = every_kind()
    count = accurate.count_message
    assert count(system) == 3 + tokens("system") + tokens("Be brief.")
    assert count(user) == (
        3 + tokens("user") + tokens("What's the weather in Tokyo and Paris?") + tokens("alice") + 1
    )
    assert count(calls) == (
        3
        + tokens("assistant")
        + tokens("Let me check.")
        + (3 + tokens("get_weather") + tokens('{"city": "Tokyo"}'))
        + (3 + tokens("get_weather") + tokens('{"city": "Paris"}'))
    )
    assert count(result) == 3 + tokens("tool") + tokens("Sunny, 22 °C")
    assert count(answer) == 3 + tokens("assistant") + tokens("Tokyo is sunny; Paris is rainy.")
    assert count(parts) == (
        3 + tokens("user") + tokens("And what is in this picture?") + NON_TEXT_PART_TOKENS
    )
    assert count(refusal) == (
        3 + tokens("assistant") + tokens("") + tokens("I cannot help with that.")
    )


def test_count_content_is_the_string_content_only(accurate: AccurateCounter) -> None:
    """count_content is the tokens of a string content, 0 for parts or no content."""
    _, user, calls, result, _, _, parts, _ = every_kind()
    assert accurate.count_content(user) == tokens("What's the weather in Tokyo and Paris?")
    assert accurate.count_content(calls) == tokens("Let me check.")
    assert accurate.count_content(result) == tokens("Sunny, 22 °C")
    assert accurate.count_content(parts) == 0
    assert accurate.count_content(AssistantMessage(tool_calls=(ToolCall("c", "f"),))) == 0


@pytest.mark.parametrize(
    "counter", [SimpleCounter(), AccurateCounter()], ids=["simple", "accurate"]
)
def test_message_and_wire_counts_agree(counter: TokenCounter) -> None:
    """count_message of a message equals count_wire of its wire dict, for every kind."""
    for message in every_kind():
        assert counter.count_message(message) == counter.count_wire(message_to_openai(message))


def test_simple_counter_is_a_quarter_of_the_characters_rounded_up() -> None:
    """Every string costs ceil(len / 4); the overheads are the accurate counter's."""
    counter = SimpleCounter()
    assert [counter.count_text("x" * n) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    message = UserMessage("Hello, world!", name="bob")
    assert counter.count_message(message) == 3 + 1 + math.ceil(13 / 4) + 1 + 1
    assert counter.name == "simple"
    assert counter.reply_overhead == 3


def test_special_tokens_in_text_count_as_plain_text(accurate: AccurateCounter) -> None:
    """A user who types <|endoftext|> gets it counted, not an exception."""
    assert accurate.count_text("<|endoftext|>") == len(O200K.encode_ordinary("<|endoftext|>"))


def test_tools_cost_nothing_when_there_are_none(accurate: AccurateCounter) -> None:
    """No tools, no tokens."""
    assert accurate.count_tools([]) == 0


def test_nested_and_odd_schemas_are_counted_not_rejected(accurate: AccurateCounter) -> None:
    """Nested properties add tokens; schemas without descriptions or non-function tools work."""
    flat = {
        "type": "function",
        "function": {"name": "f", "parameters": {"properties": {"x": {"type": "array"}}}},
    }
    nested: dict[str, Any] = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {
                "properties": {
                    "x": {"type": "array", "items": {"type": "object", "properties": {}}}
                }
            },
        },
    }
    assert accurate.count_tools([nested]) > accurate.count_tools([flat]) > 0
    assert accurate.count_tools([{"type": "web_search"}]) > 0
    assert accurate.count_tools([{"type": "function", "function": {"name": "g"}}]) > 0


# --------------------------------------------------------------------------- tool schemas

# What the model reads for COOKBOOK_TOOLS (hmarr/openai-chat-tokens' rendering).
COOKBOOK_TOOLS_TEXT = """namespace functions {

// Get the current weather in a given location
type get_current_weather = (_: {
// The city and state, e.g. San Francisco, CA
location: string,
// The unit of temperature to return
unit?: "celsius" | "fahrenheit",
}) => any;

} // namespace functions"""


def function_tool(name: str, parameters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A ``tools`` entry for a function."""
    return {"type": "function", "function": {"name": name, "parameters": parameters, **extra}}


def test_functions_cost_their_typescript_rendering_and_nine(accurate: AccurateCounter) -> None:
    """Without a system message the tools cost the namespace text's tokens plus 9."""
    assert accurate.count_tools(COOKBOOK_TOOLS) == tokens(COOKBOOK_TOOLS_TEXT) + 9


@pytest.mark.parametrize(
    ("system", "newline_tokens"),
    [
        ("Be brief", 1),
        ("Be brief.", 0),
        ("Answer as follows:", 0),
        ("Long. " * 4_000 + "Be brief", 1),
        ("Long. " * 4_000 + "Answer as follows:", 0),
    ],
    ids=["word", "period", "colon", "long-word", "long-colon"],
)
def test_functions_joined_to_a_system_message_cost_4_less_and_its_newline(
    accurate: AccurateCounter, system: str, newline_tokens: int
) -> None:
    """With a system message: 4 fewer, plus the newline the system text gains (none when
    it merges with the text's last token)."""
    assert tokens(system + "\n") - tokens(system) == newline_tokens
    alone = accurate.count_tools(COOKBOOK_TOOLS)
    assert accurate.count_tools(COOKBOOK_TOOLS, system=system) == alone - 4 + newline_tokens


def test_nested_objects_arrays_and_enums_render_as_types(accurate: AccurateCounter) -> None:
    """Nested objects indent by 2 with no descriptions, arrays add [], enums become unions,
    required properties lose their ``?``."""
    parameters = {
        "type": "object",
        "required": ["steps"],
        "properties": {
            "steps": {
                "type": "array",
                "description": "What to do",
                "items": {
                    "type": "object",
                    "required": ["verb"],
                    "properties": {
                        "verb": {"type": "string", "enum": ["cut", "boil"]},
                        "minutes": {"type": "integer", "description": "Not shown"},
                        "where": {"type": "object", "properties": {"hot": {"type": "boolean"}}},
                    },
                },
            },
            "servings": {"type": "number", "enum": [1, 2.5]},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    }
    text = """namespace functions {

type cook = (_: {
// What to do
steps: {
  verb: "cut" | "boil",
  minutes?: number,
  where?: {
    hot?: boolean,
},
}[],
servings?: 1 | 2.5,
note?: string | null,
}) => any;

} // namespace functions"""
    assert accurate.count_tools([function_tool("cook", parameters)]) == tokens(text) + 9


def test_strict_tools_render_nullable_types_as_unions(accurate: AccurateCounter) -> None:
    """A strict-mode schema (all required, nullable as a type list, no extra keys) renders
    like any function: ``string | null``; ``strict`` and ``additionalProperties`` add nothing."""
    parameters = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "Where"},
            "days": {"type": ["integer", "null"]},
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    }
    text = """namespace functions {

type forecast = (_: {
// Where
city: string,
days: number | null,
}) => any;

} // namespace functions"""
    strict = function_tool("forecast", parameters, strict=True)
    assert accurate.count_tools([strict]) == tokens(text) + 9


def test_refs_are_inlined_and_recursion_stops_at_the_name(accurate: AccurateCounter) -> None:
    """``$ref`` into ``$defs`` is rendered in place; a recursive reference as its name."""
    parameters = {
        "type": "object",
        "properties": {"root": {"$ref": "#/$defs/Node"}},
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "label": {"const": "leaf"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    "kind": {"enum": ["a", 1, None]},
                    "extra": {"type": "string", "format": "uuid", "maxLength": 36},
                },
            }
        },
    }
    text = """namespace functions {

type walk = (_: {
root?: {
  label?: "leaf",
  children?: Node[],
  kind?: "a" | 1 | null,
  extra?: string,
},
}) => any;

} // namespace functions"""
    assert accurate.count_tools([function_tool("walk", parameters)]) == tokens(text) + 9


def test_functions_without_parameters_and_other_tools(accurate: AccurateCounter) -> None:
    """A function with no properties is ``() => any``; a tool that is not a function costs
    its compact JSON, on top of the functions."""
    bare = {"type": "function", "function": {"name": "ping", "description": "Check."}}
    text = "namespace functions {\n\n// Check.\ntype ping = () => any;\n\n} // namespace functions"
    assert accurate.count_tools([bare]) == tokens(text) + 9
    search = {"type": "web_search"}
    assert accurate.count_tools([search]) == tokens('{"type":"web_search"}')
    assert accurate.count_tools([bare, search]) == tokens(text) + 9 + tokens(
        '{"type":"web_search"}'
    )


def test_the_rendered_tools_are_tokenized_once() -> None:
    """An agent sends the same tools with every request: their text is tokenized once,
    however long it is."""
    counter = TracingCounter()
    long = {"type": "string", "description": "x" * 20_000}
    tools = [function_tool("f", {"type": "object", "properties": {"a": long}})]
    first = counter.count_tools(tools)
    seen = len(counter.seen)
    assert counter.count_tools(tools) == first
    assert len(counter.seen) == seen


# --------------------------------------------------------------------------- response_format

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "celsius": {"type": ["number", "null"]}},
    "required": ["city", "celsius"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "counter", [SimpleCounter(), AccurateCounter()], ids=["simple", "accurate"]
)
def test_response_format_is_a_system_message_with_harmony_s_section(
    counter: TokenCounter,
) -> None:
    """A json_schema counts as a system message holding "# Response Formats", its name, its
    description and its schema as compact JSON; text and json_object count nothing."""
    response_format = {
        "type": "json_schema",
        "json_schema": {
            "name": "weather",
            "description": "The forecast",
            "schema": WEATHER_SCHEMA,
            "strict": True,
        },
    }
    section = (
        "# Response Formats\n\n## weather\n\n// The forecast\n"
        '{"type":"object","properties":{"city":{"type":"string"},"celsius":{"type":["number",'
        '"null"]}},"required":["city","celsius"],"additionalProperties":false}'
    )
    expected = counter.count_wire({"role": "system", "content": section})
    assert counter.count_response_format(response_format) == expected
    assert counter.count_response_format({"type": "text"}) == 0
    assert counter.count_response_format({"type": "json_object"}) == 0


def test_a_bare_schema_counts_as_a_json_schema_named_response() -> None:
    """Given the JSON schema itself, it is counted as a json_schema named "response"."""
    counter = SimpleCounter()
    named = {"type": "json_schema", "json_schema": {"name": "response", "schema": WEATHER_SCHEMA}}
    assert counter.count_response_format(WEATHER_SCHEMA) == counter.count_response_format(named)
    section = "# Response Formats\n\n## response\n\n" + json.dumps(
        WEATHER_SCHEMA, separators=(",", ":")
    )
    assert counter.count_response_format(WEATHER_SCHEMA) == 3 + 2 + math.ceil(len(section) / 4)


# --------------------------------------------------------------------------- the cache


class TracingCounter(SimpleCounter):
    """A simple counter that records every string it tokenizes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def count_text(self, text: str) -> int:
        self.seen.append(text)
        return super().count_text(text)


def test_a_message_is_tokenized_once() -> None:
    """Counting the same message object again does not tokenize it again."""
    counter = TracingCounter()
    message = UserMessage("a long question " * 50)
    first = counter.count_message(message)
    tokenized = len(counter.seen)
    assert counter.count_message(message) == first
    assert counter.count_content(message) == math.ceil(len(message.content) / 4)
    assert len(counter.seen) == tokenized


def test_a_growing_conversation_costs_one_tokenization_per_message() -> None:
    """Recounting a conversation each turn tokenizes only the new message."""
    counter = TracingCounter()
    messages: list[Message] = []
    for turn in range(50):
        messages.append(UserMessage(f"turn {turn}"))
        for message in messages:
            counter.count_message(message)
    contents = [text for text in counter.seen if text.startswith("turn ")]
    assert len(contents) == 50


def test_the_cache_lets_messages_go() -> None:
    """When messages are gone their counts are gone too."""
    counter = SimpleCounter()
    messages = [UserMessage(f"message {i}") for i in range(100)]
    for message in messages:
        counter.count_message(message)
    assert counter.cached_messages == 100
    del messages, message
    gc.collect()
    assert counter.cached_messages == 0


def test_a_reused_id_never_returns_a_stale_count() -> None:
    """Messages that die and are replaced at the same address are counted afresh."""
    counter = SimpleCounter()
    seen_ids: list[int] = []
    for size in range(1, 400):
        message = UserMessage("x" * size)
        seen_ids.append(id(message))
        assert counter.count_message(message) == counter.count_wire(message_to_openai(message))
        del message
    assert len(set(seen_ids)) < len(seen_ids)  # the interpreter did reuse addresses


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini-2025-04-16", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("openai/gpt-4o-mini:free", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base"),
        ("GPT-4O", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-turbo-2024-04-09", "cl100k_base"),
        ("gpt-4-32k", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("azure/gpt-35-turbo-16k", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("llama-3.1-70b-instruct", "o200k_base"),
        ("meta-llama/llama-3-8b", "o200k_base"),
        ("o10-experimental", "o200k_base"),
    ],
)
def test_encoding_for_model(model: str, encoding: str) -> None:
    """OpenAI model names map to their encoding; others to the default."""
    assert encoding_for_model(model) == encoding


def test_unknown_models_get_the_default_encoding() -> None:
    """The default is the caller's choice."""
    assert encoding_for_model("mistral-large", default="cl100k_base") == "cl100k_base"
    assert encoding_for_model("gpt-4", default="o200k_base") == "cl100k_base"


def test_make_counter() -> None:
    """make_counter builds the counter a context_handling_method names."""
    assert make_counter("accurate", "gpt-4").name == "accurate:cl100k_base"
    assert make_counter("accurate", "openai/gpt-4o").name == "accurate:o200k_base"
    assert make_counter("accurate", "local-model", "cl100k_base").name == "accurate:cl100k_base"
    assert make_counter("simple", "gpt-4o").name == "simple"
    with pytest.raises(ConfigurationError, match="'accurate' or 'simple'"):
        make_counter("exact", "gpt-4o")


def test_an_encoding_that_cannot_download_says_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No network and no cached file: a ConfigurationError naming TIKTOKEN_CACHE_DIR."""

    def offline(name: str) -> Any:
        raise ConnectionError("Failed to resolve 'openaipublic.blob.core.windows.net'")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    with pytest.raises(ConfigurationError) as caught:
        AccurateCounter("o200k_base")
    message = str(caught.value)
    assert "TIKTOKEN_CACHE_DIR" in message
    assert "network" in message
    assert isinstance(caught.value.__cause__, ConnectionError)


def test_an_unknown_encoding_is_a_configuration_error() -> None:
    """A misspelt encoding fails at construction, listing the real ones."""
    with pytest.raises(ConfigurationError, match="o200k_base"):
        AccurateCounter("o300k_base")


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize(
    "counter", [SimpleCounter(), AccurateCounter()], ids=["simple", "accurate"]
)
async def test_server_usage_equals_our_count_of_the_request(counter: TokenCounter) -> None:
    """A server counting with our counter reports exactly the tokens fit() predicted.

    The request goes through the real openai client, so what is counted is what the SDK
    actually sent.
    """
    messages = [*every_kind(), UserMessage("Thanks! One more thing?", name="alice")]
    settings = ContextSettings()
    decision = fit(
        messages,
        newest_user=len(messages) - 1,
        system_prompt="You are a weather assistant.",
        summary="The user lives in Lyon.",
        tools=[],
        settings=settings,
        counter=counter,
    )
    wire = render(
        messages,
        decision,
        system_prompt="You are a weather assistant.",
        summary="The user lives in Lyon.",
        counter=counter,
    )

    def server_count(sent: list[dict[str, Any]]) -> int:
        return sum(counter.count_wire(m) for m in sent) + counter.reply_overhead

    async with ScriptedOpenAIServer([text("Sure.")], token_counter=server_count) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        async with client:
            completion = await client.chat.completions.create(model="any", messages=wire)  # type: ignore[arg-type]
    assert completion.usage is not None
    assert server.requests[0].messages == wire
    assert completion.usage.prompt_tokens == decision.tokens


def test_docstring_examples_run() -> None:
    """The examples in counting's docstrings are right."""
    assert doctest.testmod(agentfsm.context.counting).failed == 0


# --------------------------------------------------------------------------- content parts


def png_header(width: int, height: int) -> bytes:
    """The first 33 bytes of a PNG of this size: enough to read its size, nothing more."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + b"\x00" * 4


def part_tokens(counter: TokenCounter, *parts: Any) -> int:
    """What ``parts`` add to a user message's count."""
    return counter.count_message(UserMessage(tuple(parts))) - counter.count_message(UserMessage(()))


def test_image_parts_cost_their_tiles(accurate: AccurateCounter) -> None:
    """The accurate counter prices an image part by the size and detail it carries."""
    tall = Image.from_bytes(png_header(2048, 4096), detail="high").to_part()
    small = Image.from_bytes(png_header(512, 512)).to_part()
    remote = ImagePart("https://example.com/a.png")
    assert (tall.width, tall.height, small.detail) == (2048, 4096, None)
    assert part_tokens(accurate, tall) == 1105
    assert part_tokens(accurate, small) == 255
    assert part_tokens(accurate, remote) == 765  # unknown size: counted as 1024 x 1024
    assert part_tokens(accurate, ImagePart("https://example.com/a.png", "low")) == 85
    assert part_tokens(accurate, tall, small, remote) == 1105 + 255 + 765
    mini = AccurateCounter.for_model("gpt-4o-mini")
    assert part_tokens(mini, small) == 2833 + 5667


def test_other_parts_cost_the_flat_estimate(accurate: AccurateCounter) -> None:
    """Audio, files and unknown raw parts cost 85 each; every part does for SimpleCounter."""
    audio = AudioPart("UklGRg==", "wav")
    document = FilePart(file_id="file-abc")
    raw = RawPart({"type": "input_video", "video": {"url": "https://example.com/v.mp4"}})
    image = ImagePart("https://example.com/a.png", "high")
    for part in (audio, document, raw):
        assert part_tokens(accurate, part) == NON_TEXT_PART_TOKENS
    for part in (audio, document, raw, image):
        assert part_tokens(SimpleCounter(), part) == NON_TEXT_PART_TOKENS


def test_raw_image_and_text_parts_are_counted_as_what_they_hold(accurate: AccurateCounter) -> None:
    """A raw part that is an image (with fields agentfsm does not model) or a text costs
    what the typed part would."""
    url = "data:image/png;base64," + base64.b64encode(png_header(512, 512)).decode()
    cached = RawPart(
        {"type": "image_url", "image_url": {"url": url}, "cache_control": {"type": "ephemeral"}}
    )
    old_shape = RawPart({"type": "image_url", "image_url": url})
    text_part = RawPart({"type": "text", "text": "hello there", "cache_control": {}})
    assert part_tokens(accurate, cached) == 255
    assert part_tokens(accurate, old_shape) == 255
    assert part_tokens(accurate, text_part) == tokens("hello there")


def test_counting_an_image_reads_its_header_only(accurate: AccurateCounter) -> None:
    """A 20 MB data URL is sized from its first bytes: the rest is never decoded (here it is
    not even base64, so a full decode would fail)."""
    head = base64.b64encode(png_header(1024, 1024)).decode()
    url = f"data:image/png;base64,{head}" + "!" * 20_000_000
    part = ImagePart.from_url(url)
    assert (part.mime, part.width, part.height) == ("image/png", 1024, 1024)
    wire = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
    assert accurate.count_wire(wire) == accurate.count_message(UserMessage((part,)))
    assert part_tokens(accurate, part) == 765


@pytest.mark.parametrize(
    "counter", [SimpleCounter(), AccurateCounter()], ids=["simple", "accurate"]
)
def test_typed_and_wire_parts_count_the_same(counter: TokenCounter) -> None:
    """A message with every kind of part costs the same counted typed or as its wire dict."""
    url = "data:image/png;base64," + base64.b64encode(png_header(3000, 1000)).decode()
    message = UserMessage(
        (
            TextPart("look"),
            ImagePart.from_url(url, "high"),
            AudioPart("UklGRg==", "mp3"),
            FilePart("a.pdf", file_data="data:application/pdf;base64,JVBERi0=", mime=None),
            RawPart({"type": "image_url", "image_url": {"url": url, "x": 1}}),
        )
    )
    assert counter.count_message(message) == counter.count_wire(message_to_openai(message))
