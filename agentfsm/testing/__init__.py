"""Test helpers for agents: a scripted OpenAI-compatible server and its replies."""

from __future__ import annotations

from agentfsm.testing import _scenarios as scenarios
from agentfsm.testing._clock import FakeClock
from agentfsm.testing._replies import (
    DelayFault,
    DisconnectFault,
    HangFault,
    RawFault,
    RawStreamFault,
    Reply,
    StatusFault,
    TextReply,
    ToolCallSpec,
    ToolCallsReply,
    UsageSpec,
    call,
    fault,
    text,
    tool_calls,
)
from agentfsm.testing._scenarios import weather as weather_scenario
from agentfsm.testing._server import (
    RecordedRequest,
    ScriptedOpenAIServer,
    ScriptFunction,
    TokenCounter,
    default_token_counter,
)

__all__ = [
    "DelayFault",
    "DisconnectFault",
    "FakeClock",
    "HangFault",
    "RawFault",
    "RawStreamFault",
    "RecordedRequest",
    "Reply",
    "ScriptFunction",
    "ScriptedOpenAIServer",
    "StatusFault",
    "TextReply",
    "TokenCounter",
    "ToolCallSpec",
    "ToolCallsReply",
    "UsageSpec",
    "call",
    "default_token_counter",
    "fault",
    "scenarios",
    "text",
    "tool_calls",
    "weather_scenario",
]
