"""Kling-specific options (``--option key=value`` / ``options`` in the library)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reelgen.provider import path_option

from .catalog import MAX_DYNAMIC_MASKS, TRAJECTORY_POINTS

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


class TrajectoryPoint(BaseModel):
    """One point of a motion-brush path, in pixels of the start image, origin at its
    bottom-left corner (y counts up)."""

    model_config = ConfigDict(extra="forbid")

    x: int = Field(ge=0, description="Pixels from the image's left edge.")
    y: int = Field(ge=0, description="Pixels from the image's bottom edge (not the top).")


class DynamicMask(BaseModel):
    """One motion-brush stroke: the area that moves (a mask picture) and the path it follows."""

    model_config = ConfigDict(extra="forbid")

    mask: str = Field(
        description="Mask picture: a local JPEG/PNG or an http(s) URL, same aspect ratio as the "
        "start image."
    )
    trajectories: list[TrajectoryPoint] = Field(
        min_length=TRAJECTORY_POINTS[0],
        max_length=TRAJECTORY_POINTS[1],
        description=f"The path, {TRAJECTORY_POINTS[0]}-{TRAJECTORY_POINTS[1]} points in order.",
    )


class KlingOptions(BaseModel):
    """Options only Kling understands."""

    model_config = ConfigDict(extra="forbid")

    image_tail: str | None = path_option(
        "End frame: a local JPEG/PNG or an http(s) URL (not with camera_control or masks)."
    )
    camera_control: CameraControl | None = Field(
        default=None, description="Camera movement (not with image_tail or masks)."
    )
    static_mask: str | None = path_option(
        "Motion brush (kling-v1, kling-v1-5): the area that stays still, a local JPEG/PNG or an "
        "http(s) URL with the start image's aspect ratio (not with image_tail or camera_control)."
    )
    dynamic_masks: list[DynamicMask] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_DYNAMIC_MASKS,
        description=f"Motion brush: up to {MAX_DYNAMIC_MASKS} areas that move, each "
        '{"mask": FILE_OR_URL, "trajectories": [{"x": X, "y": Y}, ...]} (pixels, origin at the '
        "image's bottom-left).",
    )
    watermark: bool | None = Field(default=None, description="Also produce a watermarked copy.")
    sound: Literal["on", "off"] | None = Field(
        default=None,
        description="Generate sound (kling-v2-6 in pro, kling-v3 in std or pro), priced higher.",
    )

    @property
    def mask_files(self) -> list[tuple[str, str]]:
        """(option name, file or URL) of every motion-brush mask, static first."""
        found = [("static_mask", self.static_mask)] if self.static_mask else []
        for i, dynamic in enumerate(self.dynamic_masks or []):
            found.append((f"dynamic_masks[{i}].mask", dynamic.mask))
        return found

    @model_validator(mode="after")
    def _exclusive(self) -> KlingOptions:
        """End frame, motion brush and camera control are mutually exclusive (kling-api.md)."""
        groups = [
            name
            for name, used in (
                ("image_tail", bool(self.image_tail)),
                ("motion brush (static_mask/dynamic_masks)", bool(self.mask_files)),
                ("camera_control", self.camera_control is not None),
            )
            if used
        ]
        if len(groups) > 1:
            raise ValueError(f"{' and '.join(groups)} cannot be used together; keep one")
        return self
