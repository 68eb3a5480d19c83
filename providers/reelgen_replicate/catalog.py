"""What reelgen runs on Replicate, as data: one Replicate model (``owner/name``) per reelgen
model, the input field names each takes, its modes, durations and prices.

Kling models keep Kling's own reelgen names (``kling-v2-1``, ``kling-v2-5-turbo``, as in
``reelgen_kling.catalog``), so a request written for ``kling`` runs here unchanged: Replicate
is a third route to Kling after Kling itself and fal. ``seedance-1-lite`` (ByteDance) is a
second family, for routes that may fail over beyond Kling.

Field names and enums come from each model's input schema on Replicate (the model page's API
tab, mirrored by third-party catalogues). Where the value below was not confirmed from a
public source it carries a *verify* note.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from reelgen.provider import Capabilities, ModelSpec
from reelgen_kling.catalog import CAPABILITIES as KLING

FIVE_TEN = (5.0, 10.0)  # sent as the integers 5 and 10


@dataclass(frozen=True)
class ReplicateModel:
    """One official model on Replicate and the names its input uses for reelgen's fields."""

    slug: str
    """``owner/name``: ``POST /v1/models/{owner}/{name}/predictions``."""
    modes: Mapping[str, str | None]
    """reelgen mode -> the value of the model's ``mode`` input (None: the model has no
    ``mode`` input; it comes in that one tier)."""
    prices: Mapping[str, float]
    """reelgen mode -> USD per second of output."""
    start_field: str | None
    """The start frame (image-to-video); None: text-to-video only."""
    text_to_video: bool
    """The model runs without a start frame (then ``aspect_ratio`` says the frame shape)."""
    end_field: str | None = None
    """The end frame, where the model has one."""
    end_modes: frozenset[str] = frozenset()
    """The reelgen modes in which the end frame is accepted."""
    seed: bool = False
    """The model takes a ``seed``."""
    negative_prompt: bool = False
    """The model takes a ``negative_prompt`` (elsewhere one is refused, never dropped)."""
    fixed: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Inputs always sent with this model."""

    @property
    def owner(self) -> str:
        return self.slug.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.slug.split("/", 1)[1]


MODELS: dict[str, ReplicateModel] = {
    # kwaivgi/kling-v2.1: image-to-video only (start_image required); ``mode`` "standard"
    # (720p) or "pro" (1080p); end_image in pro mode only; duration 5 or 10.
    # Prices *verify*: not confirmed from Replicate's page; Kling's own published prices
    # (std $0.056/s, pro $0.098/s) stand in, so an estimate is never below what Kling charges.
    "kling-v2-1": ReplicateModel(
        slug="kwaivgi/kling-v2.1",
        negative_prompt=True,
        modes=MappingProxyType({"std": "standard", "pro": "pro"}),
        prices=MappingProxyType({"std": 0.056, "pro": 0.098}),
        start_field="start_image",
        text_to_video=False,
        end_field="end_image",
        end_modes=frozenset({"pro"}),
    ),
    # kwaivgi/kling-v2.5-turbo-pro: pro tier only (no ``mode`` input); text-to-video (with
    # aspect_ratio) and image-to-video (start_image; ``image`` is its deprecated alias).
    # Price *verify*: Kling's published turbo pro price ($0.07/s) stands in.
    "kling-v2-5-turbo": ReplicateModel(
        slug="kwaivgi/kling-v2.5-turbo-pro",
        negative_prompt=True,
        modes=MappingProxyType({"pro": None}),
        prices=MappingProxyType({"pro": 0.07}),
        start_field="start_image",
        text_to_video=True,
    ),
    # bytedance/seedance-1-lite: text- and image-to-video (``image``), resolution 480p/720p/
    # 1080p (reelgen asks for 720p and prices it so), seed. Field names and the 720p price
    # ($0.036/s) *verify*.
    "seedance-1-lite": ReplicateModel(
        slug="bytedance/seedance-1-lite",
        modes=MappingProxyType({"std": None}),
        prices=MappingProxyType({"std": 0.036}),
        start_field="image",
        text_to_video=True,
        seed=True,
        fixed=MappingProxyType({"resolution": "720p"}),
    ),
}

KLING_MODELS = frozenset(name for name, m in MODELS.items() if m.owner == "kwaivgi")
"""The reelgen models that are Kling's (same names as the ``kling`` provider's)."""


def modes_for(model: str) -> tuple[str, ...]:
    """The reelgen modes Replicate hosts ``model`` in, std first."""
    found = MODELS.get(model)
    if found is None:
        return ()
    return tuple(mode for mode in ("std", "pro") if mode in found.modes)


def _spec(model: ReplicateModel) -> ModelSpec:
    return ModelSpec(
        durations=FIVE_TEN,
        modes=tuple(mode for mode in ("std", "pro") if mode in model.modes),
        image_to_video=model.start_field is not None,
        text_to_video=model.text_to_video,
        cfg_scale=False,  # none of these models has a cfg_scale input
        published_prices=dict(model.prices),
    )


SPECS: dict[str, ModelSpec] = {name: _spec(model) for name, model in MODELS.items()}

RESULT_TTL = 3600.0
"""Seconds Replicate keeps an API prediction's input, output and files ("automatically removed
after an hour", the predictions.get reference): the core downloads at once."""

# The start frame goes to the model as Kling's does (kling-v2.1's schema: jpg/jpeg/png, at
# most 10 MB), so Kling's image limits apply to every model here (the strictest of them). Only
# the models, tiers, prices and callbacks are Replicate's.
CAPABILITIES: Capabilities = KLING.model_copy(
    update={
        "models": SPECS,
        "default_model": "kling-v2-5-turbo",
        "default_mode": "std",  # where the model has std; else its one tier (see provider)
        "callbacks": True,  # webhook + webhook_events_filter in the create body
    }
)
