"""Shared fixtures: an isolated REELGEN_HOME, a fake clock, test images, and the fakes of the
cloud providers (Kling, fal, Replicate, Veo)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import uuid
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
from tests import services
from tests.fake_checks import FakeClock
from tests.fake_fal import DEFAULT_KEY as FAKE_FAL_KEY
from tests.fake_fal import FakeFal
from tests.fake_kling import DEFAULT_ACCESS_KEY as FAKE_AK
from tests.fake_kling import DEFAULT_SECRET_KEY as FAKE_SK
from tests.fake_kling import FakeKling
from tests.fake_replicate import DEFAULT_TOKEN as FAKE_REPLICATE_TOKEN
from tests.fake_replicate import FakeReplicate
from tests.fake_veo import DEFAULT_KEY as FAKE_VEO_KEY
from tests.fake_veo import FakeVeo

FakeT = TypeVar("FakeT", FakeKling, FakeFal)
Handler = Callable[[httpx.Request], httpx.Response]

ENV_VARS = (
    "KLING_ACCESS_KEY",
    "KLING_SECRET_KEY",
    "KLING_API_KEY",
    "KLING_BASE_URL",
    "FAL_KEY",
    "FAL_QUEUE_URL",
    "FAL_WEBHOOK_JWKS",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "VEO_API_URL",
    "REPLICATE_API_TOKEN",
    "REPLICATE_WEBHOOK_SECRET",
    "REPLICATE_BASE_URL",
    "REELGEN_CONFIG",
    "REELGEN_PROVIDER",
    "REELGEN_MAX_COST",
    "REELGEN_LOAD_PLUGINS",
    "REELGEN_DISABLE_PLUGINS",
    "REELGEN_DB",
    # object storage: a developer's own AWS settings never reach a test
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
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


def unavailable(why: str) -> None:
    """A server a test needs is missing: skipped locally, saying why; a failure in CI, which
    always provides them (.ci/run)."""
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI must provide it)")
    pytest.skip(why)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for the tests: CI's (``REELGEN_TEST_POSTGRES``), or a throwaway
    cluster started here when PostgreSQL is installed; skipped, saying why, otherwise."""
    url = os.environ.get("REELGEN_TEST_POSTGRES")
    if url:
        yield url
        return
    if services.pg_bindir() is None:
        unavailable("PostgreSQL is not installed and REELGEN_TEST_POSTGRES is not set")
    with services.postgres(Path(tempfile.mkdtemp(prefix="reelgen-pg-"))) as started:
        yield started


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped after the test."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """An S3-compatible server for the tests: CI's (``REELGEN_TEST_S3``), or moto's server
    started here on 127.0.0.1; skipped, saying why, when moto is not installed."""
    url = os.environ.get("REELGEN_TEST_S3")
    if url:
        yield url
        return
    try:
        import moto.server  # noqa: F401 - only whether it is there
    except ImportError:
        unavailable(
            'moto is not installed (pip install "moto[server]") and REELGEN_TEST_S3 is not set'
        )
    with services.s3(Path(tempfile.mkdtemp(prefix="reelgen-s3-"))) as started:
        yield started


@pytest.fixture
def s3_bucket(
    s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A new, empty bucket on the test server, and the AWS settings that reach it (the
    endpoint, obviously fake keys, no config files); its name. Emptied and removed after."""
    import boto3

    aws = tmp_path_factory.mktemp("aws")
    settings = {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(aws / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials"),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    name = f"reelgen-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    yield name
    with contextlib.suppress(client.exceptions.NoSuchBucket):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)


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


# -- the fake Gemini API (Veo) ----------------------------------------------------------------


@pytest.fixture
def veo_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_VEO_KEY)


@pytest.fixture
def make_fake_veo(
    transports: contextlib.ExitStack, timer: FakeTimer, veo_keys: None
) -> Callable[..., FakeVeo]:
    """Build a FakeVeo (key and clock preset) and serve it behind every HTTP client reelgen
    makes; the newest one built answers."""

    def build(**kwargs: Any) -> FakeVeo:
        fake = FakeVeo(**{"key": FAKE_VEO_KEY, "clock": timer.wall, **kwargs})
        transports.enter_context(use_transport(httpx.MockTransport(fake.handler)))
        return fake

    return build


@pytest.fixture
def fake_veo(make_fake_veo: Callable[..., FakeVeo]) -> FakeVeo:
    """The fake Gemini API (Veo) behind every HTTP client reelgen makes, on the fake clock."""
    return make_fake_veo()


# -- the fake Replicate --------------------------------------------------------------------


@pytest.fixture
def replicate_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", FAKE_REPLICATE_TOKEN)


@pytest.fixture
def make_fake_replicate(
    transports: contextlib.ExitStack, timer: FakeTimer, replicate_keys: None
) -> Callable[..., FakeReplicate]:
    """Build a FakeReplicate (token and clock preset) and serve it behind every HTTP client
    reelgen makes; the newest one built answers."""

    def build(**kwargs: Any) -> FakeReplicate:
        fake = FakeReplicate(**{"token": FAKE_REPLICATE_TOKEN, "clock": timer.wall, **kwargs})
        transports.enter_context(use_transport(httpx.MockTransport(fake.handler)))
        return fake

    return build


@pytest.fixture
def fake_replicate(make_fake_replicate: Callable[..., FakeReplicate]) -> FakeReplicate:
    """The fake Replicate predictions API behind every HTTP client reelgen makes, on the fake
    clock."""
    return make_fake_replicate()
