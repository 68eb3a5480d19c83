"""Shared option bundles (decorators), their parsers, and the request they build."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..models import VideoRequest

F = TypeVar("F", bound=Callable[..., Any])


class FiniteFloat(click.FloatRange):
    """A float that is a real number (no nan/inf) within the range."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FINITE_NON_NEGATIVE = FiniteFloat(min=0)
FINITE_POSITIVE = FiniteFloat(min=0, min_open=True)


def parse_option(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> Any:
    """``--option key=value``: value parsed as JSON when it is JSON, else kept as text."""
    options: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE")
        try:
            options[key.strip()] = json.loads(raw)
        except ValueError:
            options[key.strip()] = raw
    return options


def request_options(fn: F) -> F:
    """The arguments shared by ``generate`` and ``estimate``."""
    decorators = [
        click.argument("image", required=False),
        click.option("-p", "--prompt", default="", help="What should happen in the clip."),
        click.option(
            "-P", "--provider", help="One provider, no failover (see `reelgen providers`)."
        ),
        click.option(
            "--route", help="A [routes.NAME] from the config file: its providers, with failover."
        ),
        click.option("--model", help="Model (see `reelgen providers`)."),
        click.option("--duration", type=float, help="Seconds of video."),
        click.option("--mode", help="std (cheaper) or pro (higher quality), where offered."),
        click.option(
            "--cfg-scale", type=float, help="Prompt adherence, 0..1 (models that take it)."
        ),
        click.option("--negative-prompt", help="What to avoid."),
        click.option(
            "--aspect-ratio",
            help="Frame shape, e.g. 9:16 or 1:1 (an image is centre-cropped to it first).",
        ),
        click.option("--seed", type=int, help="Seed, where the provider takes one."),
        click.option(
            "--option",
            "options",
            multiple=True,
            callback=parse_option,
            metavar="KEY=VALUE",
            help="Provider option (JSON values allowed); see `reelgen providers --options`.",
        ),
        click.option(
            "--max-cost",
            type=FINITE_NON_NEGATIVE,
            help="Refuse if the estimate is above this (USD).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def build_request(params: dict[str, Any]) -> VideoRequest:
    from pydantic import ValidationError

    from ..errors import InvalidRequest
    from ..models import VideoRequest

    try:
        return VideoRequest(
            image=params["image"],
            prompt=params["prompt"] or "",
            negative_prompt=params["negative_prompt"],
            duration=params["duration"],
            aspect_ratio=params["aspect_ratio"],
            model=params["model"],
            mode=params["mode"],
            cfg_scale=params["cfg_scale"],
            seed=params["seed"],
            options=params["options"],
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"--{field.replace('_', '-')}: {first['msg']}") from None


def confirm_overwrite(output: str | None, *, as_json: bool) -> bool:
    """On a terminal, ask before overwriting an existing output file (True: overwrite)."""
    if output is None or as_json or not sys.stdin.isatty():
        return False
    from ..outputs import resolve_target
    from ..storage import is_remote

    if is_remote(output):
        return False  # an existing object is refused at planning, naming --force

    target = resolve_target(output, "probe")
    if not target.is_file():
        return False
    if click.confirm(f"{target} exists; overwrite it?", err=True):
        return True
    from ..errors import OutputExists

    raise OutputExists(f"{target} exists; not overwritten (pass --force to overwrite it)")
