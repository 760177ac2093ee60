"""agentfsm: LLM agents as explicit, typed, serializable state machines.

Everything public is importable from here (and from ``agentfsm.store`` and
``agentfsm.testing``); every other module is internal.
"""

import importlib
from typing import TYPE_CHECKING, Any

from agentfsm.agents import (
    AsyncOpenAIMultimodalAgent,
    AsyncOpenAISimpleAgent,
    AsyncOpenAIStreamingAgent,
    StreamEvent,
)
from agentfsm.budget import Budget, Pricing
from agentfsm.composition import child_chat_id, load_children
from agentfsm.errors import (
    AgentFSMError,
    ChatAccessError,
    ConcurrentUpdateError,
    ConfigurationError,
    ConversationFinishedError,
    HookError,
    IllegalTransitionError,
    InvalidHistoryError,
    InvalidInputError,
    LeaseLostError,
    MachineDefinitionError,
    MalformedReplyError,
    MediaError,
    ModelRequestError,
    RunError,
    RunInProgressError,
    SchemaValidationError,
    SerializationError,
    StoreError,
    SubAgentError,
    ToolArgumentError,
    ToolDefinitionError,
    UnknownHookError,
    UnsupportedTypeError,
)
from agentfsm.guards import Correct, Guard, GuardContext, Refuse, guard, loop_breaker
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
    GuardTrippedEvent,
    InvalidOutputEvent,
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
    AudioPart,
    FilePart,
    ImagePart,
    RawPart,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from agentfsm.response import AgentResponse
from agentfsm.retry import RetryPolicy, RetryStrategy
from agentfsm.state import (
    ContextWindow,
    Conversation,
    ErrorInfo,
    GuardTrip,
    OutputSpec,
    Phase,
    RequestRecord,
    StopReason,
    TransitionRecord,
    Usage,
)
from agentfsm.tools import Tool, ToolContext, tool

if TYPE_CHECKING:
    from agentfsm.media import Audio, File, Image
    from agentfsm.serde import dumps, loads

__version__ = "0.1.0"

# Loaded on first use, so ``import agentfsm`` pays for neither cattrs nor byte sniffing.
_LAZY = {
    "Audio": "agentfsm.media",
    "File": "agentfsm.media",
    "Image": "agentfsm.media",
    "dumps": "agentfsm.serde",
    "loads": "agentfsm.serde",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agentfsm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain global
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AfterRequestEvent",
    "AgentFSMError",
    "AgentResponse",
    "AssistantMessage",
    "AsyncOpenAIMultimodalAgent",
    "AsyncOpenAISimpleAgent",
    "AsyncOpenAIStreamingAgent",
    "Audio",
    "AudioPart",
    "BeforeRequestEvent",
    "Budget",
    "BudgetExceededEvent",
    "ChatAccessError",
    "ConcurrentUpdateError",
    "ConfigurationError",
    "ContextOverflowEvent",
    "ContextWindow",
    "Conversation",
    "ConversationFinishedError",
    "Correct",
    "ErrorInfo",
    "Event",
    "FallbackEvent",
    "File",
    "FilePart",
    "FinalResponseEvent",
    "FunctionCallEndEvent",
    "FunctionCallErrorEvent",
    "FunctionCallStartEvent",
    "Guard",
    "GuardContext",
    "GuardTrip",
    "GuardTrippedEvent",
    "HookError",
    "IllegalTransitionError",
    "Image",
    "ImagePart",
    "InvalidHistoryError",
    "InvalidInputError",
    "InvalidOutputEvent",
    "LeaseLostError",
    "MachineDefinitionError",
    "MalformedReplyError",
    "ManualStopEvent",
    "MaxTurnsReachedEvent",
    "MediaError",
    "MessageDroppedEvent",
    "ModelRequestError",
    "OutputSpec",
    "Phase",
    "Pricing",
    "RawPart",
    "Refuse",
    "RequestRecord",
    "RetryEvent",
    "RetryPolicy",
    "RetryStrategy",
    "RunError",
    "RunInProgressError",
    "SchemaValidationError",
    "SerializationError",
    "StopReason",
    "StoreError",
    "StreamEvent",
    "SubAgentError",
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
    "UnsupportedTypeError",
    "Usage",
    "UserMessage",
    "__version__",
    "child_chat_id",
    "dumps",
    "guard",
    "load_children",
    "loads",
    "loop_breaker",
    "tool",
]
