"""Images, audio and files as checked OpenAI content parts, with image sizes and token costs.

Local media is read and checked when it is built, not when a request is sent: a missing file,
an oversize file, a type the API does not take, or a declared type the bytes contradict raises
`MediaError` at once, naming the path and what is wrong. An image's or audio clip's type is
read from its bytes (magic numbers and headers, never pixel data), not from a file name::

    from agentfsm.messages import TextPart, UserMessage

    photo = Image.from_path("photo.jpg", detail="low")
    message = UserMessage((TextPart("What is in this picture?"), photo.to_part()))
"""

from __future__ import annotations

import base64
import mimetypes
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast
from urllib.parse import urlsplit

import attrs

from agentfsm.errors import MediaError
from agentfsm.messages import RawPart

__all__ = ["Audio", "File", "Image", "MediaError", "image_size", "image_tokens"]

_Detail: TypeAlias = Literal["auto", "low", "high"]
_AudioFormat: TypeAlias = Literal["wav", "mp3"]

_MIB = 1024 * 1024
_IMAGE_MAX_BYTES = 20 * _MIB
_AUDIO_MAX_BYTES = 25 * _MIB
_FILE_MAX_BYTES = 32 * _MIB

_DETAILS = ("auto", "low", "high")
_IMAGE_NAMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WebP"}
_MIME_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
_AUDIO_NAMES = {"wav": "WAV", "mp3": "MP3"}
_AUDIO_ALIASES = {"wave": "wav", "x-wav": "wav", "mpeg": "mp3", "mpga": "mp3"}
_SUPPORTED_IMAGES = ", ".join(_IMAGE_NAMES.values())
_SUPPORTED_AUDIO = ", ".join(_AUDIO_NAMES.values())


def _short(value: str | None) -> str:
    """The repr of a possibly huge string (a data URL, base64 audio): its start and length."""
    if value is None or len(value) <= 64:
        return repr(value)
    return f"{value[:48]!r}…({len(value):,} chars)"


def _check_detail(_instance: object, _attribute: object, value: object) -> None:
    _as_detail(value)


def _as_detail(value: object) -> _Detail:
    if value not in _DETAILS:
        raise MediaError(f"detail must be 'auto', 'low' or 'high', got {value!r}")
    return cast(_Detail, value)


# --------------------------------------------------------------------------- token costs

# (base tokens, tokens per 512 px tile) by model-name prefix, from OpenAI's vision guide;
# the first prefix that matches wins, models not listed cost like gpt-4o.
_TILE_COSTS: tuple[tuple[str, int, int], ...] = (("gpt-4o-mini", 2833, 5667),)
_DEFAULT_TILE_COST = (85, 170)
_FIT_SIDE = 2048
_SHORT_SIDE = 768
_TILE_SIDE = 512
_UNKNOWN_SIZE = 1024  # remote images are counted as a 1024 x 1024 image


def _tile_cost(model: str | None) -> tuple[int, int]:
    if model is not None:
        name = model.rsplit("/", 1)[-1].lower()  # "openai/gpt-4o-mini" on routers
        for prefix, base, tile in _TILE_COSTS:
            if name.startswith(prefix):
                return base, tile
    return _DEFAULT_TILE_COST


def image_tokens(width: int, height: int, detail: str = "auto", *, model: str | None = None) -> int:
    """The input tokens OpenAI bills for an image of ``width`` x ``height`` pixels.

    The tile formula of OpenAI's vision guide for gpt-4o-class models:

    - ``detail="low"`` costs the base, 85 tokens, whatever the size;
    - ``"high"`` scales the image to fit within 2048 x 2048 (keeping its aspect ratio, never
      enlarging it), then, if its shortest side is longer than 768 px, scales it so that side
      is 768 px; each 512 px tile needed to cover the result costs 170 tokens, plus the base:
      ``170 * ceil(w / 512) * ceil(h / 512) + 85``. Scaled sides are rounded down;
    - ``"auto"`` lets the server choose; it is counted as ``"high"``, the upper bound.

    So 512 x 512 costs 255, 1024 x 1024 costs 765, 2048 x 4096 costs 1105.

    ``model`` selects other constants for the models that bill the same tiles differently:
    gpt-4o-mini's base is 2833 and its tile 5667. Model families that count 32 px patches
    instead (gpt-4.1-mini, gpt-4.1-nano, o4-mini…) or that other servers run are not
    modelled: they get the gpt-4o figure, an estimate.

    Raises:
        MediaError: a size that is not positive, or an unknown ``detail``.
    """
    _as_detail(detail)
    if width <= 0 or height <= 0:
        raise MediaError(f"an image size must be positive, got {width} x {height}")
    base, per_tile = _tile_cost(model)
    if detail == "low":
        return base
    if max(width, height) > _FIT_SIDE:
        if width >= height:
            width, height = _FIT_SIDE, max(1, height * _FIT_SIDE // width)
        else:
            width, height = max(1, width * _FIT_SIDE // height), _FIT_SIDE
    if min(width, height) > _SHORT_SIDE:
        if width <= height:
            width, height = _SHORT_SIDE, height * _SHORT_SIDE // width
        else:
            width, height = width * _SHORT_SIDE // height, _SHORT_SIDE
    tiles = -(-width // _TILE_SIDE) * -(-height // _TILE_SIDE)
    return base + per_tile * tiles


# --------------------------------------------------------------------------- sniffing

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size: C0-CF but DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def _image_mime(data: bytes) -> str | None:
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


def _png_size(data: bytes) -> tuple[int, int] | None:
    # The first chunk must be IHDR: length (4), type (4), width (4), height (4).
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    # Walk the marker segments after SOI until a start-of-frame; each step moves forward, so
    # the walk ends. Scan data only follows SOS, which comes after the frame header.
    end, at = len(data), 2
    while at < end:
        if data[at] != 0xFF:
            return None
        while at < end and data[at] == 0xFF:  # any number of 0xFF fill bytes
            at += 1
        if at >= end:
            return None
        marker = data[at]
        at += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0x00, 0xD9, 0xDA) or at + 2 > end:  # stuffing, EOI or SOS: no frame
            return None
        length = _u16be(data, at)
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            # length (2), sample precision (1), height (2), width (2)
            if length < 7 or at + 7 > end:
                return None
            return _u16be(data, at + 5), _u16be(data, at + 3)
        at += length
    return None


def _gif_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 10:
        return None
    return _u16le(data, 6), _u16le(data, 8)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        # frame tag (3 bytes, bit 0 clear on a key frame), start code, 14-bit sizes
        if data[20] & 1 or data[23:26] != b"\x9d\x01\x2a":
            return None
        return _u16le(data, 26) & 0x3FFF, _u16le(data, 28) & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        if data[20] != 0x2F:
            return None
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        # flags (1), reserved (3), canvas width - 1 (3), canvas height - 1 (3)
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


_SIZE_READERS = {
    "image/png": _png_size,
    "image/jpeg": _jpeg_size,
    "image/gif": _gif_size,
    "image/webp": _webp_size,
}


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
    mime = _image_mime(data)
    if mime is None:
        return None
    size = _SIZE_READERS[mime](data)
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return mime, size[0], size[1]


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


def _audio_format(data: bytes) -> _AudioFormat | None:
    """The audio format the magic number says: RIFF/WAVE, an ID3v2 tag, or an MP3 frame."""
    if data.startswith(b"RIFF") and data[8:12] == b"WAVE":
        return "wav"
    if data.startswith(b"ID3") or _mpeg_frame_at(data, 0):
        return "mp3"
    return None


def _id3_problem(data: bytes) -> str | None:
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


def _describe(data: bytes) -> str | None:
    """A name for the format of ``data``, for error messages; None if it is not a known one."""
    mime = _image_mime(data)
    if mime is not None:
        return _IMAGE_NAMES[mime]
    audio = _audio_format(data)
    if audio is not None:
        return _AUDIO_NAMES[audio]
    if data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12], "MP4")
    for magic, name in _MAGIC_NAMES:
        if data.startswith(magic):
            return name
    if data[:256].lstrip()[:5].lower() in (b"<svg ", b"<?xml"):
        return "SVG/XML"
    return None


def _unsupported(kind: str, supported: str, data: bytes) -> str:
    name = _describe(data)
    seen = f" (the bytes are {name})" if name is not None else ""
    return f"unsupported {kind} type{seen}; supported: {supported}"


# --------------------------------------------------------------------------- reading


def _as_bytes(data: object, what: str) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise MediaError(f"{what} data must be bytes, got {type(data).__name__}")


def _human(size: int) -> str:
    for unit, scale in (("GiB", 1024 * _MIB), ("MiB", _MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _check_size(size: int, max_bytes: int, path: str | None) -> None:
    if size == 0:
        raise MediaError("empty: 0 bytes", path)
    if size > max_bytes:
        raise MediaError(
            f"too large: {size:,} bytes ({_human(size)}), "
            f"more than max_bytes={max_bytes:,} ({_human(max_bytes)})",
            path,
        )


def _read(path: str | os.PathLike[str], max_bytes: int) -> tuple[str, bytes]:
    """The path as a string and the file's bytes, checked for existence and size."""
    name = os.fspath(path)
    try:
        _check_size(Path(name).stat().st_size, max_bytes, name)
        with open(name, "rb") as file:
            data = file.read(max_bytes + 1)  # the file may have grown since stat()
    except FileNotFoundError as error:
        raise MediaError("no such file", name) from error
    except IsADirectoryError as error:
        raise MediaError("is a directory, not a file", name) from error
    except PermissionError as error:
        raise MediaError("permission denied", name) from error
    except OSError as error:
        raise MediaError(f"cannot read: {error.strerror or error}", name) from error
    _check_size(len(data), max_bytes, name)
    return name, data


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _parse_data_url(url: str) -> tuple[str | None, bytes]:
    """The declared MIME type and the decoded bytes of a base64 ``data:`` URL."""
    header, comma, payload = url.partition(",")
    if not comma:
        raise MediaError("malformed data URL: no ',' before the data")
    params = [p.strip() for p in header[len("data:") :].split(";")]
    if "base64" not in (p.lower() for p in params[1:]):
        raise MediaError("a data URL must be base64-encoded ('data:<type>;base64,<data>')")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except ValueError as error:  # binascii.Error, or non-ASCII text
        raise MediaError(f"a data URL whose data is not valid base64 ({error})") from error
    return params[0] or None, data


def _normalize_mime(mime: str) -> str:
    mime = mime.split(";", 1)[0].strip().lower()
    return _MIME_ALIASES.get(mime, mime)


# --------------------------------------------------------------------------- the parts


@attrs.frozen
class Image:
    """An image for a user message: an ``https`` URL the server fetches, or inline data.

    Build it with `from_path`, `from_bytes` or `from_url`; they check what they can now.

    Attributes:
        url: an ``http(s)`` URL, or a ``data:<mime>;base64,…`` URL holding the image.
        detail: ``"low"`` (a 512 px thumbnail, 85 tokens), ``"high"``, or ``"auto"`` (the
            server chooses). Sent only when it is not ``"auto"``.
        mime: the image type, for inline data (None for remote URLs).
        width: the width in pixels, read from the header of inline data.
        height: the height in pixels, read from the header of inline data.
    """

    url: str = attrs.field(repr=_short)
    detail: _Detail = attrs.field(default="auto", validator=_check_detail)
    mime: str | None = attrs.field(default=None, kw_only=True)
    width: int | None = attrs.field(default=None, kw_only=True)
    height: int | None = attrs.field(default=None, kw_only=True)

    @classmethod
    def from_url(
        cls, url: str, *, detail: _Detail = "auto", max_bytes: int = _IMAGE_MAX_BYTES
    ) -> Image:
        """An image at an ``http(s)`` URL (not fetched), or in a base64 ``data:`` URL.

        A ``data:`` URL is decoded and checked like `from_bytes`, its declared type against
        its bytes, and re-encoded canonically.

        Raises:
            MediaError: not a string, another scheme (``file:``, a bare path…), a URL without
                a host, or a ``data:`` URL that is not base64 or not a supported image.
        """
        if not isinstance(url, str):
            raise MediaError(f"an image URL must be a string, got {type(url).__name__}")
        if url[:5].lower() == "data:":
            declared, data = _parse_data_url(url)
            return cls.from_bytes(data, declared, detail=detail, max_bytes=max_bytes)
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in ("http", "https"):
            scheme = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
            raise MediaError(
                f"unsupported image URL {_short(url)}: {scheme} (expected https, http or "
                "data); for a local file use Image.from_path"
            )
        if not parts.netloc:
            raise MediaError(f"image URL {_short(url)} has no host")
        return cls(url, detail)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        detail: _Detail = "auto",
        max_bytes: int = _IMAGE_MAX_BYTES,
    ) -> Image:
        """The image in a local file, read now and inlined as a base64 ``data:`` URL.

        The type comes from the bytes, not the file name.

        Raises:
            MediaError: a missing or unreadable file, one larger than ``max_bytes`` (20 MiB
                by default), or not a PNG, JPEG, GIF or WebP image; ``path`` names it.
        """
        name, data = _read(path, max_bytes)
        try:
            return cls.from_bytes(data, detail=detail, max_bytes=max_bytes)
        except MediaError as error:
            raise MediaError(error.reason, name) from None

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        mime: str | None = None,
        *,
        detail: _Detail = "auto",
        max_bytes: int = _IMAGE_MAX_BYTES,
    ) -> Image:
        """An image from its encoded bytes (a PNG, JPEG, GIF or WebP file's content).

        Args:
            data: the file's bytes; only the header is read.
            mime: the type the caller believes it is; checked against the bytes.
            detail: see `Image.detail`.
            max_bytes: the largest accepted size (20 MiB by default), before base64.

        Raises:
            MediaError: empty or oversize data, an unsupported type, a ``mime`` the bytes
                contradict ("declared image/png but the bytes are JPEG"), or a header too
                truncated or corrupt to read the size from.
        """
        data = _as_bytes(data, "image")
        _check_size(len(data), max_bytes, None)
        declared = None if mime is None else _normalize_mime(mime)
        if declared is not None and declared not in _IMAGE_NAMES:
            raise MediaError(f"unsupported image type {mime!r}; supported: {_SUPPORTED_IMAGES}")
        sniffed = _image_mime(data)
        if sniffed is None:
            raise MediaError(_unsupported("image", _SUPPORTED_IMAGES, data))
        if declared is not None and declared != sniffed:
            raise MediaError(f"declared {declared} but the bytes are {_IMAGE_NAMES[sniffed]}")
        size = image_size(data)
        if size is None:
            name = _IMAGE_NAMES[sniffed]
            raise MediaError(f"truncated or corrupt {name}: its size cannot be read")
        _, width, height = size
        return cls(_data_url(sniffed, data), detail, mime=sniffed, width=width, height=height)

    @classmethod
    def from_openai(cls, part: Mapping[str, Any]) -> Image:
        """The image of an OpenAI ``image_url`` content part, checked like `from_url`.

        Raises:
            MediaError: not an ``image_url`` part, or its URL fails `from_url`.
        """
        if not isinstance(part, Mapping) or part.get("type") != "image_url":
            raise MediaError("not an OpenAI image_url content part")
        inner = part.get("image_url")
        if isinstance(inner, str):  # the older shape: the URL itself
            return cls.from_url(inner)
        if not isinstance(inner, Mapping):
            raise MediaError("an image_url content part needs an 'image_url' object")
        url = inner.get("url")
        if not isinstance(url, str):
            raise MediaError("an image_url content part needs a string 'url'")
        return cls.from_url(url, detail=_as_detail(inner.get("detail") or "auto"))

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``image_url`` content part; ``detail`` is left out when it is ``auto``."""
        image: dict[str, Any] = {"url": self.url}
        if self.detail != "auto":
            image["detail"] = self.detail
        return {"type": "image_url", "image_url": image}

    def to_part(self) -> RawPart:
        """The content part to put in a `UserMessage`."""
        return RawPart(self.to_openai())

    def tokens(self, model: str | None = None) -> int:
        """The input tokens the image costs, by `image_tokens`.

        An image whose size is not known (a remote URL) is counted as 1024 x 1024: 765 tokens
        at ``high``/``auto`` detail, an estimate; 85 at ``low`` detail, exact.
        """
        if self.width is None or self.height is None:
            return image_tokens(_UNKNOWN_SIZE, _UNKNOWN_SIZE, self.detail, model=model)
        return image_tokens(self.width, self.height, self.detail, model=model)


def _check_audio_format(_instance: object, _attribute: object, value: object) -> None:
    if value not in _AUDIO_NAMES:
        raise MediaError(f"unsupported audio format {value!r}; supported: wav, mp3")


@attrs.frozen
class Audio:
    """An audio clip for a user message, for audio-input models (``gpt-4o-audio-preview``…).

    Build it with `from_path` or `from_bytes`, which check the format.

    Attributes:
        data: the clip's bytes, base64-encoded.
        format: ``"wav"`` or ``"mp3"``, the two formats the API takes.
    """

    data: str = attrs.field(repr=_short)
    format: _AudioFormat = attrs.field(validator=_check_audio_format)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, max_bytes: int = _AUDIO_MAX_BYTES) -> Audio:
        """The clip in a local WAV or MP3 file, read now; the format comes from the bytes.

        Raises:
            MediaError: a missing or unreadable file, one larger than ``max_bytes`` (25 MiB
                by default), or neither WAV nor MP3; ``path`` names it.
        """
        name, data = _read(path, max_bytes)
        try:
            return cls.from_bytes(data, max_bytes=max_bytes)
        except MediaError as error:
            raise MediaError(error.reason, name) from None

    @classmethod
    def from_bytes(
        cls, data: bytes, format: str | None = None, *, max_bytes: int = _AUDIO_MAX_BYTES
    ) -> Audio:
        """A clip from a WAV (RIFF/WAVE) or MP3 (ID3 tag or MPEG Layer III frame) file's bytes.

        Args:
            data: the file's bytes.
            format: ``"wav"`` or ``"mp3"`` if the caller knows it; checked against the bytes.
            max_bytes: the largest accepted size (25 MiB by default), before base64.

        Raises:
            MediaError: empty or oversize data, another format, a ``format`` the bytes
                contradict, or an ID3 tag with no MP3 audio after it.
        """
        data = _as_bytes(data, "audio")
        _check_size(len(data), max_bytes, None)
        declared = None
        if format is not None:
            declared = format.strip().lower().removeprefix("audio/")
            declared = _AUDIO_ALIASES.get(declared, declared)
            if declared not in _AUDIO_NAMES:
                raise MediaError(f"unsupported audio format {format!r}; supported: wav, mp3")
        sniffed = _audio_format(data)
        if sniffed is None:
            raise MediaError(_unsupported("audio", _SUPPORTED_AUDIO, data))
        if declared is not None and declared != sniffed:
            raise MediaError(f"declared {declared} but the bytes are {_AUDIO_NAMES[sniffed]}")
        if sniffed == "mp3" and data.startswith(b"ID3"):
            problem = _id3_problem(data)
            if problem is not None:
                raise MediaError(problem)
        return cls(base64.b64encode(data).decode("ascii"), sniffed)

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``input_audio`` content part."""
        return {"type": "input_audio", "input_audio": {"data": self.data, "format": self.format}}

    def to_part(self) -> RawPart:
        """The content part to put in a `UserMessage`."""
        return RawPart(self.to_openai())


def _check_file_source(instance: File, _attribute: object, _value: str | None) -> None:
    if (instance.file_data is None) == (instance.file_id is None):
        raise MediaError("a File needs exactly one of file_data and file_id")


@attrs.frozen
class File:
    """A document for a user message (a PDF, for OpenAI): inline data or an uploaded file's id.

    Build it with `from_path`, `from_bytes` or `from_id`.

    Attributes:
        filename: the name the model is told (inline data only).
        file_data: a ``data:<mime>;base64,…`` URL holding the file.
        file_id: the id of a file uploaded through the Files API (``"file-…"``).
        mime: the file's type, for inline data.
    """

    filename: str | None = None
    file_data: str | None = attrs.field(default=None, repr=_short, kw_only=True)
    file_id: str | None = attrs.field(default=None, kw_only=True, validator=_check_file_source)
    mime: str | None = attrs.field(default=None, kw_only=True)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        mime: str | None = None,
        max_bytes: int = _FILE_MAX_BYTES,
    ) -> File:
        """The document in a local file, read now and inlined; its name is the file's name.

        The type is ``mime`` if given, else PDF if the bytes are one, else guessed from the
        file name's extension, else ``application/octet-stream``.

        Raises:
            MediaError: a missing or unreadable file, one larger than ``max_bytes`` (32 MiB
                by default), or a PDF/non-PDF mismatch with ``mime``; ``path`` names it.
        """
        name, data = _read(path, max_bytes)
        try:
            return cls.from_bytes(data, Path(name).name, mime, max_bytes=max_bytes)
        except MediaError as error:
            raise MediaError(error.reason, name) from None

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        filename: str,
        mime: str | None = None,
        *,
        max_bytes: int = _FILE_MAX_BYTES,
    ) -> File:
        """A document from its bytes.

        Args:
            data: the file's bytes.
            filename: the name the model is told, e.g. ``"report.pdf"``.
            mime: the file's type; if None, as `from_path` decides it.
            max_bytes: the largest accepted size (32 MiB by default), before base64.

        Raises:
            MediaError: empty or oversize data, an empty ``filename``, or a ``mime`` of
                ``application/pdf`` for bytes that are not a PDF (or the reverse).
        """
        data = _as_bytes(data, "file")
        _check_size(len(data), max_bytes, None)
        if not isinstance(filename, str) or not filename.strip():
            raise MediaError("a file needs a non-empty filename")
        # The PDF header may come after up to 1 KiB of junk, by the specification.
        is_pdf = b"%PDF-" in data[:1024]
        if mime is None:
            guessed = "application/pdf" if is_pdf else mimetypes.guess_type(filename)[0]
            mime = guessed or "application/octet-stream"
        else:
            mime = mime.split(";", 1)[0].strip().lower()
            if (mime == "application/pdf") != is_pdf:
                name = "PDF" if is_pdf else (_describe(data) or "not a PDF")
                raise MediaError(f"declared {mime} but the bytes are {name}")
        return cls(filename, file_data=_data_url(mime, data), mime=mime)

    @classmethod
    def from_id(cls, file_id: str) -> File:
        """A file uploaded before through the Files API, by its id.

        Raises:
            MediaError: an empty id.
        """
        if not isinstance(file_id, str) or not file_id.strip():
            raise MediaError("a file id must be a non-empty string")
        return cls(file_id=file_id)

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``file`` content part."""
        file: dict[str, Any] = {}
        if self.filename is not None:
            file["filename"] = self.filename
        if self.file_data is not None:
            file["file_data"] = self.file_data
        if self.file_id is not None:
            file["file_id"] = self.file_id
        return {"type": "file", "file": file}

    def to_part(self) -> RawPart:
        """The content part to put in a `UserMessage`."""
        return RawPart(self.to_openai())
