"""Image token pricing: the input tokens OpenAI bills for an image, by its tile formula."""

from __future__ import annotations

from typing import cast

from agentfsm.errors import MediaError
from agentfsm.messages import Detail

__all__ = ["UNKNOWN_SIZE", "as_detail", "estimate_image_tokens", "image_tokens"]

_DETAILS = ("auto", "low", "high")

# (base tokens, tokens per 512 px tile) by model-name prefix, from OpenAI's vision guide;
# the first prefix that matches wins, models not listed cost like gpt-4o.
_TILE_COSTS: tuple[tuple[str, int, int], ...] = (("gpt-4o-mini", 2833, 5667),)
_DEFAULT_TILE_COST = (85, 170)
_FIT_SIDE = 2048
_SHORT_SIDE = 768
_TILE_SIDE = 512

UNKNOWN_SIZE = 1024
"""An image whose size is not known (a remote URL) is counted as this many pixels square."""


def as_detail(value: object) -> Detail:
    """``value`` as an image detail.

    Raises:
        MediaError: not ``"auto"``, ``"low"`` or ``"high"``.
    """
    if value not in _DETAILS:
        raise MediaError(f"detail must be 'auto', 'low' or 'high', got {value!r}")
    return cast(Detail, value)


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
    as_detail(detail)
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


def estimate_image_tokens(
    width: int | None, height: int | None, detail: str | None, *, model: str | None = None
) -> int:
    """`image_tokens`, for what a content part knows; never raises.

    A size that is unknown (or not positive) counts as `UNKNOWN_SIZE` square: at ``high`` or
    ``auto`` detail an estimate (765 tokens for gpt-4o), at ``low`` exact. A detail that is
    not given, or not one of the three, counts as ``auto``.
    """
    if detail not in _DETAILS:
        detail = "auto"
    if width is None or height is None or width <= 0 or height <= 0:
        width = height = UNKNOWN_SIZE
    return image_tokens(width, height, detail, model=model)
