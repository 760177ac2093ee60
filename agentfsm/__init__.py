"""agentfsm: LLM agents as explicit, typed, serializable state machines.

Everything public is importable from here (and from ``agentfsm.store`` and
``agentfsm.testing``); every other module is internal.
"""

from agentfsm.agents import AsyncOpenAISimpleAgent, AsyncOpenAIStreamingAgent, StreamEvent
from agentfsm.budget import Budget, Pricing
from agentfsm.errors import (
    AgentFSMError,
    ConfigurationError,
    ConversationFinishedError,
    HookError,
    InvalidHistoryError,
    InvalidInputError,
    ModelRequestError,
    RunError,
    RunInProgressError,
    SerializationError,
    ToolArgumentError,
    ToolDefinitionError,
    UnknownHookError,
)
from agentfsm.hooks import (
    AfterRequestEvent,
    BeforeRequestEvent,
    BudgetExceededEvent,
    ContextOverflowEvent,
    Event,
    FallbackEvent,
    FinalResponseEvent,
    FunctionCallEndEvent,
    FunctionCallErrorEvent,
    FunctionCallStartEvent,
    ManualStopEvent,
    MaxTurnsReachedEvent,
    MessageDroppedEvent,
    RetryEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TransitionEvent,
)
from agentfsm.messages import (
    AssistantMessage,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from agentfsm.response import AgentResponse
from agentfsm.retry import RetryPolicy, RetryStrategy
from agentfsm.serde import dumps, loads
from agentfsm.state import (
    Conversation,
    ErrorInfo,
    Phase,
    RequestRecord,
    StopReason,
    TransitionRecord,
    Usage,
)
from agentfsm.tools import Tool, ToolContext, tool

__version__ = "0.1.0"

__all__ = [
    "AfterRequestEvent",
    "AgentFSMError",
    "AgentResponse",
    "AssistantMessage",
    "AsyncOpenAISimpleAgent",
    "AsyncOpenAIStreamingAgent",
    "BeforeRequestEvent",
    "Budget",
    "BudgetExceededEvent",
    "ConfigurationError",
    "ContextOverflowEvent",
    "Conversation",
    "ConversationFinishedError",
    "ErrorInfo",
    "Event",
    "FallbackEvent",
    "FinalResponseEvent",
    "FunctionCallEndEvent",
    "FunctionCallErrorEvent",
    "FunctionCallStartEvent",
    "HookError",
    "InvalidHistoryError",
    "InvalidInputError",
    "ManualStopEvent",
    "MaxTurnsReachedEvent",
    "MessageDroppedEvent",
    "ModelRequestError",
    "Phase",
    "Pricing",
    "RequestRecord",
    "RetryEvent",
    "RetryPolicy",
    "RetryStrategy",
    "RunError",
    "RunInProgressError",
    "SerializationError",
    "StopReason",
    "StreamEvent",
    "SystemMessage",
    "TextPart",
    "TokenEvent",
    "Tool",
    "ToolArgumentError",
    "ToolCall",
    "ToolCallEvent",
    "ToolContext",
    "ToolDefinitionError",
    "ToolMessage",
    "ToolResultEvent",
    "TransitionEvent",
    "TransitionRecord",
    "UnknownHookError",
    "Usage",
    "UserMessage",
    "__version__",
    "dumps",
    "loads",
    "tool",
]
