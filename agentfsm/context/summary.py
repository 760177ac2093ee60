"""The ``summary_dropping`` request: the messages that fold dropped messages into the summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentfsm.messages import AssistantMessage, Message, TextPart, ToolMessage

__all__ = ["SUMMARY_INSTRUCTIONS", "summary_request", "transcript_line"]

SUMMARY_INSTRUCTIONS = (
    "You keep the running summary of a conversation whose oldest messages no longer fit in "
    "the model's context. Rewrite the summary so far with the new messages folded in. Keep "
    "every fact, name, number, decision, open question and tool result the conversation may "
    "need later; drop pleasantries. Answer with the summary only."
)
_TRANSCRIPT_CHARS = 4000  # per message: a summary request must not overflow in turn


def summary_request(
    messages: Sequence[Message], indices: Sequence[int], summary: str | None
) -> list[dict[str, Any]]:
    """The chat request that asks a model for ``summary`` with ``messages[indices]`` folded in."""
    transcript = "\n".join(transcript_line(messages[i]) for i in indices)
    previous = summary or "(none yet)"
    return [
        {"role": "system", "content": SUMMARY_INSTRUCTIONS},
        {
            "role": "user",
            "content": f"Summary so far:\n{previous}\n\nMessages to fold in:\n{transcript}",
        },
    ]


def transcript_line(message: Message) -> str:
    """``message`` as one line of a transcript (``"assistant: …"``), long texts cut in the
    middle; non-text parts appear as ``[image]``, ``[audio]``…"""
    if isinstance(message, ToolMessage):
        who, text = f"tool {message.tool_name or ''} result".replace("  ", " "), message.content
    elif isinstance(message, AssistantMessage):
        calls = ", ".join(f"{c.name}({c.arguments})" for c in message.tool_calls)
        who, text = "assistant", (message.content or "") + (f" [calls {calls}]" if calls else "")
    else:
        content = message.content
        who = message.role
        text = (
            content
            if isinstance(content, str)
            else " ".join(p.text if isinstance(p, TextPart) else f"[{_label(p)}]" for p in content)
        )
    if len(text) > _TRANSCRIPT_CHARS:
        text = text[: _TRANSCRIPT_CHARS // 2] + " […] " + text[-_TRANSCRIPT_CHARS // 2 :]
    return f"{who}: {text}"


def _label(part: Any) -> str:
    """A non-text part's kind: its wire ``type`` for raw parts, else its own ``type``."""
    data = getattr(part, "data", None)
    if isinstance(data, dict) and isinstance(data.get("type"), str):
        return str(data["type"])
    kind = getattr(part, "type", None)
    return kind if isinstance(kind, str) else "part"
