"""What fal hosts of Kling, as data: one fal model id per (model, mode, input kind), the input
field names each of those endpoints takes, and fal's prices (providers.md, "fal — queue API").

reelgen's model names are Kling's own (``kling-v2-1``, ...), so a request written for the
``kling`` provider runs here unchanged wherever fal hosts the same model and tier.

fal does not host every tier of every model: kling-v1 is ``std`` only, kling-v1-5 ``pro``
image-to-video only, kling-v2-1 has no text-to-video at all, kling-v2-5-turbo's text-to-video
is ``pro`` only, and the master models and kling-v2-6 come in one tier each. The table below
lists only what exists; anything else is refused before paying. fal also hosts Kling models
Kling's own API names differently (``o3``, ``v3/turbo``, motion control, ...): not mapped, as
reelgen's model names are Kling's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from reelgen.provider import ModelSpec
from reelgen_kling.catalog import CAPABILITIES as KLING

Kind = Literal["image-to-video", "text-to-video"]
I2V: Kind = "image-to-video"
T2V: Kind = "text-to-video"

FIVE_TEN = (5.0, 10.0)  # sent as the strings "5" and "10"


@dataclass(frozen=True)
class Endpoint:
    """One fal endpoint and the names its input uses for reelgen's fields."""

    model_id: str
    """Appended to the queue URL: ``POST {queue_url}/{model_id}``."""
    start_field: str | None = None
    """The start frame (image-to-video): ``image_url`` on most, ``start_image_url`` on newer."""
    end_field: str | None = None
    """The end frame, where the endpoint has one: ``tail_image_url`` or ``end_image_url``."""
    fixed: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Inputs always sent with this endpoint."""
    negative_prompt: bool = True
    """The endpoint takes ``negative_prompt`` (and applies fal's default, "blur, distort, and
    low quality", when none is sent): every Kling endpoint's input schema on fal lists it."""


def _classic(path: str, tier: str, kind: Kind, *, tail: bool = False) -> Endpoint:
    """An endpoint of the classic input shape: ``image_url`` (+ ``tail_image_url``)."""
    model_id = f"fal-ai/kling-video/{path}/{tier}/{kind}"
    if kind == T2V:
        return Endpoint(model_id)
    return Endpoint(model_id, "image_url", "tail_image_url" if tail else None)


# (reelgen model, reelgen mode, input kind) -> fal endpoint, from fal's model pages (the
# ``fal-ai/kling-video/...`` ids and their input schemas). Master models have a single tier on
# fal (``.../master/...``, 1080p): reelgen calls it ``pro``, so a Kling-direct request for a
# master model in pro mode runs here as it is, and ``std`` is refused rather than silently
# billed at the master price. kling-v1 pro is gone: fal no longer serves ``v1/pro`` (the
# issue that asked for this refresh; *verify*: not confirmed from a fal page).
SILENT = MappingProxyType({"generate_audio": False})
"""Sound is on by default on v2.6 and v3 and costs more (see SOUND_PRICES): always off here,
so the estimate is the price."""


def _newer(path: str, tier: str, kind: Kind, *, end: bool = True) -> Endpoint:
    """An endpoint of the newer input shape: ``start_image_url`` / ``end_image_url``, sound."""
    model_id = f"fal-ai/kling-video/{path}/{tier}/{kind}"
    if kind == T2V:
        return Endpoint(model_id, fixed=SILENT)
    return Endpoint(model_id, "start_image_url", "end_image_url" if end else None, SILENT)


ENDPOINTS: dict[tuple[str, str, Kind], Endpoint] = {
    ("kling-v1", "std", I2V): _classic("v1", "standard", I2V, tail=True),
    ("kling-v1", "std", T2V): _classic("v1", "standard", T2V),
    # v1.5 on fal: pro only (*verify*: no v1.5 page could be read; ids as fal's v1.5 scheme)
    ("kling-v1-5", "pro", I2V): _classic("v1.5", "pro", I2V),
    ("kling-v1-6", "std", I2V): _classic("v1.6", "standard", I2V),
    ("kling-v1-6", "std", T2V): _classic("v1.6", "standard", T2V),
    ("kling-v1-6", "pro", I2V): _classic("v1.6", "pro", I2V, tail=True),
    ("kling-v1-6", "pro", T2V): _classic("v1.6", "pro", T2V),
    ("kling-v2-master", "pro", I2V): _classic("v2", "master", I2V),
    ("kling-v2-master", "pro", T2V): _classic("v2", "master", T2V),
    ("kling-v2-1", "std", I2V): _classic("v2.1", "standard", I2V),
    ("kling-v2-1", "pro", I2V): _classic("v2.1", "pro", I2V, tail=True),
    ("kling-v2-1-master", "pro", I2V): _classic("v2.1", "master", I2V),
    ("kling-v2-1-master", "pro", T2V): _classic("v2.1", "master", T2V),
    ("kling-v2-5-turbo", "std", I2V): _classic("v2.5-turbo", "standard", I2V),
    ("kling-v2-5-turbo", "pro", I2V): _classic("v2.5-turbo", "pro", I2V, tail=True),
    ("kling-v2-5-turbo", "pro", T2V): _classic("v2.5-turbo", "pro", T2V),
    ("kling-v2-6", "pro", I2V): _newer("v2.6", "pro", I2V),
    ("kling-v2-6", "pro", T2V): _newer("v2.6", "pro", T2V),
    # v3: 3 to 15 s, sent as the strings "3".."15"; standard and pro (*verify*: the standard
    # image-to-video and pro text-to-video ids follow fal's v3 scheme; their pages were not
    # read, the pro image-to-video and standard text-to-video ones were)
    ("kling-v3", "std", I2V): _newer("v3", "standard", I2V),
    ("kling-v3", "std", T2V): _newer("v3", "standard", T2V),
    ("kling-v3", "pro", I2V): _newer("v3", "pro", I2V),
    ("kling-v3", "pro", T2V): _newer("v3", "pro", T2V),
}

# USD per second of output (silent), by model and mode, from fal's model pages where one was
# read ("fal"); elsewhere Kling's own published price stands in, marked "direct" (*verify*).
# Estimates never go below these (VideoProvider.estimate).
PRICES: dict[str, dict[str, float]] = {
    "kling-v1": {"std": 0.045},  # fal
    "kling-v1-5": {"pro": 0.098},  # direct
    "kling-v1-6": {"std": 0.056, "pro": 0.098},  # direct
    "kling-v2-master": {"pro": 0.28},  # direct
    "kling-v2-1": {"std": 0.056, "pro": 0.098},  # fal
    "kling-v2-1-master": {"pro": 0.28},  # fal
    "kling-v2-5-turbo": {"std": 0.042, "pro": 0.07},  # fal
    "kling-v2-6": {"pro": 0.07},  # fal (audio off)
    # fal (audio off): std from the v3 standard text-to-video page. Two copies of the v3 pro
    # image-to-video page disagree ($0.112 and $0.224): the higher one stands until one is
    # confirmed, so --max-cost can never let a job through at half its price (*verify*)
    "kling-v3": {"std": 0.084, "pro": 0.224},
}

SOUND_PRICES: dict[str, dict[str, float]] = {
    "kling-v2-6": {"pro": 0.14},  # fal
    "kling-v3": {"std": 0.126, "pro": 0.336},  # fal (pro: the higher copy, *verify* as above)
}
"""USD per second with ``generate_audio`` on (voice control costs more still). reelgen sends
sound off, so these are for reference and a later ``sound`` option."""

DURATIONS: dict[str, tuple[float, ...]] = {"kling-v3": tuple(float(d) for d in range(3, 16))}
"""Durations per model where they are not 5 and 10 s."""

# Kling honours cfg_scale on its v1.x models only (kling-api.md); elsewhere it is refused.
CFG_MODELS = frozenset({"kling-v1", "kling-v1-5", "kling-v1-6"})


def endpoint_for(model: str, mode: str, kind: Kind) -> Endpoint | None:
    return ENDPOINTS.get((model, mode, kind))


def modes_for(model: str, kind: Kind) -> tuple[str, ...]:
    """The modes fal hosts ``model`` in for this input kind, std first."""
    return tuple(mode for mode in ("std", "pro") if (model, mode, kind) in ENDPOINTS)


def _spec(model: str) -> ModelSpec:
    keys = [k for k in ENDPOINTS if k[0] == model]
    return ModelSpec(
        durations=DURATIONS.get(model, FIVE_TEN),
        modes=tuple(m for m in ("std", "pro") if any(k[1] == m for k in keys)),
        image_to_video=any(k[2] == I2V for k in keys),
        text_to_video=any(k[2] == T2V for k in keys),
        cfg_scale=model in CFG_MODELS,
        published_prices=dict(PRICES[model]),
    )


MODELS: dict[str, ModelSpec] = {model: _spec(model) for model in PRICES}

# fal hands the frame and the prompt to Kling, so Kling's own limits apply (kling-api.md): only
# the tiers, prices and callbacks (fal's webhooks: ``?fal_webhook=`` on submit) are fal's.
CAPABILITIES = KLING.model_copy(update={"models": MODELS, "callbacks": True})
