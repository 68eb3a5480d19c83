"""Crop to format: a picture cut to the aspect ratio asked for (9:16, 1:1, ...) before any
provider sees it, since image-to-video models keep the picture's own framing.

The crop is centred and never scaled; the cropped copy is named by a hash of the picture and
the ratio, so the same request makes the same file (a batch rerun sees the same input) and it is
made once.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from PIL import Image, ImageOps

from .errors import InvalidRequest

RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")


def parse_ratio(text: str) -> float:
    """``"9:16"`` -> 0.5625 (width / height); InvalidRequest for anything else."""
    found = RATIO.match(text)
    if found is None or float(found[1]) <= 0 or float(found[2]) <= 0:
        raise InvalidRequest(f"`aspect_ratio` {text!r}: give WIDTH:HEIGHT, e.g. 9:16 or 1:1")
    return float(found[1]) / float(found[2])


def cropped(image: str, ratio: str, folder: Path) -> Path:
    """``image`` centre-cropped to ``ratio`` in ``folder`` (made once; reused after)."""
    wanted = parse_ratio(ratio)
    source = Path(image).expanduser()
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"image not readable: {image} ({exc.strerror or exc})") from None
    digest = hashlib.sha256(data + ratio.encode()).hexdigest()[:20]
    try:
        with Image.open(source) as opened:
            picture = ImageOps.exif_transpose(opened)
            fmt = "PNG" if opened.format == "PNG" else "JPEG"
            width, height = picture.size
            if height * wanted > width:  # too tall: keep the width, cut top and bottom
                new_w, new_h = width, round(width / wanted)
            else:  # too wide: keep the height, cut the sides
                new_w, new_h = round(height * wanted), height
            left, top = (width - new_w) // 2, (height - new_h) // 2
            target = folder / f"{source.stem}.{digest}.{fmt.lower().replace('jpeg', 'jpg')}"
            if target.is_file():
                return target
            folder.mkdir(parents=True, exist_ok=True)
            cut = picture.crop((left, top, left + new_w, top + new_h))
            if fmt == "JPEG" and cut.mode not in ("RGB", "L"):
                cut = cut.convert("RGB")
            partial = target.with_suffix(target.suffix + ".part")
            cut.save(partial, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
            partial.replace(target)
            return target
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"cannot crop {image} to {ratio}: {exc}") from None
