"""One route over three vendors (``["kling", "veo", "replicate"]``), end to end through the CLI:
each vendor's own fake answers its own hosts, and a failure another vendor could avoid moves
the request on, never paying twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from reelgen.http import use_transport
from tests.cli_helpers import Cli, generated
from tests.fake_kling import DEFAULT_ACCESS_KEY as FAKE_AK
from tests.fake_kling import DEFAULT_SECRET_KEY as FAKE_SK
from tests.fake_kling import FakeKling
from tests.fake_kling import Fault as KlingFault
from tests.fake_replicate import DEFAULT_TOKEN, FakeReplicate
from tests.fake_veo import DEFAULT_KEY as FAKE_VEO_KEY
from tests.fake_veo import FakeVeo
from tests.fake_veo import Fault as VeoFault

ROUTE = 'route = "main"\n[routes.main]\nproviders = ["kling", "veo", "replicate"]\n'


@dataclass
class Vendors:
    kling: FakeKling
    veo: FakeVeo
    replicate: FakeReplicate

    def paid(self) -> dict[str, int]:
        return {
            "kling": self.kling.creates_accepted,
            "veo": self.veo.submits_accepted,
            "replicate": self.replicate.creates_accepted,
        }


@pytest.fixture
def vendors(
    timer, kling_keys: None, veo_keys: None, replicate_keys: None, isolated: Path
) -> Iterator[Vendors]:
    """The three vendors' fakes, each answering its own API and video hosts."""
    fakes = Vendors(
        FakeKling(access_key=FAKE_AK, secret_key=FAKE_SK, clock=timer.wall),
        FakeVeo(key=FAKE_VEO_KEY, clock=timer.wall),
        FakeReplicate(token=DEFAULT_TOKEN, clock=timer.wall),
    )
    by_host = {
        httpx.URL(url).host: fake
        for fake, urls in (
            (fakes.kling, (fakes.kling.base_url, fakes.kling.cdn_url)),
            (fakes.veo, (fakes.veo.api_url, fakes.veo.cdn_url)),
            (fakes.replicate, (fakes.replicate.api_url, fakes.replicate.cdn_url)),
        )
        for url in urls
    }

    def handler(request: httpx.Request) -> httpx.Response:
        fake = by_host.get(request.url.host)
        if fake is None:
            raise httpx.ConnectError(f"no such host {request.url.host}", request=request)
        return fake.handler(request)

    (isolated / "config.toml").write_text(ROUTE)
    with use_transport(httpx.MockTransport(handler)):
        yield fakes


def test_the_route_estimates_each_vendor_before_paying(
    cli: Cli, vendors: Vendors, make_image
) -> None:
    """`estimate` prices the request at every vendor of the route, in the route's order, each
    with its own model and default duration (Veo's clips are 8 s); nothing is sent."""
    result = cli("estimate", str(make_image()), "-p", "waves", "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["provider"] == "kling"
    priced = {c["provider"]: c["estimate"] for c in payload["candidates"]}
    assert list(priced) == ["kling", "veo", "replicate"]
    assert (priced["veo"]["duration"], priced["veo"]["price_per_second"]) == (8.0, 0.15)
    assert priced["replicate"]["model"] == "kling-v2-5-turbo"
    capped = cli("estimate", str(make_image()), "-p", "waves", "--max-cost", "1", "--json")
    assert [c["provider"] for c in json.loads(capped.stdout)["candidates"]] == [
        "kling",
        "replicate",
    ]  # $1.20 at Veo is over the budget: skipped, not tried
    assert vendors.paid() == {"kling": 0, "veo": 0, "replicate": 0}
    assert not vendors.kling.requests and not vendors.veo.requests
    assert not vendors.replicate.requests


def test_two_vendors_refuse_and_the_third_makes_the_clip(
    cli: Cli, vendors: Vendors, make_image, tmp_path: Path
) -> None:
    """Kling's pack is used up (1102) and Veo's prepaid credit too (402): neither took the
    job, so the request moves on and Replicate's video is the one saved, paid once."""
    vendors.kling.inject("create", KlingFault.business(1102, 429, "resource pack exhausted"))
    vendors.veo.inject("submit", VeoFault.rpc(402, "Prepaid credit exhausted."))
    out = tmp_path / "clip.mp4"
    payload = generated(cli, make_image(), out)
    assert payload["provider"] == "replicate"
    assert [a["provider"] for a in payload["attempts"]] == ["kling", "veo"]
    assert "top up" in payload["attempts"][0]["reason"]
    assert "credit" in payload["attempts"][1]["reason"]
    assert vendors.paid() == {"kling": 0, "veo": 0, "replicate": 1}
    assert out.read_bytes() == vendors.replicate.video


def test_a_vendor_that_fails_the_run_hands_it_to_the_next(
    cli: Cli, vendors: Vendors, make_image, tmp_path: Path
) -> None:
    """Kling is down for good (5xx on every create); Veo accepts the job, then its operation
    ends with an internal error (a failed run another vendor need not repeat): Replicate
    makes the clip. The job log keeps each vendor's job, the failed ones pointing on."""
    vendors.kling.inject("create", KlingFault.business(5001, 503, "service busy"), times=1000)
    vendors.veo.fail_next(error={"code": 13, "message": "Internal error while generating."})
    out = tmp_path / "clip.mp4"
    payload = generated(cli, make_image(), out)
    assert payload["provider"] == "replicate"
    assert [a["provider"] for a in payload["attempts"]] == ["kling", "veo"]
    assert "Internal error" in payload["attempts"][1]["reason"]
    assert vendors.paid() == {"kling": 0, "veo": 1, "replicate": 1}
    assert out.read_bytes() == vendors.replicate.video
    listed = cli("jobs", "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(row["provider"] for row in rows) == ["kling", "replicate", "veo"]
    assert [row["state"] for row in rows if row["provider"] == "replicate"] == ["succeeded"]


def test_content_refused_by_one_vendor_is_not_sent_to_the_others(
    cli: Cli, vendors: Vendors, make_image, tmp_path: Path
) -> None:
    """A prompt Kling's content checker refuses (1301) would be refused elsewhere too (and
    sending it on risks another account): the run stops, exit 1, nothing paid anywhere."""
    vendors.kling.inject("create", KlingFault.business(1301, 400, "prompt flagged"))
    out = tmp_path / "clip.mp4"
    result = cli("generate", str(make_image()), "-p", "waves", "-o", str(out))
    assert result.exit_code != 0
    assert "flagged" in result.stderr
    assert vendors.paid() == {"kling": 0, "veo": 0, "replicate": 0}
    assert not out.exists()
