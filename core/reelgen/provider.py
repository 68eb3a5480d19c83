"""The contract every video provider implements.

A plugin registers provider *classes*; each engine builds its own instance, so settings, keys,
clients, caches, clock and transport are never shared between engines.

A provider declares what it can do as data (:class:`Capabilities`), takes its settings and
credentials from the core (:meth:`VideoProvider.configure`), and talks to its service in four
calls: ``submit``, ``poll``, ``result`` and (where the service has one) ``cancel``. It never
sleeps or loops: waiting, retrying and downloading are the core's job.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Generic, cast

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from typing_extensions import TypeVar

from .capabilities import Capabilities as Capabilities
from .capabilities import ImageLimits as ImageLimits
from .capabilities import ModelSpec as ModelSpec
from .errors import InvalidRequest, MissingCredentials, Unsupported
from .http import make_client
from .models import Callback, CostEstimate, Job, JobStatus, VideoRequest, VideoResult
from .validation import validate_request

PATH_OPTION = "reelgen_path"
"""Marks an option field that names a local file (``Field(json_schema_extra={PATH_OPTION:
True})``, or :func:`path_option`): the core resolves it like the IMAGE argument (relative to a
batch manifest's folder) and never lets an output overwrite it."""


def path_option(description: str, **kwargs: Any) -> Any:
    """A provider option that is a local file path (or an http(s) URL)."""
    return Field(
        default=None, description=description, json_schema_extra={PATH_OPTION: True}, **kwargs
    )


Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""USD per second of video: finite and not negative."""


def _service_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"must be an http(s) URL, not {value!r}")
    return value.rstrip("/")


ServiceUrl = Annotated[str, AfterValidator(_service_url)]
"""A setting naming where a provider's service is (its API host, e.g. moved to a proxy or a
fake): an http(s) URL, kept without a trailing slash."""


class ProviderSettings(BaseModel):
    """Settings every provider understands (``[providers.NAME]`` in the config file)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="Model used when none is asked for.")
    mode: str | None = Field(default=None, description="Mode used when none is asked for.")
    max_duration: float | None = Field(
        default=None, gt=0, description="Longest clip this provider may be asked for, in seconds."
    )
    price_per_second: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="Estimate in USD per second of video for every model (never below the "
        "published price).",
    )
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description='Per model or model/mode estimate overrides, e.g. {"MODEL/pro" = 0.098} '
        "(never below the published price).",
    )
    concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Jobs in flight at once at this provider; unset: as --concurrency says.",
    )


SettingsT = TypeVar("SettingsT", bound=ProviderSettings, default=ProviderSettings, covariant=True)
OptionsT = TypeVar("OptionsT", bound=BaseModel, default=BaseModel, covariant=True)


class VideoProvider(ABC, Generic[SettingsT, OptionsT]):
    """Base class of every provider. Subclasses set the class attributes and the async calls."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    settings_model: ClassVar[type[ProviderSettings]] = ProviderSettings
    options_model: ClassVar[type[BaseModel] | None] = None
    credential_names: ClassVar[tuple[str, ...]] = ()
    credential_sets: ClassVar[tuple[tuple[str, ...], ...]] = ()
    """Sets of ``credential_names`` that are each enough to call the service, most usual first
    (e.g. an access-key pair, or one API key); ``reelgen keys set`` asks for the first. Empty:
    every credential but the webhook secret is needed."""
    """Every credential the provider may use, as environment-variable names."""
    webhook_secret_name: ClassVar[str | None] = None
    """The optional credential (one of ``credential_names``) holding the Standard Webhooks
    secret the provider signs its callbacks with; the receiver checks signatures when set."""

    can_lookup: ClassVar[bool] = False
    """True when :meth:`lookup` can find a task by the job's idempotency key."""
    env_settings: ClassVar[dict[str, str]] = {}
    """Settings the core may take from the environment: field name -> variable name."""

    result_ttl: ClassVar[float | None] = None
    """Seconds a finished video stays downloadable at the provider (None: not known)."""

    default_max_duration: ClassVar[float | None] = None
    default_price_per_second: ClassVar[float | None] = None

    capabilities: Capabilities

    def __init__(self) -> None:
        self.settings: SettingsT = cast(SettingsT, self.settings_model())
        self.credentials: dict[str, str] = {}
        self.clock: Callable[[], float] = time.time
        """Wall clock (e.g. for signing tokens): the engine's, so tests and benchmarks give
        every provider of an engine the same fake time."""
        self.transport: httpx.AsyncBaseTransport | None = None
        """HTTP transport for this provider's clients: the engine's (None: the default, or
        the one :func:`reelgen.http.use_transport` set for the context)."""
        self._client: httpx.AsyncClient | None = None

    # -- configuration ----------------------------------------------------------------------

    def configure(self, settings: ProviderSettings, credentials: Mapping[str, str]) -> None:
        """Called by the core with resolved settings and credentials before any request."""
        self.settings = cast(SettingsT, settings)
        self.credentials = dict(credentials)
        self._client = None  # new keys or host: never reuse a client made for other ones

    @classmethod
    def required_credentials(cls) -> tuple[tuple[str, ...], ...]:
        """The credential sets of which one must be complete (see ``credential_sets``)."""
        if cls.credential_sets:
            return cls.credential_sets
        return (tuple(n for n in cls.credential_names if n != cls.webhook_secret_name),)

    def missing_credentials(self) -> str | None:
        """Describe what is missing (and how to fix it), or None when ready to call out."""
        sets = self.required_credentials()
        if any(all(self.credentials.get(n) for n in names) for names in sets):
            return None
        missing = [n for n in sets[0] if not self.credentials.get(n)]
        return (
            f"{self.name}: missing {' and '.join(missing)}; export them or run "
            f"`reelgen keys set {self.name}`"
        )

    def check_credentials(self) -> None:
        problem = self.missing_credentials()
        if problem:
            raise MissingCredentials(problem, provider=self.name)

    # -- HTTP -------------------------------------------------------------------------------

    def http_client(self) -> httpx.AsyncClient:
        """This instance's keep-alive HTTP client, made on first use by
        :meth:`make_http_client` once the credentials are complete; ``configure`` drops it and
        :meth:`aclose` closes it."""
        if self._client is None:
            self.check_credentials()
            self._client = self.make_http_client()
        return self._client

    def make_http_client(self) -> httpx.AsyncClient:
        """Override to set a base URL or auth; keep ``transport=self.transport``."""
        return make_client(transport=self.transport)

    @property
    def max_duration(self) -> float | None:
        if self.settings.max_duration is not None:
            return self.settings.max_duration
        return self.default_max_duration

    @classmethod
    def path_options(cls) -> frozenset[str]:
        """The option fields that name local files (see :data:`PATH_OPTION`)."""
        if cls.options_model is None:
            return frozenset()
        return frozenset(
            name
            for name, field in cls.options_model.model_fields.items()
            if isinstance(field.json_schema_extra, dict)
            and field.json_schema_extra.get(PATH_OPTION)
        )

    @classmethod
    def map_paths(cls, options: Mapping[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
        """``options`` with ``fn`` applied to each value that names a local file or a URL
        (the :data:`PATH_OPTION` fields): how the core resolves them against a manifest's
        folder and keeps outputs off them. A provider whose options hold files deeper down
        (in a list, say) extends this, so those are resolved and protected too."""
        paths = cls.path_options()
        return {
            k: fn(v) if k in paths and isinstance(v, str) and v else v for k, v in options.items()
        }

    def options_for(self, request: VideoRequest) -> OptionsT:
        """The request's options as this provider's ``options_model`` (defaults filled in)."""
        parsed = self.parse_options(request.options)
        if parsed is None:
            raise TypeError(f"{self.name} declares no options_model")
        return parsed

    def parse_options(self, options: Mapping[str, Any]) -> OptionsT | None:
        """Validate provider options with ``options_model`` (unknown keys are refused)."""
        if self.options_model is None:
            if options:
                raise Unsupported(
                    f"{self.name} takes no provider options (got {', '.join(sorted(options))})",
                    provider=self.name,
                )
            return None
        from pydantic import ValidationError

        try:
            return cast(OptionsT, self.options_model.model_validate(dict(options)))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "options"
            # an option this provider does not know: another provider may take it
            kind = Unsupported if first["type"] == "extra_forbidden" else InvalidRequest
            raise kind(
                f"{self.name} option {where}: {first['msg']}; see `reelgen providers --options`",
                provider=self.name,
            ) from None

    def validate(self, request: VideoRequest) -> VideoRequest:
        """Check a request against the capabilities and fill in defaults; no network."""
        return validate_request(self, request)

    def estimate(self, request: VideoRequest) -> CostEstimate:
        """Estimate the cost of a validated request from the settings and price table."""
        model = request.model or self.capabilities.default_model
        mode = request.mode or self.capabilities.default_mode
        duration = request.duration or self.capabilities.default_duration
        prices = self.settings.prices
        key = f"providers.{self.name}"
        spec = self.capabilities.models.get(model)
        published = spec.published_prices.get(mode) if spec else None
        configured: tuple[float, str] | None = None
        if f"{model}/{mode}" in prices:
            configured = prices[f"{model}/{mode}"], f'{key}.prices."{model}/{mode}"'
        elif model in prices:
            configured = prices[model], f'{key}.prices."{model}"'
        elif self.settings.price_per_second is not None:
            configured = self.settings.price_per_second, f"{key}.price_per_second"
        if configured is not None:
            price, basis = configured
            if published is not None and price < published:
                # a flat or stale setting must not let a job past --max-cost it will exceed
                basis = (
                    f"{basis} (${price:g}/s) is below {self.name}'s published price; "
                    "using the published price"
                )
                price = published
        else:
            planning = self.default_price_per_second
            if planning is not None and (published is None or planning >= published):
                price = planning
                basis = f"default planning price; set {key}.price_per_second to change"
            else:
                # never estimate below what the vendor publishes for this model and mode
                price = published or 0.0
                basis = f"{self.name}'s published price; set {key}.price_per_second to change"
        return CostEstimate(
            provider=self.name,
            model=model,
            mode=mode,
            duration=duration,
            price_per_second=price,
            basis=basis,
        )

    def settings_expected(self, request: VideoRequest) -> bool:
        """True when the user told us how long jobs take (an ``expected_seconds`` setting),
        so the poll schedule can trust :meth:`expected_seconds` before anything is learned."""
        return getattr(self.settings, "expected_seconds", None) is not None

    def expected_seconds(self, request: VideoRequest) -> float:
        """How long the provider typically takes for this request (drives the poll schedule)."""
        duration = request.duration or self.capabilities.default_duration
        base = self.capabilities.expected_seconds
        return base * max(1.0, duration / self.capabilities.default_duration)

    # -- the wire ---------------------------------------------------------------------------

    @abstractmethod
    async def submit(self, job: Job) -> Job:
        """Start the job at the provider; return it with ``task_id`` and ``state`` set.

        ``job.idempotency_key`` must travel with the request (when the service has such a
        field) so :meth:`lookup` can find the task if the reply is lost.
        """

    async def lookup(self, job: Job) -> Job | None:
        """Find a task created for ``job.idempotency_key``; None when the provider has none.

        The core calls this after a submission whose outcome is unknown, before submitting
        again. Providers that cannot look up by key return None.
        """
        return None

    @abstractmethod
    async def poll(self, job: Job) -> JobStatus:
        """Ask the provider once for the job's state."""

    @abstractmethod
    async def result(self, job: Job) -> VideoResult:
        """The finished job's videos (URLs to download)."""

    @classmethod
    def parse_callback(cls, payload: Mapping[str, Any]) -> Callback | None:
        """What a callback body POSTed by this provider says (None: not one of this provider's).
        Providers with ``capabilities.callbacks`` implement it; the receiver wakes the job's
        waiter, which confirms with a query of its own (callbacks are hints, never the truth)."""
        return None

    async def verify_callback(
        self, headers: Mapping[str, str], body: bytes, now: float
    ) -> bool | None:
        """Check a callback's signature the way this provider signs (``headers`` lower-cased,
        ``body`` as received, ``now`` the receiver's wall clock): True when it verifies, None
        when the request carries no signature of this provider's kind; raise
        :class:`~reelgen.errors.WebhookInvalid` when it claims to be signed by this provider
        and does not verify (the receiver answers 401). The default checks Standard Webhooks
        signatures with the ``webhook_secret_name`` secret, when one is configured."""
        from .webhooks import verify

        name = self.webhook_secret_name
        secret = self.credentials.get(name) if name else None
        if not secret or "webhook-signature" not in headers:
            return None
        verify(headers, body, secret, now=now)
        return True

    async def check_keys(self) -> str:
        """Make one free, authenticated call and say what it showed (``reelgen keys
        check``); raise the usual error (AuthenticationError, ...) when the keys are refused.
        Providers without a free call keep this default."""
        raise Unsupported(
            f"{self.name} has no free call to check its keys with", provider=self.name
        )

    can_cancel: ClassVar[bool] = False
    """True when :meth:`cancel` can stop a job the service accepted."""

    async def cancel(self, job: Job) -> bool:
        """Ask the service to stop ``job``; True when it took the request, False when the job
        had already finished (or is unknown to it). Only where ``can_cancel``."""
        raise Unsupported(f"{self.name} cannot cancel jobs", provider=self.name)

    async def aclose(self) -> None:
        """Release connections; called by the core when a run ends."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
