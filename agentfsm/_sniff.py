"""Byte sniffing: a file's format and an image's size, read from magic numbers and headers.

Nothing here decodes pixel or audio data, and nothing raises on any input: what cannot be
read is None. An image held in a base64 ``data:`` URL is sized by decoding only the few
bytes its header takes (`data_url_image_size`), never the whole image.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Literal, TypeAlias

__all__ = [
    "AUDIO_NAMES",
    "IMAGE_NAMES",
    "AudioFormat",
    "audio_format",
    "data_url_image_size",
    "data_url_mime",
    "describe",
    "id3_problem",
    "image_mime",
    "image_size",
]

AudioFormat: TypeAlias = Literal["wav", "mp3"]

IMAGE_NAMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WebP"}
"""The image types OpenAI takes, by MIME type, with the names error messages use."""
AUDIO_NAMES = {"wav": "WAV", "mp3": "MP3"}
"""The audio formats OpenAI takes, with the names error messages use."""

_Read: TypeAlias = Callable[[int, int], bytes]
"""``read(start, stop)``: bytes ``[start:stop]`` of a file, fewer (or none) past its end."""

_HEAD = 64  # bytes holding every header read here but JPEG's, which is walked
_JPEG_MAX_STEPS = 10_000  # marker segments (or 64-byte runs of fill) walked before giving up

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size: C0-CF but DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


# --------------------------------------------------------------------------- images


def image_mime(data: bytes) -> str | None:
    """The image type the magic number says, whether or not the header after it is whole."""
    if data.startswith(_PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _u16be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "big")


def _u16le(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "little")


def _png_size(head: bytes) -> tuple[int, int] | None:
    # The first chunk must be IHDR: length (4), type (4), width (4), height (4).
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _gif_size(head: bytes) -> tuple[int, int] | None:
    if len(head) < 10:
        return None
    return _u16le(head, 6), _u16le(head, 8)


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        # frame tag (3 bytes, bit 0 clear on a key frame), start code, 14-bit sizes
        if head[20] & 1 or head[23:26] != b"\x9d\x01\x2a":
            return None
        return _u16le(head, 26) & 0x3FFF, _u16le(head, 28) & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        if head[20] != 0x2F:
            return None
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        # flags (1), reserved (3), canvas width - 1 (3), canvas height - 1 (3)
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


_HEAD_SIZE_READERS = {"image/png": _png_size, "image/gif": _gif_size, "image/webp": _webp_size}


def _jpeg_size(read: _Read) -> tuple[int, int] | None:
    """Walk the marker segments after SOI to the start-of-frame, reading only their headers.

    Every step moves forward and the steps are bounded, so the walk ends on any bytes. Scan
    data only follows SOS, which comes after the frame header.
    """
    at = 2
    for _ in range(_JPEG_MAX_STEPS):
        window = read(at, at + _HEAD)
        if window[:1] != b"\xff":
            return None
        rest = window.lstrip(b"\xff")  # any number of 0xFF fill bytes before a marker
        if not rest:
            if len(window) < _HEAD:
                return None
            at += len(window) - 1  # keep one 0xFF: the next window starts at a marker's
            continue
        at += len(window) - len(rest) + 1
        marker = rest[0]
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0x00, 0xD9, 0xDA):  # stuffing, EOI or SOS: no frame header
            return None
        fields = read(at, at + 7)  # length (2), sample precision (1), height (2), width (2)
        if len(fields) < 2:
            return None
        length = _u16be(fields, 0)
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            if length < 7 or len(fields) < 7:
                return None
            return _u16be(fields, 5), _u16be(fields, 3)
        at += length
    return None


def _image_size(read: _Read) -> tuple[str, int, int] | None:
    head = read(0, _HEAD)
    mime = image_mime(head)
    if mime is None:
        return None
    size = _jpeg_size(read) if mime == "image/jpeg" else _HEAD_SIZE_READERS[mime](head)
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return mime, size[0], size[1]


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """The MIME type, width and height of a PNG, JPEG, GIF or WebP image, read from its header.

    Only the header is read (PNG ``IHDR``, the JPEG start-of-frame segment, the GIF logical
    screen, the WebP ``VP8 ``/``VP8L``/``VP8X`` chunk); pixel data is never decoded, so the
    bytes need not hold a whole image.

    Returns:
        ``("image/png", 640, 480)``, or None for bytes that are not one of these images or
        whose header is truncated or corrupt. It never raises on any bytes.
    """
    data = bytes(data)
    return _image_size(lambda start, stop: data[start:stop])


# --------------------------------------------------------------------------- data URLs

_DATA_URL_HEADER_MAX = 256  # characters before the comma: "data:image/png;base64"
_WHITESPACE = re.compile(r"\s")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _data_url_header(url: str) -> tuple[str, int] | None:
    """The declared type (lowercase, parameters dropped) of a base64 ``data:`` URL and where
    its payload starts, or None for another URL. The payload is not copied."""
    if url[:5].lower() != "data:":
        return None
    comma = url.find(",", 5, _DATA_URL_HEADER_MAX)
    if comma < 0:
        return None
    params = [p.strip() for p in url[5:comma].split(";")]
    if "base64" not in (p.lower() for p in params[1:]):
        return None
    return params[0].lower(), comma + 1


def data_url_mime(url: str) -> str | None:
    """The MIME type a base64 ``data:`` URL declares (``"application/pdf"``), if any."""
    header = _data_url_header(url)
    if header is None or not header[0]:
        return None
    return header[0]


def _base64_reader(text: str, start: int) -> _Read:
    """Reads bytes of the base64 data in ``text[start:]`` by decoding only the 4-character
    groups that hold them; the data ends where the base64 does (at anything else)."""

    def read(first: int, stop: int) -> bytes:
        if stop <= first:
            return b""
        group = first // 3
        chunk = text[start + group * 4 : start + -(-stop // 3) * 4]
        run = _BASE64_RUN.match(chunk)
        chunk = chunk[: run.end()] if run is not None else ""
        try:
            data = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True)
        except ValueError:  # a lone last character, or padding within a group
            return b""
        skip = first - group * 3
        return data[skip : skip + stop - first]

    return read


def data_url_image_size(url: str) -> tuple[str, int, int] | None:
    """The MIME type, width and height of the image in a base64 ``data:`` URL.

    Like `image_size`, from the header alone: only the base64 groups holding the header
    bytes are decoded (a JPEG's marker walk jumps over its segments), so sizing a 20 MiB
    image decodes a few hundred bytes. Base64 broken into lines has its whitespace taken out
    first (a copy of the text, still no decoding).

    Returns:
        The type and size the bytes say (not the type the URL declares), or None for a URL
        that is not a base64 ``data:`` URL of a readable PNG, JPEG, GIF or WebP header.
    """
    header = _data_url_header(url)
    if header is None:
        return None
    text, start = url, header[1]
    if _WHITESPACE.search(url, start, start + _HEAD * 2) is not None:
        text, start = "".join(url[start:].split()), 0
    return _image_size(_base64_reader(text, start))


# --------------------------------------------------------------------------- audio


def _mpeg_frame_at(data: bytes, at: int) -> bool:
    """Whether an MPEG audio Layer III frame header starts at ``at``."""
    if at + 4 > len(data):
        return False
    b1, b2, b3 = data[at + 1], data[at + 2], data[at + 3]
    return (
        data[at] == 0xFF
        and b1 & 0xE0 == 0xE0  # 11 sync bits
        and (b1 >> 3) & 3 != 1  # version: 1 is reserved
        and (b1 >> 1) & 3 == 1  # layer III (AAC's ADTS header has 0 here)
        and b2 >> 4 != 0xF  # bitrate index 15 is invalid
        and (b2 >> 2) & 3 != 3  # sample-rate index 3 is reserved
        and b3 & 3 != 2  # emphasis 2 is reserved
    )


def audio_format(data: bytes) -> AudioFormat | None:
    """The audio format the magic number says: RIFF/WAVE, an ID3v2 tag, or an MP3 frame."""
    if data.startswith(b"RIFF") and data[8:12] == b"WAVE":
        return "wav"
    if data.startswith(b"ID3") or _mpeg_frame_at(data, 0):
        return "mp3"
    return None


def id3_problem(data: bytes) -> str | None:
    """What is wrong with an MP3 that starts with an ID3v2 tag, or None if a frame follows it."""
    header = data[:10]
    if len(header) < 10 or header[3] not in (2, 3, 4) or any(b >= 0x80 for b in header[6:10]):
        return "truncated or corrupt MP3: its ID3 tag header is malformed"
    size = 10 + sum(b << (7 * (3 - i)) for i, b in enumerate(header[6:10]))
    if header[5] & 0x10:  # a footer follows the tag
        size += 10
    while size < len(data) and data[size] == 0:  # padding some taggers leave out of the size
        size += 1
    if not _mpeg_frame_at(data, size):
        return "truncated or corrupt MP3: no MPEG audio frame after its ID3 tag"
    return None


# --------------------------------------------------------------------------- naming

_FTYP_BRANDS = {
    b"avif": "AVIF",
    b"avis": "AVIF",
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"M4A ": "M4A",
    b"qt  ": "QuickTime",
}
_MAGIC_NAMES = (
    (b"%PDF-", "PDF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"fLaC", "FLAC"),
    (b"OggS", "Ogg"),
    (b"\x1a\x45\xdf\xa3", "WebM/Matroska"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
)


def describe(data: bytes) -> str | None:
    """A name for the format of ``data``, for error messages; None if it is not a known one."""
    mime = image_mime(data)
    if mime is not None:
        return IMAGE_NAMES[mime]
    audio = audio_format(data)
    if audio is not None:
        return AUDIO_NAMES[audio]
    if data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12], "MP4")
    for magic, name in _MAGIC_NAMES:
        if data.startswith(magic):
            return name
    if data[:256].lstrip()[:5].lower() in (b"<svg ", b"<?xml"):
        return "SVG/XML"
    return None
