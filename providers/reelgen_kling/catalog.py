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

SOUND_PRICES: dict[str, float] = {
    "kling-v2-6": 0.14,  # kling-api.md: "v2-6 with sound $0.14" (pro)
    "kling-v3": 0.224,  # not published: "roughly twice the silent price" (2 x $0.112 pro)
}
"""USD per second with ``sound: on`` (which needs ``mode: pro``); voice costs more still."""

for _name, _price in SOUND_PRICES.items():
    MODELS[_name].extra_prices["pro+sound"] = _price

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
