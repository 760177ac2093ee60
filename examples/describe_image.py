"""Ask a model about an image (a local file, or a generated one).

Offline (default): the scripted server answers, and prints what it received. For real: set
OPENAI_API_KEY (and optionally OPENAI_BASE_URL, MODEL) and pass an image path.

    python examples/describe_image.py [path/to/picture.png]
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys
import zlib

from agentfsm import AsyncOpenAIMultimodalAgent, Image, TokenEvent


def red_square_png(size: int = 32) -> bytes:
    """A small red PNG, made without any imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def describe(agent: AsyncOpenAIMultimodalAgent, image: Image) -> None:
    print(f"image: {image.mime}, {image.width}x{image.height}, ~{image.tokens()} tokens")
    async for event in agent.stream_message(["Describe this image in one sentence.", image]):
        if isinstance(event, TokenEvent):
            print(event.delta, end="", flush=True)
    print()


async def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else None
    image = Image.from_path(path) if path else Image.from_bytes(red_square_png(), "image/png")
    if os.environ.get("OPENAI_API_KEY"):
        model = os.environ.get("MODEL", "gpt-4o-mini")
        async with AsyncOpenAIMultimodalAgent(model=model, stream=True) as agent:
            await describe(agent, image)
        return

    from agentfsm.testing import RecordedRequest, Reply, ScriptedOpenAIServer, text

    def fake_vision(request: RecordedRequest) -> Reply:
        parts = request.messages[-1]["content"]
        kinds = [p["type"] for p in parts]
        return text(f"(scripted) I received {len(parts)} parts: {', '.join(kinds)}.")

    async with (
        ScriptedOpenAIServer(fake_vision) as server,
        AsyncOpenAIMultimodalAgent(
            model="scripted-model", api_key="offline", base_url=server.base_url, stream=True
        ) as agent,
    ):
        await describe(agent, image)


if __name__ == "__main__":
    asyncio.run(main())
