"""What a provider can do, declared as data: models, durations, modes, image limits, prices.

Plain data with no behaviour, so validation, routing and listings read it without importing the
provider contract.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ImageLimits(BaseModel):
    """What the provider accepts as a start frame. The defaults limit nothing a provider did not
    declare (any format Pillow reads, any size, any shape): each provider states its own."""

    formats: tuple[str, ...] | None = Field(default=None, description="None: any format.")
    max_bytes: int | None = Field(default=None, gt=0, description="None: any size.")
    min_side: int = Field(default=1, ge=1, description="Shortest side, in pixels.")
    min_aspect: float | None = Field(default=None, gt=0, description="Width/height at least.")
    max_aspect: float | None = Field(default=None, gt=0, description="Width/height at most.")
    urls: bool = Field(default=True, description="http(s) URLs are passed through.")


class ModelSpec(BaseModel):
    """One model: the durations and modes it offers and its published price per second."""

    durations: tuple[float, ...]
    modes: tuple[str, ...] = ("std",)
    image_to_video: bool = True
    text_to_video: bool = True
    cfg_scale: bool = False
    published_prices: dict[str, float] = Field(
        default_factory=dict, description="mode -> USD per second, as the vendor publishes it"
    )
    extra_prices: dict[str, float] = Field(
        default_factory=dict,
        description="Other published USD per second, by what they add, e.g. 'pro+sound' or "
        "'1080p+audio' (listed by `reelgen providers`; the provider's estimate applies them)",
    )


class Capabilities(BaseModel):
    """What a provider can do, declared as data so the core validates before paying."""

    models: dict[str, ModelSpec]
    default_model: str
    default_mode: str = "std"
    default_duration: float = 5
    image: ImageLimits | None = Field(default_factory=ImageLimits)
    max_prompt_chars: int | None = None
    aspect_ratios: tuple[str, ...] = ()
    cfg_scale_range: tuple[float, float] = (0.0, 1.0)
    expected_seconds: float = Field(
        default=60, description="Typical processing time of a default job, in seconds."
    )
    callbacks: bool = Field(
        default=False,
        description="The provider can POST status changes to a request's callback_url.",
    )

    @property
    def image_to_video(self) -> bool:
        return any(m.image_to_video for m in self.models.values())

    @property
    def text_to_video(self) -> bool:
        return any(m.text_to_video for m in self.models.values())
