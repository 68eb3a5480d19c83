"""Budgets that hold: configured prices are finite and not negative, and an estimate never falls
below the vendor's published price, so --max-cost cannot be slipped past by a setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from reelgen import Job, JobStatus, VideoProvider, VideoRequest, VideoResult
from reelgen.provider import Capabilities, ModelSpec, ProviderSettings
from tests.cli_helpers import Cli, refused
from tests.fake_kling import FakeKling

BAD_PRICES = [
    ("price_per_second = {v}", "providers.kling.price_per_second"),
    ('prices = {{ "kling-v2-5-turbo" = {v} }}', "providers.kling.prices.kling-v2-5-turbo"),
    ('prices = {{ "kling-v2-5-turbo/std" = {v} }}', "providers.kling.prices.kling-v2-5-turbo/std"),
]


def estimate_json(cli: Cli, image: Path, *args: str) -> dict[str, object]:
    result = cli("estimate", str(image), "-p", "x", "-P", "kling", "--json", *args)
    assert result.exit_code == 0, result.stderr
    estimate: dict[str, object] = json.loads(result.stdout)["estimate"]
    return estimate


@pytest.mark.parametrize("value", ["-3.0", "inf", "-inf", "nan"])
@pytest.mark.parametrize(("line", "key"), BAD_PRICES)
def test_a_negative_or_infinite_price_in_the_config_is_refused(
    cli: Cli, fake_kling: FakeKling, make_image, isolated: Path, line: str, key: str, value: str
) -> None:
    """A negative, infinite or NaN price in config.toml stops estimate with exit 2 and the key."""
    (isolated / "config.toml").write_text("[providers.kling]\n" + line.format(v=value) + "\n")
    result = cli("estimate", str(make_image()), "-p", "x", "-P", "kling")
    refused(result, fake_kling, "config.toml", key)


def test_a_negative_price_cannot_slip_past_max_cost(
    cli: Cli, fake_kling: FakeKling, make_image, isolated: Path
) -> None:
    """prices = -3/s used to estimate $-15.00 and pass --max-cost 0.01; now nothing is sent."""
    (isolated / "config.toml").write_text(
        '[providers.kling]\nprices = { "kling-v2-5-turbo" = -3.0 }\n'
    )
    image = str(make_image())
    result = cli("generate", image, "-p", "x", "-P", "kling", "--max-cost", "0.01")
    refused(result, fake_kling, "providers.kling.prices.kling-v2-5-turbo")


def test_a_flat_price_below_published_gives_the_published_price(
    cli: Cli, make_image, isolated: Path
) -> None:
    """price_per_second = 0.05 for kling-v2-master ($0.28/s published) estimates $0.28/s."""
    (isolated / "config.toml").write_text("[providers.kling]\nprice_per_second = 0.05\n")
    estimate = estimate_json(cli, make_image(), "--model", "kling-v2-master")
    assert estimate["price_per_second"] == pytest.approx(0.28)
    assert estimate["amount"] == pytest.approx(1.40)
    assert estimate["basis"] == (
        "providers.kling.price_per_second ($0.05/s) is below kling's published price; "
        "using the published price"
    )


@pytest.mark.parametrize("key", ["kling-v2-master", "kling-v2-master/pro"])
def test_a_prices_entry_below_published_gives_the_published_price(
    cli: Cli, make_image, isolated: Path, key: str
) -> None:
    """A prices entry under the published price is raised to it, and the basis says why."""
    (isolated / "config.toml").write_text(f'[providers.kling]\nprices = {{ "{key}" = 0.01 }}\n')
    estimate = estimate_json(cli, make_image(), "--model", "kling-v2-master", "--mode", "pro")
    assert estimate["price_per_second"] == pytest.approx(0.28)
    assert f'providers.kling.prices."{key}" ($0.01/s) is below' in str(estimate["basis"])


def test_a_price_above_published_is_kept(cli: Cli, make_image, isolated: Path) -> None:
    """A configured price over the published one (a reseller's margin) is used as set."""
    (isolated / "config.toml").write_text("[providers.kling]\nprice_per_second = 0.5\n")
    estimate = estimate_json(cli, make_image(), "--model", "kling-v2-master")
    assert estimate["price_per_second"] == pytest.approx(0.5)
    assert estimate["basis"] == "providers.kling.price_per_second"


def test_max_cost_holds_against_a_too_low_flat_price(
    cli: Cli, fake_kling: FakeKling, make_image, isolated: Path
) -> None:
    """price_per_second = 0.001 cannot get a $1.40 kling-v2-master job past --max-cost 0.10."""
    (isolated / "config.toml").write_text("[providers.kling]\nprice_per_second = 0.001\n")
    image = str(make_image())
    result = cli(
        "generate", image, "-p", "x", "-P", "kling", "--model", "kling-v2-master",
        "--max-cost", "0.10",
    )  # fmt: skip
    refused(result, fake_kling, "$1.40", "--max-cost")


class Unpublished(VideoProvider):
    """A provider whose vendor publishes no prices."""

    name = "unpublished"
    capabilities = Capabilities(models={"m": ModelSpec(durations=(5.0,))}, default_model="m")

    async def submit(self, job: Job) -> Job:
        raise NotImplementedError

    async def poll(self, job: Job) -> JobStatus:
        raise NotImplementedError

    async def result(self, job: Job) -> VideoResult:
        raise NotImplementedError


def test_a_configured_price_is_used_when_nothing_is_published() -> None:
    """With no published price to compare against, the configured price is the estimate."""
    provider = Unpublished()
    provider.configure(ProviderSettings(price_per_second=0.01), {})
    estimate = provider.estimate(VideoRequest(prompt="x"))
    assert estimate.price_per_second == 0.01
    assert estimate.basis == "providers.unpublished.price_per_second"


def test_concurrency_is_unset_unless_configured() -> None:
    """No concurrency in the config means None (the --concurrency flag decides); 0 is refused."""
    assert ProviderSettings().concurrency is None
    assert ProviderSettings(concurrency=3).concurrency == 3
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        ProviderSettings(concurrency=0)


def test_estimate_holds_the_same_budget_as_generate(
    cli, fake_kling, make_image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reelgen estimate` (and --dry-run) price under the same budget generate will: a
    REELGEN_MAX_COST below the price is refused there too, before anything is sent."""
    monkeypatch.setenv("REELGEN_MAX_COST", "0.10")
    for args in (["estimate"], ["generate", "--dry-run"]):
        result = cli(*args, str(make_image()), "-p", "x", "-P", "kling")
        assert result.exit_code == 2, (args, result.output)
        assert "above the limit of $0.10" in result.stderr
    assert fake_kling.requests == []
