"""The public surface is a promise: this test pins it."""

from __future__ import annotations

import subprocess
import sys

import agentfsm
import agentfsm.testing

PUBLIC = {
    "LeaseLostError",
    "SubAgentError",
    "child_chat_id",
    "load_children",
    "GuardTrip",
    "GuardTrippedEvent",
    "loop_breaker",
    "guard",
    "Refuse",
    "GuardContext",
    "Guard",
    "Correct",
    "UnsupportedTypeError",
    "SchemaValidationError",
    "OutputSpec",
    "InvalidOutputEvent",
    "StoreError",
    "MalformedReplyError",
    "MachineDefinitionError",
    "IllegalTransitionError",
    "ConcurrentUpdateError",
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
    "ConfigurationError",
    "ContextOverflowEvent",
    "ContextWindow",
    "Conversation",
    "ConversationFinishedError",
    "ErrorInfo",
    "Event",
    "FallbackEvent",
    "File",
    "FilePart",
    "FinalResponseEvent",
    "FunctionCallEndEvent",
    "FunctionCallErrorEvent",
    "FunctionCallStartEvent",
    "HookError",
    "Image",
    "ImagePart",
    "InvalidHistoryError",
    "InvalidInputError",
    "ManualStopEvent",
    "MaxTurnsReachedEvent",
    "MediaError",
    "MessageDroppedEvent",
    "ModelRequestError",
    "Phase",
    "Pricing",
    "RawPart",
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
}


def test_agentfsm_exports_exactly_the_public_names() -> None:
    """``agentfsm.__all__`` is the pinned set and every name resolves."""
    assert set(agentfsm.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(agentfsm, name) is not None


def test_testing_exports_the_scripted_server() -> None:
    """The test helpers users rely on are public in ``agentfsm.testing``."""
    for name in (
        "ScriptedOpenAIServer",
        "RecordedRequest",
        "text",
        "tool_calls",
        "call",
        "fault",
        "RawFault",
        "RawStreamFault",
    ):
        assert name in agentfsm.testing.__all__


def test_store_exports_the_stores_and_the_id_limit() -> None:
    """``agentfsm.store`` names every store, its errors and the id rule's byte limit."""
    import agentfsm.store

    assert {
        "Store",
        "StoreError",
        "ConcurrentUpdateError",
        "MemoryStore",
        "SQLiteStore",
        "RedisStore",
        "PostgresStore",
        "RedisStopSignal",
        "MAX_ID_BYTES",
    } <= set(agentfsm.store.__all__)
    assert agentfsm.store.MAX_ID_BYTES == 1024
    assert agentfsm.store.StoreError is agentfsm.StoreError


def test_phase_and_stop_reason_values_are_stable() -> None:
    """The enum values are the wire/storage format and never change."""
    assert [p.value for p in agentfsm.Phase] == [
        "trimming_context",
        "awaiting_model",
        "executing_tools",
        "stopped",
        "done",
    ]
    assert {r.value for r in agentfsm.StopReason} == {
        "response",
        "user_stop",
        "budget_exceeded",
        "max_turns",
        "max_function_calls",
        "context_overflow",
        "error",
        "invalid_output",
        "guard",
        "worker_lost",
    }


def test_import_has_no_side_effects() -> None:
    """Importing agentfsm configures no logging and loads no test server."""
    code = (
        "import sys, logging, structlog; import agentfsm; "
        "assert not structlog.is_configured(); "
        "assert not logging.getLogger().handlers; "
        "assert 'agentfsm.testing' not in sys.modules; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "ok", done.stderr
