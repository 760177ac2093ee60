"""The link between a run and the sub-agent runs its tools start (``Agent.as_tool``).

A tool that runs another agent sets :data:`CHILD` for the child's chat while the child runs;
the child agent reads it when it builds each step, so its events reach the calling run's
hooks and what it spends is charged to the calling run's tool batch.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from decimal import Decimal

import attrs

from agentfsm.hooks import Emitter
from agentfsm.state import Conversation
from agentfsm.usage import Usage

__all__ = ["CHILD", "ChildRun", "link_of"]


@attrs.frozen
class ChildRun:
    """A sub-agent run as its caller sees it.

    Attributes:
        chat_id: the child's chat (only a run of this chat is linked).
        parent_chat_id: the chat of the run whose tool started it.
        events: where the calling run's events go.
        charge: counts what the child spent in the calling run's tool batch.
    """

    chat_id: str
    parent_chat_id: str
    events: Emitter
    charge: Callable[[Usage, Decimal], None]


CHILD: ContextVar[ChildRun | None] = ContextVar("agentfsm_child_run", default=None)
"""The sub-agent run the current task is running, if any (set by ``Agent.as_tool``)."""


def link_of(conversation: Conversation) -> ChildRun | None:
    """The link of ``conversation``'s run if it is the sub-agent run the current task
    started; any other run (a different chat) is not linked."""
    link = CHILD.get()
    return link if link is not None and link.chat_id == conversation.chat_id else None
