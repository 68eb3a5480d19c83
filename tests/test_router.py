"""Routes: swap providers by config, fail over when another provider can help, never pay twice."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from reelgen import Job, JobStatus, VideoProvider, VideoResult, hookimpl, plugins
from reelgen.http import use_transport
from reelgen.provider import Capabilities, ImageLimits, ModelSpec
from tests.cli_helpers import ROUTE, Cli, generated
from tests.conftest import FAKE_AK, FAKE_FAL_KEY, FAKE_SK
from tests.fake_fal import FakeFal
from tests.fake_kling import FakeKling, Fault


@pytest.fixture
def route_config(isolated: Path) -> Path:
    path = isolated / "config.toml"
    path.write_text(ROUTE)
    return path


def posts(fake: FakeKling) -> int:
    return len([r for r in fake.requests if r.method == "POST"])


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (Fault.business(5001, 503, "maintenance"), "failed"),
        (Fault.business(5000, 500, "internal error"), "uncertain"),
        (Fault.raw(502), "uncertain"),
    ],
)
def test_kling_down_falls_over_to_local(
    cli: Cli,
    fake_kling: FakeKling,
    route_config: Path,
    make_image,
    tmp_path: Path,
    fault: Fault,
    outcome: str,
) -> None:
    """Kling answering 5xx to everything: the clip comes from local and --json says why
    (a 500 on create might have made a task, so that attempt is marked uncertain)."""
    fake_kling.inject("any", fault, times=100)
    out = tmp_path / "clip.mp4"
    payload = generated(cli, make_image(), out)
    assert payload["provider"] == "local"
    [attempt] = payload["attempts"]
    assert attempt["provider"] == "kling"
    assert attempt["outcome"] == outcome
    assert attempt["job_id"].startswith("rg-")
    assert out.stat().st_size > 1000
    assert fake_kling.creates_accepted == 0


def test_invalid_input_stops_the_route_with_nothing_sent(
    cli: Cli, fake_kling: FakeKling, route_config: Path, make_image, tmp_path: Path
) -> None:
    """A 200 px image fails at once: nothing sent to Kling, local not tried, no file written."""
    out = tmp_path / "clip.mp4"
    result = cli("generate", str(make_image(200, 200)), "-p", "x", "-o", str(out))
    assert result.exit_code == 2
    assert "300 px" in result.stderr
    assert fake_kling.requests == []
    assert not out.exists()
    assert not list(tmp_path.glob("*.mp4"))


def test_provider_without_keys_is_skipped_with_why(
    cli: Cli, route_config: Path, make_image, tmp_path: Path
) -> None:
    """No Kling keys: the route skips kling (saying so) and makes the clip with local."""
    payload = generated(cli, make_image(), tmp_path / "a.mp4", "x")
    assert payload["provider"] == "local"
    assert payload["attempts"][0]["outcome"] == "skipped"
    assert "KLING_ACCESS_KEY" in payload["attempts"][0]["reason"]


def test_cheapest_policy_orders_by_estimate(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image
) -> None:
    """policy = "cheapest" tries the free local provider before Kling."""
    (isolated / "config.toml").write_text(ROUTE + 'policy = "cheapest"\n')
    result = cli("estimate", str(make_image()), "-p", "x", "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert [c["provider"] for c in payload["candidates"]] == ["local", "kling"]
    assert fake_kling.requests == []


def test_unknown_provider_in_route_names_file_and_key(cli: Cli, isolated: Path, make_image) -> None:
    """A misspelt provider in a route names the file, the key and the installed providers."""
    (isolated / "config.toml").write_text(
        'route = "main"\n[routes.main]\nproviders = ["local", "klin"]\n'
    )
    result = cli("generate", str(make_image()), "-p", "x")
    assert result.exit_code == 2
    assert 'config.toml: routes.main.providers[1]: unknown provider "klin"' in result.stderr


class PaidProbe(VideoProvider):
    """A paid provider that counts submissions (and never gets one in these tests)."""

    name = "probe"
    default_price_per_second = 0.5
    capabilities = Capabilities(
        models={"m": ModelSpec(durations=(5,))}, default_model="m", image=ImageLimits(min_side=1)
    )
    submits = 0

    async def submit(self, job: Job) -> Job:
        PaidProbe.submits += 1
        raise AssertionError("a paid provider must not get a maybe-accepted job")

    async def poll(self, job: Job) -> JobStatus:  # pragma: no cover
        raise AssertionError

    async def result(self, job: Job) -> VideoResult:  # pragma: no cover
        raise AssertionError


@pytest.fixture
def probe() -> Iterator[type[PaidProbe]]:
    class Plugin:
        @hookimpl
        def register_providers(self, register: Callable[[VideoProvider], None]) -> None:
            register(PaidProbe())

    PaidProbe.submits = 0
    plugins.register_plugin(Plugin(), name="probe-plugin")
    try:
        yield PaidProbe
    finally:
        plugins.unregister_plugin("probe-plugin")


@pytest.mark.parametrize("with_local", [True, False])
def test_maybe_accepted_job_is_never_sent_to_a_paid_provider(
    probe: type[PaidProbe],  # first: registering a plugin rebuilds the providers
    cli: Cli,
    fake_kling: FakeKling,
    isolated: Path,
    make_image,
    tmp_path: Path,
    with_local: bool,
) -> None:
    """A Kling create whose reply was lost (and no lookup settles) is not re-made on a paid
    provider; a free one may still make the clip; the Kling job stays recoverable."""
    chain = '["kling", "probe", "local"]' if with_local else '["kling", "probe"]'
    (isolated / "config.toml").write_text(
        f'route = "r"\n[providers.local]\nheight = 144\n[routes.r]\nproviders = {chain}\n'
    )
    fake_kling.inject("create", Fault.timeout_after_accept())
    fake_kling.inject("query", Fault.timeout_before_accept(), times=50)
    out = tmp_path / "clip.mp4"
    result = cli("generate", str(make_image()), "-p", "x", "-o", str(out), "--json")
    assert probe.submits == 0
    assert fake_kling.creates_accepted == 1
    if with_local:
        assert result.exit_code == 0, result.stderr
        attempts = json.loads(result.stdout)["attempts"]
        assert [a["outcome"] for a in attempts] == ["uncertain", "skipped"]
        assert out.exists()
    else:
        assert result.exit_code == 1
        assert "reelgen wait" in result.stderr
        assert not out.exists()


def test_content_policy_stops_the_route(
    cli: Cli, fake_kling: FakeKling, route_config: Path, make_image, tmp_path: Path
) -> None:
    """Kling refusing the content (1301) is not retried on another provider."""
    fake_kling.inject("create", Fault.business(1301, 400, "content risk"))
    out = tmp_path / "clip.mp4"
    result = cli("generate", str(make_image()), "-p", "x", "-o", str(out))
    assert result.exit_code == 2
    assert "content safety" in result.stderr
    assert not out.exists()


def test_account_error_fails_over(
    cli: Cli, fake_kling: FakeKling, route_config: Path, make_image, tmp_path: Path
) -> None:
    """Kling's resource pack used up (1102) is Kling's problem: local makes the clip."""
    fake_kling.inject("create", Fault.business(1102, 429, "pack used up"))
    assert generated(cli, make_image(), tmp_path / "a.mp4", "x")["provider"] == "local"
    assert posts(fake_kling) == 1


def test_failed_task_fails_over_after_the_provider_says_so(
    cli: Cli, fake_kling: FakeKling, route_config: Path, make_image, tmp_path: Path
) -> None:
    """A Kling task that failed (per Kling) is followed by local; the attempt names the job."""
    fake_kling.fail_next("the server could not render this")
    payload = generated(cli, make_image(), tmp_path / "a.mp4", "x")
    assert payload["provider"] == "local"
    assert payload["attempts"][0]["job_id"].startswith("rg-")
    assert "could not render" in payload["attempts"][0]["reason"]
    status = json.loads(cli("status", payload["job_id"], "--json").stdout)
    assert status["attempts"][0]["provider"] == "kling"


def test_single_provider_flag_has_no_failover(
    cli: Cli, fake_kling: FakeKling, route_config: Path, make_image, tmp_path: Path
) -> None:
    """-P kling means kling only: an outage fails the command instead of switching."""
    fake_kling.inject("any", Fault.business(5000, 500), times=100)
    out = tmp_path / "a.mp4"
    result = cli("generate", str(make_image()), "-p", "x", "-P", "kling", "-o", str(out))
    assert result.exit_code == 1
    assert not out.exists()


def test_route_flag_and_environment(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--route picks a route; REELGEN_ROUTE does when no flag is given; the flag wins."""
    (isolated / "config.toml").write_text(ROUTE + '[routes.offline]\nproviders = ["local"]\n')
    image = str(make_image())
    by_flag = json.loads(cli("estimate", image, "-p", "x", "--route", "offline", "--json").stdout)
    assert by_flag["provider"] == "local"
    monkeypatch.setenv("REELGEN_ROUTE", "offline")
    by_env = json.loads(cli("estimate", image, "-p", "x", "--json").stdout)
    assert by_env["provider"] == "local"
    flag_wins = json.loads(cli("estimate", image, "-p", "x", "--route", "main", "--json").stdout)
    assert flag_wins["provider"] == "kling"


def test_route_budget_skips_expensive_providers(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image
) -> None:
    """A route's max_cost leaves out providers whose estimate is above it."""
    (isolated / "config.toml").write_text(ROUTE + "max_cost = 0.10\n")
    result = cli("estimate", str(make_image()), "-p", "x", "--json")
    payload = json.loads(result.stdout)
    assert payload["provider"] == "local"
    assert "above the limit" in payload["skipped"][0]["reason"]


def test_config_show_masks_secrets(cli: Cli, isolated: Path) -> None:
    """config path names the file; config show prints it with secret values masked."""
    (isolated / "config.toml").write_text(
        ROUTE + '[providers.kling]\nmodel = "kling-v2-1"\napi_key = "fake-not-shown"\n'
    )
    path = cli("config", "path")
    assert path.stdout.strip() == str(isolated / "config.toml")
    shown = cli("config", "show")
    assert shown.exit_code == 0, shown.stderr
    assert "fake-not-shown" not in shown.stdout
    data = json.loads(shown.stdout)
    assert data["providers"]["kling"]["api_key"] == "****"
    assert data["routes"]["main"]["providers"] == ["kling", "local"]


def test_config_typo_names_the_key(cli: Cli, isolated: Path, make_image) -> None:
    """A misspelt top-level key (rout = ...) is an error naming the file and the key."""
    (isolated / "config.toml").write_text('rout = "main"\n')
    result = cli("estimate", str(make_image()), "-p", "x")
    assert result.exit_code == 2
    assert "config.toml: rout:" in result.stderr


def test_reelgen_toml_in_working_folder_wins(
    cli: Cli, isolated: Path, make_image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """./reelgen.toml is used before $REELGEN_HOME/config.toml; $REELGEN_CONFIG before both."""
    (isolated / "config.toml").write_text('route = "nope"\n')
    work = tmp_path / "project"
    work.mkdir()
    (work / "reelgen.toml").write_text(ROUTE)
    monkeypatch.chdir(work)
    assert cli("config", "path").stdout.strip() == "reelgen.toml"
    explicit = tmp_path / "other.toml"
    explicit.write_text("")
    monkeypatch.setenv("REELGEN_CONFIG", str(explicit))
    assert cli("config", "path").stdout.strip() == str(explicit)


@pytest.fixture
def both_fakes(timer, kling_keys: None, fal_keys: None) -> Iterator[tuple[FakeKling, FakeFal]]:
    """Kling direct and Kling on fal, each answering its own hosts."""
    kling = FakeKling(access_key=FAKE_AK, secret_key=FAKE_SK, clock=timer.wall)
    fal = FakeFal(key=FAKE_FAL_KEY, clock=timer.wall)

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        fake = fal if ("fal" in host) else kling
        return fake.handler(request)

    with use_transport(httpx.MockTransport(handler)):
        yield kling, fal


def test_kling_on_fal_is_the_failover_for_kling_direct(
    cli: Cli, both_fakes: tuple[FakeKling, FakeFal], isolated: Path, make_image, tmp_path: Path
) -> None:
    """Kling's pack used up (1102): the same model runs on fal and the clip is fal's video."""
    kling, fal = both_fakes
    (isolated / "config.toml").write_text(
        'route = "main"\n[routes.main]\nproviders = ["kling", "fal-kling", "local"]\n'
        '[providers.kling]\nmodel = "kling-v2-1"\n[providers.fal-kling]\nmodel = "kling-v2-1"\n'
    )
    kling.inject("create", Fault.business(1102, 429, "resource pack exhausted"))
    out = tmp_path / "clip.mp4"
    payload = generated(cli, make_image(), out)
    assert payload["provider"] == "fal-kling"
    assert payload["attempts"][0]["provider"] == "kling"
    assert "top up" in payload["attempts"][0]["reason"]
    assert fal.submits_accepted == 1
    assert kling.creates_accepted == 0
    assert out.read_bytes() == fal.video


def test_provider_and_route_together_refused(cli: Cli, route_config: Path, make_image) -> None:
    """-P and --route are alternatives: both at once is refused, not silently resolved."""
    result = cli("estimate", str(make_image()), "-p", "x", "-P", "kling", "--route", "main")
    assert result.exit_code == 2
    assert "not both" in result.stderr


def test_provider_table_typo_is_an_error(cli: Cli, isolated: Path, make_image) -> None:
    """[providers.klign] would silently drop its limits and prices: refused, naming it."""
    (isolated / "config.toml").write_text("[providers.klign]\nmax_duration = 5\n")
    result = cli("estimate", str(make_image()), "-p", "x", "-P", "local")
    assert result.exit_code == 2
    assert "providers.klign" in result.stderr


def test_missing_explicit_config_is_an_error(
    cli: Cli, make_image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REELGEN_CONFIG naming a file that does not exist is an error, not an empty config."""
    monkeypatch.setenv("REELGEN_CONFIG", str(tmp_path / "nope.toml"))
    result = cli("estimate", str(make_image()), "-p", "x")
    assert result.exit_code == 2
    assert "nope.toml" in result.stderr


def test_config_show_masks_nested_secrets_and_prints_dates(cli: Cli, isolated: Path) -> None:
    """Everything under a secret-looking key is masked, nested too; TOML dates print."""
    (isolated / "config.toml").write_text(
        'route = "main"\n[routes.main]\nproviders = ["local"]\nnote_date = 1979-05-27\n'
        '[providers.kling]\nmodel = "kling-v2-1"\n'
    )
    assert cli("config", "show").exit_code == 2  # unknown key in a route table: named
    (isolated / "config.toml").write_text(
        '[providers.kling]\nmodel = "kling-v2-1"\n'
        '[providers.kling.headers]\nAuthorization = "Key fake-should-not-print"\n'
    )
    shown = cli("config", "show")
    assert "fake-should-not-print" not in shown.stdout


def test_route_estimate_skips_providers_without_keys(
    cli: Cli, route_config: Path, make_image
) -> None:
    """A route's estimate matches what generate would do: keyless providers are skipped."""
    result = cli("estimate", str(make_image()), "-p", "x", "--json")
    payload = json.loads(result.stdout)
    assert payload["provider"] == "local"
    assert payload["skipped"][0]["provider"] == "kling"


def test_superseded_uncertain_job_is_never_submitted_later(
    cli: Cli, fake_kling: FakeKling, route_config: Path, make_image, tmp_path: Path
) -> None:
    """After local made the clip for an uncertain Kling job, `reelgen wait` on that Kling job
    looks it up but never submits it (that would pay for a second clip)."""
    fake_kling.inject("create", Fault.raw(502))
    fake_kling.inject("query", Fault.raw(502), times=1000)  # lookups fail for 5 minutes
    [attempt] = generated(cli, make_image(), tmp_path / "a.mp4", "x")["attempts"]
    assert attempt["outcome"] == "uncertain"
    fake_kling._faults.clear()  # the network is back
    later = cli("wait", attempt["job_id"])
    assert later.exit_code != 0
    assert "made the video instead" in later.stderr
    assert fake_kling.creates_accepted == 0


def test_failed_route_json_lists_attempts(
    cli: Cli, fake_kling: FakeKling, isolated: Path, make_image
) -> None:
    """When every provider fails, --json still lists which were tried and why."""
    (isolated / "config.toml").write_text(
        'route = "main"\n[routes.main]\nproviders = ["kling", "kling"]\n'
    )
    fake_kling.inject("create", Fault.business(1102, 429, "pack used up"), times=2)
    result = cli("generate", str(make_image()), "-p", "x", "--json")
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["attempts"][0]["provider"] == "kling"
    assert "top up" in payload["attempts"][0]["reason"]


def test_a_skipped_provider_is_named_once(cli, isolated) -> None:
    """The estimate's "skipped:" line names the provider once, not "kling: kling: ..."."""
    from pathlib import Path

    (isolated / "config.toml").write_text(
        'route = "r"\n[routes.r]\nproviders = ["kling", "local"]\n'
    )
    image = Path(__file__).parents[1] / "examples" / "sunset.jpg"
    result = cli("estimate", str(image), "-p", "x")
    assert result.exit_code == 0, result.stderr
    assert "skipped:  kling: missing KLING_ACCESS_KEY" in result.output
    assert "kling: kling:" not in result.output
