"""Agents as tools: one agent's run as a tool call of another (``Agent.as_tool``).

The child is a first-class run: its own chat, ``f"{parent chat}/{call id}"``, stable across a
resume; the parent's user; stopped at once when the parent stops (a stop cancels the
tool call, and a cancelled run saves itself stopped); what it spends charged to the parent's
totals and budget step by step; its events forwarded to the parent's hooks with
``parent_chat_id`` and ``depth``; with a store, saved and resumed like any chat, and a parent
resumed after a crash picks up the child where it was instead of starting it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

from agentfsm._child import CHILD, ChildRun
from agentfsm.budget import Budget
from agentfsm.errors import AgentFSMError, ConfigurationError, SubAgentError
from agentfsm.messages import AssistantMessage, UserMessage
from agentfsm.response import AgentResponse
from agentfsm.state import Conversation, StopReason
from agentfsm.tools import Tool, ToolContext, format_result
from agentfsm.wiring import Wiring

__all__ = ["agent_tool", "child_chat_id", "load_children"]

_NO_OUTPUT_TYPE: Any = object()


class _Store(Protocol):
    async def load(self, chat_id: str) -> Conversation | None: ...


class _Agent(Protocol):
    """What running an agent as a tool needs of it."""

    name: str
    wiring: Wiring

    @property
    def store(self) -> _Store | None: ...

    @property
    def send_message(self) -> Callable[..., Awaitable[AgentResponse[Any]]]: ...

    async def resume(self, chat_id: str, *, user_id: str | None = None) -> Conversation: ...

    def response(
        self, conversation: Conversation, output_type: Any = ...
    ) -> AgentResponse[Any]: ...


def child_chat_id(parent_chat_id: str, call_id: str) -> str:
    """The chat of the sub-agent run that answers tool call ``call_id`` of ``parent_chat_id``."""
    return f"{parent_chat_id}/{call_id}"


def agent_tool(
    agent: _Agent,
    *,
    name: str,
    description: str,
    output_type: Any = None,
    input_type: Any = None,
    timeout: float | None = None,
) -> Tool:
    """The :class:`Tool` that runs ``agent`` (see ``Agent.as_tool``)."""
    if output_type is None:
        output_type = _NO_OUTPUT_TYPE

    async def run_agent(input: Any, context: ToolContext) -> Any:
        return await _run_child(agent, name, _message(input), context, output_type)

    run_agent.__annotations__ = {
        "input": str if input_type is None else input_type,
        "context": ToolContext,
        "return": Any,
    }
    what = "in plain words" if input_type is None else "as the schema asks"
    run_agent.__doc__ = f"Args:\n    input: the request for this agent, {what}."
    try:
        return Tool.from_function(run_agent, name=name, description=description, timeout=timeout)
    except AgentFSMError:
        raise
    except Exception as error:  # a name or type the tool builder refuses, said plainly
        raise ConfigurationError(f"as_tool({name!r}): {error}") from error


def _message(value: Any) -> str:
    """The user message a child run receives: the model's text, or the typed input as JSON."""
    return value if isinstance(value, str) else format_result(value)


async def _run_child(
    agent: _Agent, name: str, message: str, context: ToolContext, output_type: Any
) -> Any:
    """Run (or pick up) the child chat of ``context.call_id`` and return its answer."""
    parent_events = context.events
    if context.call_id is None or parent_events is None:
        raise ConfigurationError(
            f"the agent tool {name!r} runs inside an agent's run (it needs the call's id)"
        )
    chat_id = child_chat_id(context.chat_id, context.call_id)
    typed = {} if output_type is _NO_OUTPUT_TYPE else {"output_type": output_type}
    store = agent.store
    stored = await store.load(chat_id) if store is not None else None
    budget = _budget(agent.wiring, stored, context.budget_left)
    link = ChildRun(chat_id, context.chat_id, parent_events, context.charge)
    token = CHILD.set(link)
    try:
        if stored is not None and not stored.finished:
            # A crash cut this child mid-run: finish it instead of starting it again.
            finished = await agent.resume(chat_id, user_id=context.user_id)
            response = _response(agent, finished, output_type)
        elif stored is not None and _answers(stored, message):
            # It finished before the caller recorded its result: the same answer again.
            response = _response(agent, stored, output_type)
        else:
            response = await agent.send_message(
                message,
                chat_id=chat_id,
                user_id=context.user_id,
                conversation=stored,
                budget_control=budget,
                **typed,
            )
    finally:
        CHILD.reset(token)
    if response.stop_reason is not StopReason.RESPONSE:
        raise SubAgentError(name, response)
    return response.output


def _budget(wiring: Wiring, stored: Conversation | None, left: Decimal | None) -> Budget | None:
    """The child run's budget: what the caller has left, or the child agent's own budget if
    that leaves less (a child without pricing counts no cost, so it gets none)."""
    if left is None or not wiring.priced:
        return None
    spent = stored.cost if stored is not None else Decimal(0)
    own = wiring.limits.budget
    if own is not None and own.max_budget_for_this_chat - spent <= left:
        return own
    return Budget(max_budget_for_this_chat=spent + left)


def _response(agent: _Agent, conversation: Conversation, output_type: Any) -> AgentResponse[Any]:
    if output_type is _NO_OUTPUT_TYPE:
        return agent.response(conversation)
    return agent.response(conversation, output_type)


def _answers(conversation: Conversation, message: str) -> bool:
    """Whether ``conversation``'s last run was started by ``message`` (and so answers it)."""
    messages = conversation.messages
    if not 0 <= conversation.run_start < len(messages):
        return False
    first = messages[conversation.run_start]
    return isinstance(first, UserMessage) and first.content == message


async def load_children(store: _Store, conversation: Conversation) -> dict[str, Conversation]:
    """Every stored sub-agent chat of ``conversation``, and theirs, by chat id.

    A child's chat id is the parent's chat id and the tool call's id (:func:`child_chat_id`),
    so this looks up each tool call of the conversation (one ``load`` per call): the
    mapping ``run_mermaid(conversation, children=...)`` draws nested.
    """
    found: dict[str, Conversation] = {}
    pending = [conversation]
    while pending:
        current = pending.pop()
        for message in current.messages:
            if not isinstance(message, AssistantMessage):
                continue
            for call in message.tool_calls:
                chat_id = child_chat_id(current.chat_id, call.id)
                if chat_id in found:
                    continue
                child = await store.load(chat_id)
                if child is not None:
                    found[chat_id] = child
                    pending.append(child)
    return found
