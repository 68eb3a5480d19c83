"""What Kling offers, as data: models, durations, modes, published prices (kling-api.md)."""

from __future__ import annotations

from reelgen.provider import Capabilities, ImageLimits, ModelSpec

STD_PRO = ("std", "pro")
FIVE_TEN = (5.0, 10.0)


def _model(
    std: float,
    pro: float,
    *,
    t2v: bool = True,
    cfg: bool = False,
    durations: tuple[float, ...] = FIVE_TEN,
) -> ModelSpec:
    return ModelSpec(
        durations=durations,
        modes=STD_PRO,
        image_to_video=True,
        text_to_video=t2v,
        cfg_scale=cfg,
        published_prices={"std": std, "pro": pro},
    )


MODELS: dict[str, ModelSpec] = {
    "kling-v1": _model(0.028, 0.098, cfg=True),
    "kling-v1-5": _model(0.056, 0.098, t2v=False, cfg=True),
    "kling-v1-6": _model(0.056, 0.098, cfg=True),
    "kling-v2-master": _model(0.28, 0.28),
    "kling-v2-1": _model(0.056, 0.098, t2v=False),
    "kling-v2-1-master": _model(0.28, 0.28),
    "kling-v2-5-turbo": _model(0.042, 0.07),
    "kling-v2-6": _model(0.042, 0.07),
    "kling-v3": _model(0.084, 0.112, durations=tuple(float(d) for d in range(3, 16))),
}

SOUND_MODELS = frozenset({"kling-v2-6", "kling-v3"})
"""Models that take ``sound`` ("kling-v2-6 and later", kling-api.md; the v3 family on the classic
text2video/image2video endpoints is ``kling-v3`` alone: Omni and Turbo have their own endpoints
and request shapes, so they are not in this catalog)."""

SOUND_NEEDS_PRO = frozenset({"kling-v2-6"})
"""Models whose ``sound: on`` is refused in ``std`` (independent clients and resellers: "requires
mode pro" on v2.6). kling-v3 is sold with sound in std too (720p with audio): not listed."""

SOUND_PRICES: dict[str, dict[str, float]] = {
    # kling-api.md: "v2-6 with sound $0.14" (pro; std takes no sound)
    "kling-v2-6": {"pro": 0.14},
    # *verify*: Kling's own price page is not in any public copy we could read. Resellers that
    # pass Kling's prices through with a flat markup agree on 1.5x the silent price (std
    # $0.084 -> $0.126, pro $0.112 -> $0.168; e.g. $1.68 for 10 s of pro with audio).
    "kling-v3": {"std": 0.126, "pro": 0.168},
}
"""USD per second with ``sound: on``, by model and mode. Voice control (``voice_list``, billed at a
higher "with specified voice" rate whose price is not published) is not offered: it is refused."""

MOTION_BRUSH_MODELS = frozenset({"kling-v1", "kling-v1-5"})
"""Models whose image-to-video takes ``static_mask``/``dynamic_masks`` (Kling's capability map:
kling-v1 std and pro, kling-v1-5 pro; none of v1-6, v2.x or v3). *verify*: read from copies of
the capability map, not the live page; the mode and duration rules are left to Kling (1201)."""

MAX_DYNAMIC_MASKS = 6
"""``dynamic_masks`` holds at most 6 groups (Kling's image-to-video reference)."""

TRAJECTORY_POINTS = (2, 77)
"""Points per trajectory for a 5 s clip (Kling's reference; origin at the image's bottom-left)."""

# the sound prices as `reelgen providers` lists them ("pro+sound"); the estimate reads SOUND_PRICES
MODELS.update(
    (
        model,
        MODELS[model].model_copy(update={"extra_prices": {f"{m}+sound": p for m, p in by.items()}}),
    )
    for model, by in SOUND_PRICES.items()
)

CAPABILITIES = Capabilities(
    models=MODELS,
    default_model="kling-v2-5-turbo",
    default_mode="std",
    default_duration=5,
    image=ImageLimits(
        formats=("JPEG", "PNG"),
        max_bytes=10 * 1024 * 1024,
        min_side=300,
        min_aspect=1 / 2.5,
        max_aspect=2.5,
        urls=True,
    ),
    max_prompt_chars=2500,
    aspect_ratios=("16:9", "9:16", "1:1"),
    cfg_scale_range=(0.0, 1.0),
    expected_seconds=120,
    callbacks=True,  # callback_url in the create body (kling-api.md)
)
