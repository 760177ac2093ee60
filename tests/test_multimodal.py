"""The multimodal agent: images, audio and files in user messages, over real HTTP."""

from __future__ import annotations

import base64
import functools
import io
import struct
import wave
import zlib
from pathlib import Path
from typing import Any

import pytest

from agentfsm import (
    AsyncOpenAIMultimodalAgent,
    Audio,
    File,
    Image,
    MediaError,
    TokenEvent,
    dumps,
    loads,
)
from agentfsm.testing import ScriptedOpenAIServer, text

from .conftest import AgentFactory


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 80)
    return out.getvalue()


@pytest.fixture
def make_mm(make_agent: AgentFactory) -> AgentFactory:
    """Builds multimodal agents pointed at the scripted server (closed after the test)."""
    return functools.partial(make_agent, AsyncOpenAIMultimodalAgent)


async def test_parts_become_openai_content_parts_exactly(
    server: ScriptedOpenAIServer, make_mm: Any, tmp_path: Path
) -> None:
    """Text, a local image, a remote image, audio and a file are sent as the API expects."""
    png = _png(4, 3)
    (tmp_path / "cat.png").write_bytes(png)
    wav = _wav()
    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    server.add(text("A tiny black picture."))
    response = await make_mm().send_message(
        [
            "What is in these?",
            Image.from_path(tmp_path / "cat.png", detail="low"),
            Image.from_url("https://example.com/dog.jpg"),
            Audio.from_bytes(wav),
            File.from_bytes(pdf, "report.pdf"),
        ]
    )
    b64 = base64.b64encode
    assert server.requests[0].messages[-1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in these?"},
            {
                "type": "image_url",
                "image_url": {"url": f"data:image/png;base64,{b64(png).decode()}", "detail": "low"},
            },
            {"type": "image_url", "image_url": {"url": "https://example.com/dog.jpg"}},
            {"type": "input_audio", "input_audio": {"data": b64(wav).decode(), "format": "wav"}},
            {
                "type": "file",
                "file": {
                    "filename": "report.pdf",
                    "file_data": f"data:application/pdf;base64,{b64(pdf).decode()}",
                },
            },
        ],
    }
    assert response.output == "A tiny black picture."
    assert response.history[0] == server.requests[0].messages[-1]


async def test_content_parts_round_trip_through_history_and_dumps(
    server: ScriptedOpenAIServer, make_mm: Any
) -> None:
    """A history with content parts comes back unchanged via history= and via dumps/loads."""
    server.add(text("first"), text("second"))
    agent = make_mm()
    first = await agent.send_message(["look", Image.from_bytes(_png(2, 2))])
    assert loads(dumps(first.conversation)) == first.conversation
    second = await agent.send_message("and now?", history=first.history)
    assert server.requests[1].messages[:2] == first.history
    assert second.history[:2] == first.history


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda p: Image.from_path(p / "missing.png"), "no such file"),
        (lambda p: Image.from_bytes(_png(2, 2), "image/jpeg"), "declared image/jpeg"),
        (lambda p: Image.from_bytes(b"%PDF-1.4 not an image"), "unsupported image type"),
        (lambda p: Image.from_bytes(_png(64, 64), max_bytes=20), "too large"),
        (lambda p: Audio.from_bytes(b"not audio at all"), "audio"),
    ],
)
def test_bad_media_is_refused_before_any_request(build: Any, fragment: str, tmp_path: Path) -> None:
    """Missing files, mis-declared or unsupported types and oversize images fail at once."""
    with pytest.raises(MediaError) as info:
        build(tmp_path)
    assert fragment in str(info.value)


async def test_a_multimodal_agent_can_stream(server: ScriptedOpenAIServer, make_mm: Any) -> None:
    """stream=True: the image question streams its answer token by token."""
    server.add(text("It shows a square.", chunk_size=3))
    agent = make_mm(stream=True)
    events = [e async for e in agent.stream_message(["What?", Image.from_bytes(_png(3, 3))])]
    tokens = "".join(e.delta for e in events if isinstance(e, TokenEvent))
    assert tokens == "It shows a square."
    assert server.requests[0].body["stream"] is True
