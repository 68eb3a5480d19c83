"""Kling-specific options (``--option key=value`` / ``options`` in the library)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reelgen.provider import path_option

CameraType = Literal["simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward"]
AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")


class CameraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    horizontal: float = Field(default=0, ge=-10, le=10, description="Move sideways.")
    vertical: float = Field(default=0, ge=-10, le=10, description="Move up or down.")
    pan: float = Field(default=0, ge=-10, le=10, description="Rotate sideways.")
    tilt: float = Field(default=0, ge=-10, le=10, description="Rotate up or down.")
    roll: float = Field(default=0, ge=-10, le=10, description="Roll.")
    zoom: float = Field(default=0, ge=-10, le=10, description="Zoom in (+) or out (-).")


class CameraControl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: CameraType = Field(description="simple (with config) or a preset move.")
    config: CameraConfig | None = Field(
        default=None, description="For type simple: exactly one non-zero axis, -10..10."
    )

    @model_validator(mode="after")
    def _one_axis(self) -> CameraControl:
        if self.type == "simple":
            if self.config is None:
                raise ValueError("camera_control type simple needs a config")
            moving = [a for a in AXES if getattr(self.config, a)]
            if len(moving) != 1:
                raise ValueError(
                    f"camera_control.config needs exactly one non-zero of {', '.join(AXES)}"
                )
        elif self.config is not None:
            raise ValueError(f"camera_control type {self.type} takes no config")
        return self


class KlingOptions(BaseModel):
    """Options only Kling understands."""

    model_config = ConfigDict(extra="forbid")

    image_tail: str | None = path_option("End frame: a local JPEG/PNG or an http(s) URL.")
    camera_control: CameraControl | None = Field(
        default=None, description="Camera movement (not with image_tail)."
    )
    watermark: bool | None = Field(default=None, description="Also produce a watermarked copy.")
    sound: Literal["on", "off"] | None = Field(
        default=None, description="Generate sound (kling-v2-6 and later)."
    )

    @model_validator(mode="after")
    def _exclusive(self) -> KlingOptions:
        if self.image_tail and self.camera_control:
            raise ValueError("image_tail and camera_control cannot be used together")
        return self
