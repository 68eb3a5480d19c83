"""The Veo models the Gemini API serves, as data: durations, aspect ratios, resolutions,
sound, who may appear, and Google's published price per second.

Sources: the Gemini API guide "Generate videos with Veo" (ai.google.dev/gemini-api/docs/video:
"Veo API parameters and specifications", "Model features", "Model versions", "Limitations") and
the Gemini API pricing page (ai.google.dev/gemini-api/docs/pricing, Veo section). The request
fields are the ones the official ``google-genai`` SDK sends to the Gemini API
(``_GenerateVideosConfig_to_mldev``): it refuses ``seed``, ``generateAudio``, ``fps`` and
Cloud Storage image URIs there, so reelgen does too, before anything is paid for.

On the Gemini API the Veo 3 and 3.1 models always make sound (``generateAudio`` cannot be sent):
their price is the "video with audio" one. Veo 2 is silent.
"""

from __future__ import annotations

from dataclasses import dataclass

from reelgen.capabilities import Capabilities, ImageLimits, ModelSpec

ASPECT_RATIOS = ("16:9", "9:16")
LANDSCAPE, PORTRAIT = ASPECT_RATIOS
PERSON_GENERATION = ("allow_all", "allow_adult", "dont_allow")
HD = "1080p"
MB = 1024 * 1024


@dataclass(frozen=True)
class VeoModel:
    """One Veo model on the Gemini API."""

    durations: tuple[float, ...]
    """``durationSeconds`` it takes (sent as an integer, as the SDK does)."""
    price: float
    """USD per second of output, as published (Veo 3.x: with audio, which is always on)."""
    resolutions: tuple[str, ...] = ()
    """``resolution`` values it takes, the default first; empty: the field is not sent."""
    audio: bool = True
    hd_needs: float | None = None
    """1080p only at this duration (Veo 3.1: "1080p (only supports 8s duration)")."""
    hd_landscape_only: bool = False
    """1080p only at 16:9 (Veo 3: "1080p (16:9 only)")."""
    person_text: tuple[str, ...] = ("allow_all",)
    """``personGeneration`` values text-to-video takes."""
    person_image: tuple[str, ...] = ("allow_adult",)
    """``personGeneration`` values image-to-video takes."""
    stage: str = "stable"


FOUR_SIX_EIGHT = (4.0, 6.0, 8.0)


def _veo31(price: float) -> VeoModel:
    return VeoModel(FOUR_SIX_EIGHT, price, ("720p", HD), hd_needs=8.0, stage="preview")


def _veo3(price: float) -> VeoModel:
    return VeoModel(FOUR_SIX_EIGHT, price, ("720p", HD), hd_landscape_only=True)


MODELS: dict[str, VeoModel] = {
    "veo-3.1-generate-preview": _veo31(0.40),
    "veo-3.1-fast-generate-preview": _veo31(0.15),
    # *verify*: the parameter table gives Veo 3 durations "4", "6", "8"; the feature table
    # of the same page says "8 seconds". The parameter table is what is sent, so it wins here.
    "veo-3.0-generate-001": _veo3(0.40),
    "veo-3.0-fast-generate-001": _veo3(0.15),
    "veo-2.0-generate-001": VeoModel(
        durations=(5.0, 6.0, 8.0),
        price=0.35,
        audio=False,  # "Silent only"; resolution is "Unsupported" (720p output)
        person_text=PERSON_GENERATION,
        person_image=("allow_adult", "dont_allow"),
    ),
}

DEFAULT_MODEL = "veo-3.1-fast-generate-preview"
"""The cheapest model with sound (a planning choice, not Google's)."""

RESULT_TTL = 2 * 24 * 3600.0
""""Generated videos are stored on the server for 2 days, after which they are removed."""

IMAGE = ImageLimits(
    # *verify*: the Gemini API guide names no formats; JPEG and PNG are what its examples
    # send (``mimeType`` image/png, image/jpeg). Other formats are refused before paying.
    formats=("JPEG", "PNG"),
    # "Any image resolution and aspect ratio up to 20MB file size" (Veo 2's model card; the
    # other cards give no figure, *verify*). The picture travels base64-encoded in the JSON.
    max_bytes=20 * MB,
    urls=False,  # the Gemini API takes the bytes inline (``bytesBase64Encoded``), no URLs
)


def _spec(model: VeoModel) -> ModelSpec:
    return ModelSpec(durations=model.durations, published_prices={"std": model.price})


CAPABILITIES = Capabilities(
    models={name: _spec(model) for name, model in MODELS.items()},
    default_model=DEFAULT_MODEL,
    default_duration=8,  # every model offers 8 s, and the API's own default is 8
    image=IMAGE,
    aspect_ratios=ASPECT_RATIOS,
    # "Request latency: Min: 11 seconds; Max: 6 minutes (during peak hours)."
    expected_seconds=90,
    callbacks=False,
)
