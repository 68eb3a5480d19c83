"""The camera moves the offline provider renders (a light module: the provider's class loads
without PyAV, which only a render needs)."""

from __future__ import annotations

from typing import Literal, get_args

Motion = Literal["zoom_in", "zoom_out", "pan_left", "pan_right", "pan_up", "pan_down"]
MOTIONS: tuple[str, ...] = get_args(Motion)
