"""Building images, audio clips and files into content parts, checked when they are built.

Local media is read and checked when it is built, not when a request is sent: a missing file,
an oversize file, a type the API does not take, or a declared type the bytes contradict raises
`MediaError` at once, naming the path and what is wrong. An image's or audio clip's type is
read from its bytes (magic numbers and headers, never pixel data), not from a file name::

    from agentfsm import Image, TextPart, UserMessage

    photo = Image.from_path("photo.jpg", detail="low")
    message = UserMessage((TextPart("What is in this picture?"), photo.to_part()))
"""

from __future__ import annotations

import base64
import mimetypes
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from agentfsm._sniff import (
    AUDIO_NAMES,
    IMAGE_NAMES,
    AudioFormat,
    audio_format,
    describe,
    id3_problem,
    image_mime,
    image_size,
)
from agentfsm.context.images import as_detail, estimate_image_tokens, image_tokens
from agentfsm.errors import MediaError
from agentfsm.messages import AudioPart, Detail, FilePart, ImagePart, _short

__all__ = ["Audio", "File", "Image", "MediaError", "image_size", "image_tokens"]

_MIB = 1024 * 1024
_IMAGE_MAX_BYTES = 20 * _MIB
_AUDIO_MAX_BYTES = 25 * _MIB
_FILE_MAX_BYTES = 32 * _MIB

_MIME_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
_AUDIO_ALIASES = {"wave": "wav", "x-wav": "wav", "mpeg": "mp3", "mpga": "mp3"}
_SUPPORTED_IMAGES = ", ".join(IMAGE_NAMES.values())
_SUPPORTED_AUDIO = ", ".join(AUDIO_NAMES.values())


def _check_detail(_instance: object, _attribute: object, value: object) -> None:
    as_detail(value)


def _unsupported(kind: str, supported: str, data: bytes) -> str:
    name = describe(data)
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
        detail: ``"low"`` (a 512 px thumbnail: 85 tokens on gpt-4o, more on some models),
            ``"high"``, or ``"auto"`` (the server chooses). Sent only when it is not
            ``"auto"``.
        mime: the image type, for inline data (None for remote URLs).
        width: the width in pixels, read from the header of inline data.
        height: the height in pixels, read from the header of inline data.
    """

    url: str = attrs.field(repr=_short)
    detail: Detail = attrs.field(default="auto", validator=_check_detail)
    mime: str | None = attrs.field(default=None, kw_only=True)
    width: int | None = attrs.field(default=None, kw_only=True)
    height: int | None = attrs.field(default=None, kw_only=True)

    @classmethod
    def from_url(
        cls, url: str, *, detail: Detail = "auto", max_bytes: int = _IMAGE_MAX_BYTES
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
        detail: Detail = "auto",
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
        detail: Detail = "auto",
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
        if declared is not None and declared not in IMAGE_NAMES:
            raise MediaError(f"unsupported image type {mime!r}; supported: {_SUPPORTED_IMAGES}")
        sniffed = image_mime(data)
        if sniffed is None:
            raise MediaError(_unsupported("image", _SUPPORTED_IMAGES, data))
        if declared is not None and declared != sniffed:
            raise MediaError(f"declared {declared} but the bytes are {IMAGE_NAMES[sniffed]}")
        size = image_size(data)
        if size is None:
            name = IMAGE_NAMES[sniffed]
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
        return cls.from_url(url, detail=as_detail(inner.get("detail") or "auto"))

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``image_url`` content part; ``detail`` is left out when it is ``auto``."""
        return self.to_part().to_openai()

    def to_part(self) -> ImagePart:
        """The content part to put in a `UserMessage` (its ``detail`` None for ``auto``, as
        the wire format leaves it out)."""
        detail = None if self.detail == "auto" else self.detail
        return ImagePart(self.url, detail, mime=self.mime, width=self.width, height=self.height)

    def tokens(self, model: str | None = None) -> int:
        """The input tokens the image costs, by `image_tokens`.

        An image whose size is not known (a remote URL) is counted as 1024 x 1024: 765 tokens
        at ``high``/``auto`` detail, an estimate; 85 at ``low`` detail, exact.
        """
        return estimate_image_tokens(self.width, self.height, self.detail, model=model)


def _check_audio_format(_instance: object, _attribute: object, value: object) -> None:
    if value not in AUDIO_NAMES:
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
    format: AudioFormat = attrs.field(validator=_check_audio_format)

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
            if declared not in AUDIO_NAMES:
                raise MediaError(f"unsupported audio format {format!r}; supported: wav, mp3")
        sniffed = audio_format(data)
        if sniffed is None:
            raise MediaError(_unsupported("audio", _SUPPORTED_AUDIO, data))
        if declared is not None and declared != sniffed:
            raise MediaError(f"declared {declared} but the bytes are {AUDIO_NAMES[sniffed]}")
        if sniffed == "mp3" and data.startswith(b"ID3"):
            problem = id3_problem(data)
            if problem is not None:
                raise MediaError(problem)
        return cls(base64.b64encode(data).decode("ascii"), sniffed)

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``input_audio`` content part."""
        return self.to_part().to_openai()

    def to_part(self) -> AudioPart:
        """The content part to put in a `UserMessage`."""
        return AudioPart(self.data, self.format)


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
                name = "PDF" if is_pdf else (describe(data) or "not a PDF")
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
        return self.to_part().to_openai()

    def to_part(self) -> FilePart:
        """The content part to put in a `UserMessage`."""
        return FilePart(
            self.filename, file_data=self.file_data, file_id=self.file_id, mime=self.mime
        )
