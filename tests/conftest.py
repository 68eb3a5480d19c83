"""Shared fixtures: an isolated REELGEN_HOME, a fake clock, test images, the fake Kling and
the fake fal."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from reelgen import plugins
from reelgen.engine import Engine
from reelgen.http import use_transport
from reelgen.testing import FakeTimer
from reelgen.waiting import Waiter
from tests.fake_checks import FakeClock
from tests.fake_fal import DEFAULT_KEY as FAKE_FAL_KEY
from tests.fake_fal import FakeFal
from tests.fake_kling import DEFAULT_ACCESS_KEY as FAKE_AK
from tests.fake_kling import DEFAULT_SECRET_KEY as FAKE_SK
from tests.fake_kling import FakeKling

FakeT = TypeVar("FakeT", FakeKling, FakeFal)
Handler = Callable[[httpx.Request], httpx.Response]

ENV_VARS = (
    "KLING_ACCESS_KEY",
    "KLING_SECRET_KEY",
    "KLING_API_KEY",
    "KLING_BASE_URL",
    "FAL_KEY",
    "FAL_QUEUE_URL",
    "REELGEN_CONFIG",
    "REELGEN_PROVIDER",
    "REELGEN_MAX_COST",
    "REELGEN_LOAD_PLUGINS",
    "REELGEN_DISABLE_PLUGINS",
)


@pytest.fixture(autouse=True)
def isolated(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Every test gets its own REELGEN_HOME and working directory, and no real keys."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("REELGEN_HOME", str(home))
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("work"))
    plugins.reset_providers()
    yield home
    plugins.reset_providers()


@pytest.fixture
def timer() -> FakeTimer:
    return FakeTimer()


@pytest.fixture
def clock() -> FakeClock:
    """A settable wall clock for a fake's self-tests: ``clock.now += 60``."""
    return FakeClock()


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., Path]:
    """Write a test picture: make_image(1280, 720, "JPEG", name="photo.jpg")."""

    def make(width: int = 1280, height: int = 720, fmt: str = "JPEG", name: str = "") -> Path:
        suffix = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp"}[fmt]
        path = tmp_path / (name or f"img-{width}x{height}{suffix}")
        img = Image.new("RGB", (width, height), (40, 90, 160))
        for x in range(0, width, max(1, width // 8)):
            for y in range(height):
                img.putpixel((x, y), (250, 200, 10))
        img.save(path, fmt)
        return path

    return make


@pytest.fixture
def kling_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLING_ACCESS_KEY", FAKE_AK)
    monkeypatch.setenv("KLING_SECRET_KEY", FAKE_SK)


@pytest.fixture
def transports() -> Iterator[contextlib.ExitStack]:
    """The HTTP handlers served behind every client reelgen makes in this test (the newest
    answers), all taken down at its end, the newest first."""
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.fixture
def serve_handler(transports: contextlib.ExitStack) -> Callable[[Handler], None]:
    """Serve a handler (one that wraps a fake, to script what the fake cannot); from then on
    it answers every request."""
    return lambda handler: transports.enter_context(use_transport(httpx.MockTransport(handler)))


def fake_maker(
    transports: contextlib.ExitStack, make: Callable[..., FakeT], **defaults: Any
) -> Callable[..., FakeT]:
    """``make`` (a fake's class) with ``defaults``, each fake built served at once."""

    def build(**kwargs: Any) -> FakeT:
        fake = make(**{**defaults, **kwargs})
        transports.enter_context(use_transport(httpx.MockTransport(fake.handler)))
        return fake

    return build


@pytest.fixture
def make_fake(
    transports: contextlib.ExitStack, timer: FakeTimer, kling_keys: None
) -> Callable[..., FakeKling]:
    """Build a FakeKling (keys and clock preset) and serve it behind every HTTP client reelgen
    makes; the newest one built answers."""
    return fake_maker(
        transports, FakeKling, access_key=FAKE_AK, secret_key=FAKE_SK, clock=timer.wall
    )


@pytest.fixture
def fake_kling(make_fake: Callable[..., FakeKling]) -> FakeKling:
    """The fake Kling API behind every HTTP client reelgen makes, on the fake clock."""
    return make_fake()


@pytest.fixture
def fal_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", FAKE_FAL_KEY)


@pytest.fixture
def make_fake_fal(
    transports: contextlib.ExitStack, timer: FakeTimer, fal_keys: None
) -> Callable[..., FakeFal]:
    """Build a FakeFal (key and clock preset) and serve it behind every HTTP client reelgen
    makes; the newest one built answers."""
    return fake_maker(transports, FakeFal, key=FAKE_FAL_KEY, clock=timer.wall)


@pytest.fixture
def fake_fal(make_fake_fal: Callable[..., FakeFal]) -> FakeFal:
    """The fake fal queue API behind every HTTP client reelgen makes, on the fake clock."""
    return make_fake_fal()


@pytest.fixture
def engine(timer: FakeTimer) -> Iterator[Engine]:
    eng = Engine(waiter=Waiter(timer=timer, rng=random.Random(0)), clock=timer.wall)
    yield eng
    asyncio.run(eng.aclose())
    eng.close()


@pytest.fixture
def cli(timer: FakeTimer, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run the reelgen CLI in-process on the fake clock: cli("generate", ...)."""
    from reelgen import cli as cli_module
    from reelgen.cli import boundary

    monkeypatch.setattr(
        boundary,
        "make_engine",
        lambda: Engine(waiter=Waiter(timer=timer, rng=random.Random(0)), clock=timer.wall),
    )

    def run(*args: str, input: str | None = None, **kw: Any) -> Result:
        return CliRunner().invoke(cli_module.cli, list(args), input=input, **kw)

    return run
