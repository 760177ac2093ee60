"""Writes the golden payload of the CURRENT schema version (run once per schema bump).

Never regenerate the file of a released version: it is what old stores hold.

    python tests/golden/generate.py

Schema 2 typed the image, audio and file content parts, so its conversation's first message
carries one of each besides its text, and a part with a field agentfsm does not model, which
stays raw.
"""

from __future__ import annotations

import asyncio
import io
import struct
import wave
import zlib
from pathlib import Path

from agentfsm import AsyncOpenAISimpleAgent, Audio, File, Image, dumps, tool
from agentfsm.state import SCHEMA_VERSION
from agentfsm.testing import ScriptedOpenAIServer, call, text, tool_calls


@tool
def get_weather(city: str) -> str:
    """Weather."""
    return f"Sunny in {city}"


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(b"\x00" + bytes(width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes(bytes(8))
    return buffer.getvalue()


async def main() -> None:
    ticks = iter(range(1000))
    script = [
        tool_calls(call("get_weather", {"city": "Tokyo"}, id="call_1")),
        text("Sunny in Tokyo.", usage={"prompt_tokens": 40, "completion_tokens": 5}),
    ]
    message = [
        "weather in tokyo? (a photo, a voice note and the itinerary attached)",
        Image.from_bytes(_png(3, 2), detail="low"),
        Audio.from_bytes(_wav()),
        File.from_bytes(b"%PDF-1.4\n%%EOF\n", "itinerary.pdf"),
        {
            "type": "image_url",
            "image_url": {"url": "https://example.com/tokyo-map.png"},
            "cache_control": {"type": "ephemeral"},
        },
    ]
    async with (
        ScriptedOpenAIServer(script) as server,
        AsyncOpenAISimpleAgent(
            model="m",
            api_key="k",
            base_url=server.base_url,
            tool_registry=[get_weather],
            pricing={"input_per_million": "0.15", "output_per_million": "0.60"},
            clock=lambda: 1_790_000_000.0 + next(ticks),
        ) as agent,
    ):
        response = await agent.send_message(message, user_id="u1", chat_id="c1")
    target = Path(__file__).with_name(f"conversation_v{SCHEMA_VERSION}.json")
    target.write_text(dumps(response.conversation, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
