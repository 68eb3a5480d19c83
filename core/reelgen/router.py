"""Picks the providers for a request from config, and fails over between them.

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

Every attempt is recorded on the job that made the video (``job.data["attempts"]``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .download import check_writable
from .errors import (
    AccountError,
    AuthenticationError,
    BudgetExceeded,
    ConfigError,
    JobFailed,
    MissingCredentials,
    OperationalError,
    ReelgenError,
    Unsupported,
    UsageError,
)
from .plugins import get_providers

if TYPE_CHECKING:
    from .engine import Engine, Prepared, StatusCallback
    from .models import Job, VideoRequest, VideoResult
    from .provider import VideoProvider

RETRIES_BEFORE_FAILOVER = 3
"""Tries of one provider's submission before moving on when another candidate remains."""


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


@dataclass
class Attempt:
    provider: str
    outcome: str  # skipped | failed | succeeded | submitted
    reason: str = ""
    job_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_provider_tables(engine: Engine) -> None:
    """A ``[providers.NAME]`` table for no installed provider is a typo that would silently
    drop its settings (limits, prices): an error, unless plugins are switched off by hand."""
    if engine.environ.get("REELGEN_DISABLE_PLUGINS") is not None:
        return
    if engine.environ.get("REELGEN_LOAD_PLUGINS") is not None:
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
    env_provider = engine.environ.get("REELGEN_PROVIDER")
    name = route or (None if env_provider else engine.environ.get("REELGEN_ROUTE"))
    name = name or (None if env_provider else engine.config.route)
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
            skipped.append(Attempt(name, "skipped", str(err)))
            errors.append(err)
    if not candidates:
        kinds = {type(e) for e in errors}
        cls = kinds.pop() if len(kinds) == 1 else Unsupported
        raise cls(f"no provider in {route.describe()} can take this request: {_summary(skipped)}")
    if route.policy == "cheapest":
        candidates.sort(key=lambda p: p.estimate.amount)
    return candidates, skipped


def can_fail_over(err: ReelgenError) -> bool:
    """True when another provider could succeed where this one failed, and nothing was paid."""
    if err.maybe_accepted:
        return False
    return isinstance(
        err, (OperationalError, MissingCredentials, AuthenticationError, AccountError)
    )


async def run(
    engine: Engine,
    request: VideoRequest,
    route: Route,
    *,
    output: Path | None = None,
    max_cost: float | None = None,
    timeout: float,
    wait: bool = True,
    on_status: StatusCallback | None = None,
    on_submitted: Callable[[Job, VideoProvider], None] | None = None,
) -> tuple[Job, VideoResult | None]:
    """Run the request on the route's candidates until one makes the video."""
    candidates, attempts = plan(engine, request, route, max_cost=max_cost)
    check_writable(output)
    uncertain: ReelgenError | None = None  # a provider that may hold a paid task for this
    for index, prepared in enumerate(candidates):
        name = prepared.provider.name
        last = index == len(candidates) - 1
        if uncertain is not None and prepared.estimate.amount > 0:
            # the earlier provider may have accepted (and will charge for) this job: only a
            # free provider may make the video now, or the user could pay twice
            attempts.append(
                Attempt(name, "skipped", f"not tried: {uncertain.job_id} may be running already")
            )
            if last:
                _reraise_with_history(uncertain, attempts)
            continue
        try:
            job = await engine.submit(
                prepared,
                output=output,
                attempts=None if last else RETRIES_BEFORE_FAILOVER,
                history=[a.as_dict() for a in attempts],
            )
        except ReelgenError as err:
            if err.maybe_accepted and not last:
                uncertain = err
                attempts.append(Attempt(name, "uncertain", str(err), err.job_id))
                continue
            if last or not can_fail_over(err):
                _reraise_with_history(err, attempts)
            attempts.append(Attempt(name, "failed", str(err), err.job_id))
            continue
        if on_submitted is not None:
            on_submitted(job, prepared.provider)
        if not wait:
            return job, None
        try:
            job = await engine.wait(job, timeout=timeout, on_status=on_status, fresh=True)
        except JobFailed as err:  # the provider said it failed: another may be tried
            if last:
                _reraise_with_history(err, attempts)
            attempts.append(Attempt(name, "failed", str(err), job.id))
            continue
        result = await engine.save(job)
        for attempt in attempts:
            if attempt.outcome == "uncertain" and attempt.job_id:
                engine.store.mark_superseded(attempt.job_id, job.id)
        return engine.store.get(job.id), result
    raise AssertionError("unreachable: plan() returns at least one candidate")


def _summary(attempts: list[Attempt]) -> str:
    return "; ".join(f"{a.provider}: {a.reason}" for a in attempts)


def _reraise_with_history(err: ReelgenError, attempts: list[Attempt]) -> NoReturn:
    """Raise ``err``, naming the providers tried before it, if any."""
    if not attempts:
        raise err
    wrapped = err.__class__(
        f"{err} (tried before: {_summary(attempts)})",
        provider=err.provider,
        job_id=err.job_id,
        retryable=err.retryable,
        retry_after=err.retry_after,
        maybe_accepted=err.maybe_accepted,
        code=err.code,
    )
    wrapped.attempts = [a.as_dict() for a in attempts]
    raise wrapped from err
