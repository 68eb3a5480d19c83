"""Plans which providers may make a request, in what order, and when to move to the next.

Planning only: :mod:`reelgen.lifecycle` runs the plan (and the failover it allows).

A route is a list of providers (``[routes.NAME]`` in the config file) and a policy:

- **candidates**: the route's providers that can serve the request (input kind, model, mode,
  duration, options, keys) within budget. A provider that cannot is skipped, with why. Input
  that is invalid everywhere (a 200 px image, a prompt too long) stops the route at once.
- **order**: ``ordered`` (as listed) or ``cheapest`` (by estimate).
- **failover**: on errors another provider could avoid (rate limited after retries, outages,
  timeouts, keys or account trouble) the next candidate is tried; on errors that would repeat
  (invalid input, content policy) the route stops. A job that may already have been accepted
  (a lost create reply no lookup could settle) is never submitted to a *paid* provider
  elsewhere unless its provider says it failed; a free one (local) may still make the video,
  and the uncertain job stays in the log for `reelgen wait`.

Every attempt is recorded on the job that made the video (``job.meta.attempts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .errors import (
    BudgetExceeded,
    ConfigError,
    MissingCredentials,
    ReelgenError,
    Unsupported,
    UsageError,
)
from .models import Attempt
from .plugins import get_providers

if TYPE_CHECKING:
    from .config import Config
    from .models import CostEstimate, VideoRequest
    from .provider import VideoProvider
    from .settings import Settings


@dataclass(frozen=True)
class Prepared:
    """A request that passed every local check, with its provider and estimate."""

    provider: VideoProvider
    request: VideoRequest
    estimate: CostEstimate


class Engine(Protocol):
    """What planning needs of an engine (the router never imports the engine)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def config(self) -> Config: ...

    def default_provider_name(self) -> str: ...

    def max_cost(
        self, explicit: float | None, *, route_limit: float | None = None
    ) -> float | None: ...

    def prepare(
        self,
        request: VideoRequest,
        provider: str | None = None,
        *,
        max_cost: float | None = None,
        need_credentials: bool = True,
    ) -> Prepared: ...


@dataclass(frozen=True)
class Route:
    providers: tuple[str, ...]
    name: str | None = None  # None: one provider picked by -P / REELGEN_PROVIDER / default
    policy: str = "ordered"
    max_cost: float | None = None

    @property
    def failover(self) -> bool:
        return self.name is not None

    def describe(self) -> str:
        return f"route {self.name}" if self.name else f"provider {self.providers[0]}"


def check_provider_tables(engine: Engine) -> None:
    """A ``[providers.NAME]`` table for no installed provider is a typo that would silently
    drop its settings (limits, prices): an error, unless plugins are switched off by hand."""
    if engine.settings.plugins_filtered:
        return
    installed = get_providers()
    for name in engine.config.providers:
        if name not in installed:
            raise ConfigError(
                f'{engine.config.path}: providers.{name}: no installed provider is named "{name}"; '
                f"installed: {', '.join(sorted(installed))}"
            )


def resolve_route(engine: Engine, *, route: str | None, provider: str | None) -> Route:
    """The route to use: ``-P`` > ``--route`` > REELGEN_PROVIDER > REELGEN_ROUTE > config."""
    check_provider_tables(engine)
    if provider and route:
        raise UsageError("give -P PROVIDER or --route NAME, not both")
    if provider:
        return Route((provider,))
    name = engine.settings.route(flag=route)
    if not name:
        return Route((engine.default_provider_name(),))
    config = engine.config
    where = config.path or "config"
    if name not in config.routes:
        known = ", ".join(sorted(config.routes)) or "none"
        raise ConfigError(f"{where}: no [routes.{name}] table (routes: {known})")
    table = config.routes[name]
    installed = get_providers()
    for index, item in enumerate(table.providers):
        if item not in installed:
            raise ConfigError(
                f'{where}: routes.{name}.providers[{index}]: unknown provider "{item}"; '
                f"installed: {', '.join(sorted(installed))}"
            )
    return Route(tuple(table.providers), name, table.policy, table.max_cost)


def plan(
    engine: Engine,
    request: VideoRequest,
    route: Route,
    *,
    max_cost: float | None = None,
    need_credentials: bool = True,
) -> tuple[list[Prepared], list[Attempt]]:
    """The candidates in the order they will be tried, and the providers skipped (with why).

    Raises at once for input no provider could take, and when no candidate is left.
    """
    limit = engine.max_cost(max_cost, route_limit=route.max_cost)
    candidates: list[Prepared] = []
    skipped: list[Attempt] = []
    errors: list[ReelgenError] = []
    for name in route.providers:
        try:
            candidates.append(
                engine.prepare(request, name, max_cost=limit, need_credentials=need_credentials)
            )
        except (Unsupported, MissingCredentials, BudgetExceeded) as err:
            if not route.failover:
                raise
            skipped.append(Attempt(provider=name, outcome="skipped", reason=str(err)))
            errors.append(err)
    if not candidates:
        kinds = {type(e) for e in errors}
        cls = kinds.pop() if len(kinds) == 1 else Unsupported
        raise cls(f"no provider in {route.describe()} can take this request: {summary(skipped)}")
    if route.policy == "cheapest":
        candidates.sort(key=lambda p: p.estimate.amount)
    return candidates, skipped


def can_fail_over(err: ReelgenError) -> bool:
    """True when another provider could succeed where this one failed, and nothing was paid
    (the rule is each error class's, drawn in :mod:`reelgen.errors`)."""
    return err.may_fail_over


def only_free_after(attempts: list[Attempt]) -> bool:
    """After an attempt that may have been accepted (and will be charged), only a free
    provider may make the video, or the user could pay twice."""
    return any(a.outcome == "uncertain" for a in attempts)


def summary(attempts: list[Attempt]) -> str:
    return "; ".join(f"{a.provider}: {a.reason}" for a in attempts)
