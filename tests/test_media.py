"""Images, audio and files: header sniffing, checks, token costs and OpenAI content parts."""

from __future__ import annotations

import base64
import contextlib
import io
import struct
import wave
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfsm import errors, media
from agentfsm.errors import InvalidInputError
from agentfsm.media import Audio, File, Image, MediaError, image_size, image_tokens
from agentfsm.messages import (
    AudioPart,
    FilePart,
    ImagePart,
    TextPart,
    UserMessage,
    message_to_openai,
    part_from_openai,
)

# --------------------------------------------------------------------------- generated media

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png(width: int, height: int, *, pixels: bool = True) -> bytes:
    """A valid 8-bit greyscale PNG; with ``pixels=False`` only its header (enough for sizes)."""
    header = PNG_SIGNATURE + _png_chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    )
    if not pixels:
        return header
    rows = b"".join(b"\x00" + bytes(width) for _ in range(height))  # filter byte + pixels
    return header + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b"")


def _jpeg_segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def jpeg(width: int, height: int, *, sof: int = 0xC0, app_size: int = 0) -> bytes:
    """A JPEG's marker structure around a frame header of the given size (no real scan data).

    Before the frame header come segments a careless parser trips on: an APP1 whose body
    holds bytes that look like a frame header, 0xFF fill bytes, and a DHT (0xC4, a marker in
    the SOF range that is not one).
    """
    decoy = b"\xff\xc0\x00\x11\x08\x00\x01\x00\x01"
    return (
        b"\xff\xd8"
        + _jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + _jpeg_segment(0xE1, b"Exif\x00\x00" + decoy * (1 + app_size // len(decoy)))
        + _jpeg_segment(0xFE, b"a comment")
        + b"\xff\xff\xff"  # fill bytes before the next marker's own 0xFF
        + _jpeg_segment(0xDB, bytes(65))
        + _jpeg_segment(0xC4, struct.pack(">BHH", 8, 1, 1) + bytes(17))
        + _jpeg_segment(sof, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
        + _jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + b"\x12\x34\xff\x00\x56"
        + b"\xff\xd9"
    )


def gif(width: int, height: int) -> bytes:
    """A GIF89a logical screen descriptor and trailer."""
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b";"


def _webp(kind: bytes, payload: bytes) -> bytes:
    chunk = kind + struct.pack("<I", len(payload)) + payload + bytes(len(payload) % 2)
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def webp_vp8(width: int, height: int) -> bytes:
    """A lossy WebP: key-frame tag, start code, 14-bit sizes."""
    return _webp(
        b"VP8 ", b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", width, height) + bytes(10)
    )


def webp_vp8l(width: int, height: int) -> bytes:
    """A lossless WebP: signature byte, then width - 1 and height - 1 in 14 bits each."""
    return _webp(b"VP8L", b"\x2f" + struct.pack("<I", (width - 1) | (height - 1) << 14) + bytes(5))


def webp_vp8x(width: int, height: int) -> bytes:
    """An extended WebP: flags, then the canvas width - 1 and height - 1 in 24 bits each."""
    sizes = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return _webp(b"VP8X", b"\x10\x00\x00\x00" + sizes)


def wav() -> bytes:
    """A tenth of a second of 8 kHz mono silence."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(1600))
    return buffer.getvalue()


MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)  # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz


def _syncsafe(size: int) -> bytes:
    return bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))


def id3(body: bytes = b"TIT2\x00\x00\x00\x06\x00\x00\x03Song") -> bytes:
    """An ID3v2.4 tag holding ``body``."""
    return b"ID3\x04\x00\x00" + _syncsafe(len(body)) + body


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


IMAGES: list[tuple[str, bytes, tuple[str, int, int]]] = [
    ("png", png(3, 2), ("image/png", 3, 2)),
    ("png header only", png(70_000, 1, pixels=False), ("image/png", 70_000, 1)),
    ("jpeg baseline", jpeg(1920, 1080), ("image/jpeg", 1920, 1080)),
    ("jpeg progressive", jpeg(640, 480, sof=0xC2), ("image/jpeg", 640, 480)),
    ("jpeg large APP1", jpeg(33, 4000, app_size=60_000), ("image/jpeg", 33, 4000)),
    ("gif", gif(640, 480), ("image/gif", 640, 480)),
    ("webp VP8", webp_vp8(400, 300), ("image/webp", 400, 300)),
    ("webp VP8L", webp_vp8l(16_384, 1), ("image/webp", 16_384, 1)),
    ("webp VP8X", webp_vp8x(20_000, 10_000), ("image/webp", 20_000, 10_000)),
]


# --------------------------------------------------------------------------- image_size


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in IMAGES], ids=[n for n, *_ in IMAGES]
)
def test_image_size_reads_each_format(data: bytes, expected: tuple[str, int, int]) -> None:
    """The MIME type, width and height come from each format's header."""
    assert image_size(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"just some text",
        PNG_SIGNATURE,
        png(3, 2)[:20],
        png(0, 2, pixels=False),
        PNG_SIGNATURE + _png_chunk(b"tEXt", b"k\x00v") + _png_chunk(b"IHDR", bytes(13)),
        b"\xff\xd8\xff",
        jpeg(10, 10)[:-40],
        b"\xff\xd8" + _jpeg_segment(0xDA, b"\x00\x00") + _jpeg_segment(0xC0, bytes(15)),
        b"\xff\xd8\xff\xd9",
        b"\xff\xd8\xff\xe0\x00\x01",
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00x",
        b"\xff\xd8\xff\x00\x00",
        jpeg(0, 10),
        b"GIF89a\x01",
        b"RIFF\x00\x00\x00\x00WEBP",
        _webp(b"ALPH", bytes(20)),
        _webp(b"VP8 ", b"\x11\x02\x00\x9d\x01\x2a" + bytes(14)),
        _webp(b"VP8 ", b"\x10\x02\x00\x00\x00\x00" + bytes(14)),
        _webp(b"VP8L", b"\x00" + bytes(9)),
    ],
)
def test_image_size_is_none_for_non_images_and_broken_headers(data: bytes) -> None:
    """Unknown, truncated or corrupt headers give None, not an exception."""
    assert image_size(data) is None


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in IMAGES], ids=[n for n, *_ in IMAGES]
)
def test_every_truncation_gives_none_or_the_true_size(
    data: bytes, expected: tuple[str, int, int]
) -> None:
    """Cut anywhere, an image's size is either unreadable or read right; never an exception."""
    for end in range(len(data) + 1):
        assert image_size(data[:end]) in (None, expected)


MAGIC_PREFIXES = [
    b"",
    PNG_SIGNATURE,
    PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR",
    b"\xff\xd8\xff",
    b"GIF89a",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"RIFF\x00\x00\x00\x00WEBPVP8X",
    b"RIFF\x00\x00\x00\x00WAVE",
    b"ID3",
    b"\xff\xfb",
    b"%PDF-",
]


@given(st.sampled_from(MAGIC_PREFIXES), st.binary(max_size=200))
def test_image_size_never_raises(prefix: bytes, rest: bytes) -> None:
    """Any bytes, even behind a real magic number, give a positive size or None."""
    result = image_size(prefix + rest)
    assert result is None or (result[1] > 0 and result[2] > 0)


@given(st.sampled_from(MAGIC_PREFIXES), st.binary(max_size=200))
def test_constructors_raise_only_media_errors_on_garbage(prefix: bytes, rest: bytes) -> None:
    """Image, Audio and File built from any bytes either succeed or raise MediaError."""
    data = prefix + rest
    for build in (Image.from_bytes, Audio.from_bytes, lambda d: File.from_bytes(d, "x.pdf")):
        with contextlib.suppress(MediaError):
            build(data)


# --------------------------------------------------------------------------- image_tokens


@pytest.mark.parametrize(
    ("width", "height", "detail", "tokens"),
    [
        (1024, 1024, "high", 765),  # -> 768 x 768: 2 x 2 tiles
        (2048, 4096, "high", 1105),  # -> 1024 x 2048 -> 768 x 1536: 2 x 3 tiles
        (4096, 8192, "high", 1105),  # -> 1024 x 2048 -> 768 x 1536
        (512, 512, "high", 255),  # one tile
        (513, 512, "high", 425),  # two tiles
        (100, 100, "high", 255),  # never enlarged
        (1920, 1080, "high", 1105),  # -> 1365 x 768: 3 x 2 tiles
        (768, 2048, "high", 1445),  # the most tiles: 2 x 4
        (1, 100_000, "high", 765),  # -> 1 x 2048 (rounded up to a pixel): 1 x 4 tiles
        (1024, 1024, "auto", 765),
        (4096, 8192, "low", 85),
        (1, 1, "low", 85),
    ],
)
def test_image_tokens_known_values(width: int, height: int, detail: str, tokens: int) -> None:
    """The tile formula gives OpenAI's published figures."""
    assert image_tokens(width, height, detail) == tokens


def test_image_tokens_by_model() -> None:
    """gpt-4o-mini bills the same tiles at its own rates; unknown models cost like gpt-4o."""
    assert image_tokens(1024, 1024, "high", model="gpt-4o-mini") == 2833 + 4 * 5667
    assert image_tokens(1024, 1024, "low", model="gpt-4o-mini-2024-07-18") == 2833
    assert image_tokens(1024, 1024, "high", model="openai/gpt-4o-mini") == 2833 + 4 * 5667
    assert image_tokens(1024, 1024, "high", model="gpt-4o") == 765
    assert image_tokens(1024, 1024, "high", model="llama-3.2-vision") == 765


def test_image_tokens_rejects_bad_input() -> None:
    """A size that is not positive or an unknown detail is a MediaError."""
    with pytest.raises(MediaError) as error:
        image_tokens(0, 10)
    assert str(error.value) == "an image size must be positive, got 0 x 10"
    with pytest.raises(MediaError) as error:
        image_tokens(10, 10, "medium")
    assert str(error.value) == "detail must be 'auto', 'low' or 'high', got 'medium'"


sides = st.integers(min_value=1, max_value=20_000)


@given(sides, sides)
def test_low_detail_is_always_85(width: int, height: int) -> None:
    """Low detail costs 85 tokens, whatever the size."""
    assert image_tokens(width, height, "low") == 85


@given(sides, sides, st.integers(min_value=1, max_value=50))
def test_tokens_grow_with_size(width: int, height: int, factor: int) -> None:
    """Enlarging an image (same aspect ratio) never makes it cheaper."""
    assert image_tokens(width * factor, height * factor) >= image_tokens(width, height)


@given(sides, sides)
def test_tokens_are_whole_tiles_within_bounds(width: int, height: int) -> None:
    """High detail costs 85 plus 170 per tile, from 1 tile up to 2 x 4 tiles."""
    tokens = image_tokens(width, height, "high")
    assert (tokens - 85) % 170 == 0
    assert 255 <= tokens <= 85 + 170 * 8
    assert image_tokens(width, height, "auto") == tokens


# --------------------------------------------------------------------------- Image


def test_image_from_bytes_is_a_data_url_with_its_size() -> None:
    """Bytes become a base64 data URL of the sniffed type, with the size from the header."""
    data = png(3, 2)
    image = Image.from_bytes(data)
    assert image == Image(
        f"data:image/png;base64,{b64(data)}", "auto", mime="image/png", width=3, height=2
    )
    assert image.to_openai() == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{b64(data)}"},
    }
    assert base64.b64decode(image.url.partition(",")[2]) == data


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in IMAGES], ids=[n for n, *_ in IMAGES]
)
def test_image_from_bytes_accepts_each_format(data: bytes, expected: tuple[str, int, int]) -> None:
    """Every supported format is accepted, typed and sized from its bytes."""
    mime, width, height = expected
    image = Image.from_bytes(data, mime, detail="high")
    assert (image.mime, image.width, image.height) == (mime, width, height)
    assert image.to_openai() == {
        "type": "image_url",
        "image_url": {"url": f"data:{mime};base64,{b64(data)}", "detail": "high"},
    }


def test_image_from_path_reads_the_file_now(tmp_path: Path) -> None:
    """A file becomes an inline image; its type comes from the bytes, not the name."""
    data = jpeg(800, 600)
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    image = Image.from_path(path, detail="low")
    assert image.to_openai() == {
        "type": "image_url",
        "image_url": {"url": f"data:image/jpeg;base64,{b64(data)}", "detail": "low"},
    }
    assert (image.mime, image.width, image.height) == ("image/jpeg", 800, 600)
    assert Image.from_path(str(path), detail="low") == image


def test_image_from_path_missing_file(tmp_path: Path) -> None:
    """A missing file is a MediaError naming the path, raised when the image is built."""
    path = tmp_path / "nope.png"
    with pytest.raises(MediaError) as error:
        Image.from_path(path)
    assert str(error.value) == f"{path}: no such file"
    assert (error.value.path, error.value.reason) == (str(path), "no such file")
    assert isinstance(error.value, InvalidInputError)
    assert isinstance(error.value, ValueError)


def test_image_from_path_directory(tmp_path: Path) -> None:
    """A directory is not an image file."""
    with pytest.raises(MediaError) as error:
        Image.from_path(tmp_path)
    assert str(error.value) == f"{tmp_path}: is a directory, not a file"


def test_image_from_path_too_large(tmp_path: Path) -> None:
    """A file over max_bytes is refused with both sizes, before it is read."""
    path = tmp_path / "big.png"
    path.write_bytes(png(4, 4) + bytes(3000))
    size = path.stat().st_size
    with pytest.raises(MediaError) as error:
        Image.from_path(path, max_bytes=2048)
    assert str(error.value) == (
        f"{path}: too large: {size:,} bytes ({size / 1024:.1f} KiB), "
        "more than max_bytes=2,048 (2.0 KiB)"
    )


def test_image_default_limit_is_20_mib() -> None:
    """Images are limited to 20 MiB unless the caller says otherwise."""
    data = png(1, 1) + bytes(20 * 1024 * 1024)
    with pytest.raises(MediaError) as error:
        Image.from_bytes(data)
    assert str(error.value) == (
        f"too large: {len(data):,} bytes (20.0 MiB), more than max_bytes=20,971,520 (20.0 MiB)"
    )
    assert Image.from_bytes(data, max_bytes=len(data)).width == 1


def test_image_empty_bytes() -> None:
    """No bytes is no image."""
    with pytest.raises(MediaError) as error:
        Image.from_bytes(b"")
    assert str(error.value) == "empty: 0 bytes"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"%PDF-1.7\n",
            "unsupported image type (the bytes are PDF); supported: PNG, JPEG, GIF, WebP",
        ),
        (
            b"BM" + bytes(60),
            "unsupported image type (the bytes are BMP); supported: PNG, JPEG, GIF, WebP",
        ),
        (
            b"\x00\x00\x00\x1cftypheic" + bytes(20),
            "unsupported image type (the bytes are HEIC); supported: PNG, JPEG, GIF, WebP",
        ),
        (
            b'<svg xmlns="x"/>',
            "unsupported image type (the bytes are SVG/XML); supported: PNG, JPEG, GIF, WebP",
        ),
        (wav(), "unsupported image type (the bytes are WAV); supported: PNG, JPEG, GIF, WebP"),
        (b"hello", "unsupported image type; supported: PNG, JPEG, GIF, WebP"),
    ],
)
def test_image_unsupported_type(data: bytes, message: str) -> None:
    """Bytes of another type are refused, naming the type when it is recognised."""
    with pytest.raises(MediaError) as error:
        Image.from_bytes(data)
    assert str(error.value) == message


def test_image_from_path_unsupported_type_names_the_path(tmp_path: Path) -> None:
    """The unsupported-type error of a file names the file."""
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(MediaError) as error:
        Image.from_path(path)
    assert str(error.value) == f"{path}: unsupported image type; supported: PNG, JPEG, GIF, WebP"
    assert error.value.path == str(path)


def test_image_declared_type_must_match_the_bytes() -> None:
    """A declared MIME type the bytes contradict is refused; common aliases are accepted."""
    with pytest.raises(MediaError) as error:
        Image.from_bytes(jpeg(10, 10), "image/png")
    assert str(error.value) == "declared image/png but the bytes are JPEG"
    assert Image.from_bytes(jpeg(10, 10), "image/jpg").mime == "image/jpeg"
    assert Image.from_bytes(png(1, 1), "IMAGE/PNG; charset=binary").mime == "image/png"
    with pytest.raises(MediaError) as error:
        Image.from_bytes(png(1, 1), "image/bmp")
    assert str(error.value) == "unsupported image type 'image/bmp'; supported: PNG, JPEG, GIF, WebP"


def test_image_with_unreadable_header() -> None:
    """A known magic number with a broken header is reported as truncated or corrupt."""
    with pytest.raises(MediaError) as error:
        Image.from_bytes(PNG_SIGNATURE + b"\x00\x00")
    assert str(error.value) == "truncated or corrupt PNG: its size cannot be read"


def test_image_from_bytes_rejects_text() -> None:
    """A str (a URL or base64 text by mistake) is not bytes."""
    with pytest.raises(MediaError) as error:
        Image.from_bytes("https://example.com/a.png")  # type: ignore[arg-type]
    assert str(error.value) == "image data must be bytes, got str"


def test_image_from_https_url_is_not_fetched() -> None:
    """A remote URL is kept as given, with no type or size."""
    image = Image.from_url("https://example.com/cat.png?x=1", detail="high")
    assert image == Image("https://example.com/cat.png?x=1", "high")
    assert image.to_openai() == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/cat.png?x=1", "detail": "high"},
    }
    assert Image.from_url("HTTP://example.com/a.gif").to_openai() == {
        "type": "image_url",
        "image_url": {"url": "HTTP://example.com/a.gif"},
    }


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "ftp://example.com/cat.png",
            "unsupported image URL 'ftp://example.com/cat.png': scheme 'ftp' (expected https, "
            "http or data); for a local file use Image.from_path",
        ),
        (
            "file:///tmp/cat.png",
            "unsupported image URL 'file:///tmp/cat.png': scheme 'file' (expected https, "
            "http or data); for a local file use Image.from_path",
        ),
        (
            "/tmp/cat.png",
            "unsupported image URL '/tmp/cat.png': no scheme (expected https, "
            "http or data); for a local file use Image.from_path",
        ),
        ("https:///cat.png", "image URL 'https:///cat.png' has no host"),
    ],
)
def test_image_from_url_bad_scheme(url: str, message: str) -> None:
    """Only http, https and data URLs are images a server can read."""
    with pytest.raises(MediaError) as error:
        Image.from_url(url)
    assert str(error.value).startswith(message)


def test_image_from_data_url_is_checked_like_bytes() -> None:
    """A data URL is decoded, checked and re-encoded; its declared type must match."""
    data = gif(7, 9)
    split = b64(data)[:8] + "\n" + b64(data)[8:]
    assert Image.from_url(f"data:image/gif;base64,{split}", detail="low") == Image.from_bytes(
        data, detail="low"
    )
    with pytest.raises(MediaError) as error:
        Image.from_url(f"data:image/png;base64,{b64(data)}")
    assert str(error.value) == "declared image/png but the bytes are GIF"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png;base64", "malformed data URL: no ',' before the data"),
        (
            "data:image/png,rawdata",
            "a data URL must be base64-encoded ('data:<type>;base64,<data>')",
        ),
        (
            "data:image/png;base64,iVBOR*==",
            "a data URL whose data is not valid base64 (",  # then binascii's words
        ),
    ],
)
def test_image_from_bad_data_url(url: str, message: str) -> None:
    """A data URL that is not base64 image data is refused."""
    with pytest.raises(MediaError) as error:
        Image.from_url(url)
    assert str(error.value).startswith(message)


def test_image_from_openai_round_trips() -> None:
    """An image_url content part reads back into the same Image."""
    local = Image.from_bytes(webp_vp8l(30, 20), detail="high")
    remote = Image.from_url("https://example.com/a.jpg")
    assert Image.from_openai(local.to_openai()) == local
    assert Image.from_openai(remote.to_openai()) == remote
    old_shape = {"type": "image_url", "image_url": "https://example.com/a.jpg"}
    assert Image.from_openai(old_shape) == remote
    with pytest.raises(MediaError) as error:
        Image.from_openai({"type": "input_audio", "input_audio": {}})
    assert str(error.value) == "not an OpenAI image_url content part"
    with pytest.raises(MediaError) as error:
        Image.from_openai({"type": "image_url", "image_url": {"url": "x", "detail": "max"}})
    assert str(error.value) == "detail must be 'auto', 'low' or 'high', got 'max'"


def test_image_detail_is_checked() -> None:
    """An unknown detail is refused by every constructor."""
    with pytest.raises(MediaError):
        Image("https://example.com/a.png", "ultra")  # type: ignore[arg-type]
    with pytest.raises(MediaError):
        Image.from_url("https://example.com/a.png", detail="ultra")  # type: ignore[arg-type]


def test_image_tokens_from_known_and_unknown_sizes() -> None:
    """Local images cost by their size; remote ones are counted as 1024 x 1024."""
    assert Image.from_bytes(png(512, 512, pixels=False)).tokens() == 255
    assert Image.from_bytes(png(2048, 4096, pixels=False), detail="high").tokens() == 1105
    assert Image.from_bytes(png(2048, 4096, pixels=False), detail="low").tokens() == 85
    assert Image.from_url("https://example.com/a.png").tokens() == 765
    assert Image.from_url("https://example.com/a.png", detail="low").tokens() == 85
    assert Image.from_url("https://example.com/a.png").tokens("gpt-4o-mini") == 2833 + 4 * 5667


def test_image_repr_does_not_dump_the_data() -> None:
    """The repr of an inline image shows the start of its URL and its length only."""
    image = Image.from_bytes(png(1, 1) + bytes(10_000))
    assert len(repr(image)) < 200
    assert "chars)" in repr(image)


def test_parts_go_into_a_user_message() -> None:
    """to_part() gives the typed part a UserMessage carries to the wire unchanged."""
    image = Image.from_bytes(gif(2, 2))
    audio = Audio.from_bytes(wav())
    document = File.from_bytes(PDF, "report.pdf")
    message = UserMessage((TextPart("look"), image.to_part(), audio.to_part(), document.to_part()))
    assert image.to_part() == ImagePart(image.url, mime="image/gif", width=2, height=2)
    assert audio.to_part() == AudioPart(audio.data, "wav")
    assert document.to_part() == FilePart(
        "report.pdf", file_data=document.file_data, mime="application/pdf"
    )
    assert File.from_id("file-abc").to_part() == FilePart(file_id="file-abc")
    for part in (image.to_part(), audio.to_part(), document.to_part()):
        assert part_from_openai(part.to_openai()) == part
    assert message_to_openai(message) == {
        "role": "user",
        "content": [
            {"type": "text", "text": "look"},
            image.to_openai(),
            audio.to_openai(),
            document.to_openai(),
        ],
    }


# --------------------------------------------------------------------------- Audio


@pytest.mark.parametrize(
    ("data", "audio_format"),
    [
        (wav(), "wav"),
        (MP3_FRAME * 2, "mp3"),
        (id3() + MP3_FRAME, "mp3"),
        (id3() + bytes(7) + MP3_FRAME, "mp3"),
    ],
    ids=["wav", "mp3 frames", "mp3 with ID3 tag", "mp3 with padded ID3 tag"],
)
def test_audio_from_bytes(data: bytes, audio_format: str) -> None:
    """WAV and MP3 are recognised from their bytes and sent as input_audio."""
    audio = Audio.from_bytes(data)
    assert audio == Audio(b64(data), audio_format)  # type: ignore[arg-type]
    assert audio.to_openai() == {
        "type": "input_audio",
        "input_audio": {"data": b64(data), "format": audio_format},
    }
    assert base64.b64decode(audio.data) == data
    assert Audio.from_bytes(data, audio_format) == audio


def test_audio_from_path(tmp_path: Path) -> None:
    """A WAV file is read now and inlined, whatever its name says."""
    data = wav()
    path = tmp_path / "clip.mp3"
    path.write_bytes(data)
    assert Audio.from_path(path).to_openai() == {
        "type": "input_audio",
        "input_audio": {"data": b64(data), "format": "wav"},
    }


def test_audio_from_path_missing_and_too_large(tmp_path: Path) -> None:
    """A missing or oversize audio file is a MediaError naming the path."""
    with pytest.raises(MediaError) as error:
        Audio.from_path(tmp_path / "none.wav")
    assert str(error.value) == f"{tmp_path / 'none.wav'}: no such file"
    path = tmp_path / "clip.wav"
    path.write_bytes(wav())
    with pytest.raises(MediaError) as error:
        Audio.from_path(path, max_bytes=100)
    assert str(error.value) == (
        f"{path}: too large: 1,644 bytes (1.6 KiB), more than max_bytes=100 (100 B)"
    )


def test_audio_declared_format_must_match() -> None:
    """A declared format the bytes contradict is refused; MIME-style names are accepted."""
    with pytest.raises(MediaError) as error:
        Audio.from_bytes(wav(), "mp3")
    assert str(error.value) == "declared mp3 but the bytes are WAV"
    assert Audio.from_bytes(MP3_FRAME, "audio/mpeg").format == "mp3"
    assert Audio.from_bytes(wav(), "audio/wav").format == "wav"
    with pytest.raises(MediaError) as error:
        Audio.from_bytes(wav(), "ogg")
    assert str(error.value) == "unsupported audio format 'ogg'; supported: wav, mp3"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"fLaC" + bytes(40), "unsupported audio type (the bytes are FLAC); supported: WAV, MP3"),
        (b"OggS" + bytes(40), "unsupported audio type (the bytes are Ogg); supported: WAV, MP3"),
        (
            b"\x00\x00\x00\x20ftypM4A " + bytes(20),
            "unsupported audio type (the bytes are M4A); supported: WAV, MP3",
        ),
        (b"\xff\xf1\x50\x80" + bytes(20), "unsupported audio type; supported: WAV, MP3"),  # AAC
        (png(1, 1), "unsupported audio type (the bytes are PNG); supported: WAV, MP3"),
        (id3(), "truncated or corrupt MP3: no MPEG audio frame after its ID3 tag"),
        (
            b"ID3\x04\x00\x00\x00\x00\x80\x00" + MP3_FRAME,
            "truncated or corrupt MP3: its ID3 tag header is malformed",
        ),
    ],
)
def test_audio_unsupported_or_broken(data: bytes, message: str) -> None:
    """Other formats, and MP3 tags with no audio after them, are refused."""
    with pytest.raises(MediaError) as error:
        Audio.from_bytes(data)
    assert str(error.value) == message


# --------------------------------------------------------------------------- File

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def test_file_from_bytes_is_inline_data() -> None:
    """A document becomes a file part with its name and a data URL."""
    document = File.from_bytes(PDF, "report.pdf")
    assert document == File(
        "report.pdf", file_data=f"data:application/pdf;base64,{b64(PDF)}", mime="application/pdf"
    )
    assert document.to_openai() == {
        "type": "file",
        "file": {"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{b64(PDF)}"},
    }
    assert base64.b64decode(str(document.file_data).partition(",")[2]) == PDF


def test_file_from_path(tmp_path: Path) -> None:
    """A local file is read now; its name and type come with it."""
    path = tmp_path / "scan"
    path.write_bytes(PDF)
    assert File.from_path(path).to_openai() == {
        "type": "file",
        "file": {"filename": "scan", "file_data": f"data:application/pdf;base64,{b64(PDF)}"},
    }
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert File.from_path(notes).mime == "text/plain"
    blob = tmp_path / "blob.unknownext"
    blob.write_bytes(b"\x01\x02")
    assert File.from_path(blob).mime == "application/octet-stream"
    with pytest.raises(MediaError) as error:
        File.from_path(tmp_path / "missing.pdf")
    assert str(error.value) == f"{tmp_path / 'missing.pdf'}: no such file"


def test_file_declared_pdf_must_be_a_pdf() -> None:
    """application/pdf for bytes that are not a PDF, or the reverse, is refused."""
    with pytest.raises(MediaError) as error:
        File.from_bytes(png(1, 1), "a.pdf", "application/pdf")
    assert str(error.value) == "declared application/pdf but the bytes are PNG"
    with pytest.raises(MediaError) as error:
        File.from_bytes(b"plain", "a.pdf", "application/pdf")
    assert str(error.value) == "declared application/pdf but the bytes are not a PDF"
    with pytest.raises(MediaError) as error:
        File.from_bytes(PDF, "a.txt", "text/plain")
    assert str(error.value) == "declared text/plain but the bytes are PDF"
    csv = b"a,b\n"
    assert File.from_bytes(csv, "t.csv", "text/csv").file_data == f"data:text/csv;base64,{b64(csv)}"


def test_file_from_id() -> None:
    """An uploaded file is referred to by its id alone."""
    assert File.from_id("file-abc").to_openai() == {"type": "file", "file": {"file_id": "file-abc"}}
    with pytest.raises(MediaError) as error:
        File.from_id("")
    assert str(error.value) == "a file id must be a non-empty string"
    with pytest.raises(MediaError) as error:
        File("x.pdf")
    assert str(error.value) == "a File needs exactly one of file_data and file_id"
    with pytest.raises(MediaError) as error:
        File.from_bytes(PDF, " ")
    assert str(error.value) == "a file needs a non-empty filename"


def test_media_error_is_the_exception_trees() -> None:
    """The media module re-exports the one MediaError of agentfsm.errors."""
    assert media.MediaError is errors.MediaError


def test_a_jpeg_of_endless_segments_is_given_up_on() -> None:
    """The marker walk is bounded: 20,000 empty segments before the frame give no size."""
    frame = _jpeg_segment(0xC0, struct.pack(">BHHB", 8, 10, 10, 1) + b"\x01\x11\x00")
    assert image_size(b"\xff\xd8" + _jpeg_segment(0xFE, b"") * 100 + frame) == (
        "image/jpeg",
        10,
        10,
    )
    assert image_size(b"\xff\xd8" + _jpeg_segment(0xFE, b"") * 20_000 + frame) is None


def test_image_to_part_leaves_auto_detail_unsaid() -> None:
    """An Image's part carries its detail only when it was chosen, as the wire format does."""
    url = "https://example.com/a.png"
    assert Image.from_url(url).to_part() == ImagePart(url)
    assert Image.from_url(url, detail="low").to_part() == ImagePart(url, "low")


def test_module_surface() -> None:
    """The media module exports exactly its public names."""
    assert sorted(media.__all__) == [
        "Audio",
        "File",
        "Image",
        "MediaError",
        "image_size",
        "image_tokens",
    ]
