"""Kling image-to-video and text-to-video through fal's queue API (providers.md, "fal").

One job is one queued request: ``POST {queue_url}/{model_id}`` answers ``request_id`` and the
``status_url``, ``response_url`` and ``cancel_url`` to use from then on. Those URLs are kept in
``job.data`` and used as given, never rebuilt (they address the app without the endpoint
sub-path, so building them by hand is a classic bug). A failed request is ``COMPLETED`` too:
its status may say so (``error`` / ``error_type``), else only its result does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, ConfigDict, Field

from reelgen.errors import (
    InvalidRequest,
    JobFailed,
    ProviderUnavailable,
    Unsupported,
)
from reelgen.http import json_body, origin
from reelgen.models import (
    Callback,
    Job,
    JobStatus,
    TaskState,
    Video,
    VideoRequest,
    VideoResult,
)
from reelgen.provider import ProviderSettings, ServiceUrl, VideoProvider, path_option
from reelgen.validation import check_image, image_data_uri, is_url

from .catalog import CAPABILITIES, ENDPOINTS, I2V, T2V, Endpoint, Kind, modes_for
from .webhooks import JWKS_URL, JwksCache, NoMatchingKey, signed_by_fal
from .webhooks import verify as verify_signature
from .wire_errors import (
    NAME,
    Failure,
    check,
    completed_failure,
    request_failure,
    transport_errors,
)

DEFAULT_QUEUE_URL = "https://queue.fal.run"
URL_KEYS = ("status_url", "response_url", "cancel_url")

STATES: dict[str, TaskState] = {
    "IN_QUEUE": "queued",
    "IN_PROGRESS": "running",
    "COMPLETED": "succeeded",  # or failed: decided by the result, see poll()
}


class FalSettings(ProviderSettings):
    queue_url: ServiceUrl = Field(
        default=DEFAULT_QUEUE_URL, description="fal's queue host (FAL_QUEUE_URL)."
    )
    webhook_jwks: str = Field(
        default=JWKS_URL,
        min_length=1,
        description="Where fal's webhook signing keys are: a JWKS URL or a local JWKS file "
        "(FAL_WEBHOOK_JWKS).",
    )


class FalKlingOptions(BaseModel):
    """Options only fal-kling understands (named as the kling provider names them)."""

    model_config = ConfigDict(extra="forbid")

    image_tail: str | None = path_option(
        "End frame: a local JPEG/PNG or an http(s) URL (models with an end frame).",
        max_length=4096,
    )


def _kind(request: VideoRequest) -> Kind:
    return I2V if request.image is not None else T2V


class FalKlingProvider(VideoProvider[FalSettings, FalKlingOptions]):
    name = NAME
    description = "Kling image-to-video and text-to-video hosted by fal (queue.fal.run)"
    settings_model = FalSettings
    options_model = FalKlingOptions
    credential_names = ("FAL_KEY",)
    env_settings: ClassVar[dict[str, str]] = {
        "queue_url": "FAL_QUEUE_URL",
        "webhook_jwks": "FAL_WEBHOOK_JWKS",
    }
    # fal cannot find a request by a key of ours: a submission whose reply was lost is never
    # sent again (the core says so and keeps the job for `reelgen wait`), it could pay twice.
    can_lookup = False
    default_max_duration = 5.0
    default_price_per_second = 0.08  # planning figure, as kling's; never below fal's prices
    capabilities = CAPABILITIES

    def __init__(self) -> None:
        super().__init__()
        self._finished: dict[str, dict[str, Any]] = {}  # request_id -> successful result
        self._jwks = JwksCache(JWKS_URL, lambda: self.clock())

    # -- configuration ----------------------------------------------------------------------

    def configure(self, settings: ProviderSettings, credentials: Mapping[str, str]) -> None:
        super().configure(settings, credentials)
        self._finished = {}
        self._jwks = JwksCache(self.settings.webhook_jwks, lambda: self.clock())

    def endpoint(self, request: VideoRequest) -> Endpoint:
        """The fal endpoint of a validated request."""
        model = request.model or self.capabilities.default_model
        mode = request.mode or self.capabilities.default_mode
        found = ENDPOINTS.get((model, mode, _kind(request)))
        if found is None:
            raise Unsupported(self._no_endpoint(model, mode, _kind(request)), provider=self.name)
        return found

    def _no_endpoint(self, model: str, mode: str, kind: Kind) -> str:
        modes = modes_for(model, kind)
        if modes:
            return (
                f"fal hosts {model} {kind} in {' or '.join(modes)} mode only, not {mode}; "
                f"pass `mode` {modes[0]}"
            )
        return f"fal does not host {model} {kind}; choose another `model`"

    def _default_mode(self, request: VideoRequest) -> VideoRequest:
        """With no mode asked for, std where fal hosts it, else the one mode it has.

        (The master models and kling-v2-6 come in one tier on fal, and kling-v2-5-turbo's
        text-to-video is pro only.) The estimate names the mode and its price.
        """
        if request.mode is not None or self.settings.mode is not None:
            return request
        model = request.model or self.settings.model or self.capabilities.default_model
        modes = modes_for(model, _kind(request))
        if modes and self.capabilities.default_mode not in modes:
            return request.model_copy(update={"mode": modes[0]})
        return request

    def validate(self, request: VideoRequest) -> VideoRequest:
        request = super().validate(self._default_mode(request))
        if request.seed is not None:
            raise Unsupported("fal-kling does not take a seed; drop `seed`", provider=self.name)
        endpoint = self.endpoint(request)
        if not request.prompt.strip():
            # providers.md: "prompt (required on most)"; a request without one fails at fal
            raise Unsupported(
                "fal's Kling endpoints need a prompt; pass -p PROMPT", provider=self.name
            )
        options = self.parse_options(request.options)
        if options is not None and options.image_tail:
            if request.image is None:
                raise InvalidRequest("image_tail needs a start image", provider=self.name)
            if endpoint.end_field is None:
                takers = sorted(
                    f"{m} {mode}"
                    for (m, mode, k), e in ENDPOINTS.items()
                    if k == I2V and e.end_field
                )
                raise Unsupported(
                    f"fal's {request.model} {request.mode} takes no end frame (image_tail); "
                    f"choose one of: {', '.join(takers)}",
                    provider=self.name,
                )
            assert self.capabilities.image is not None
            check_image(options.image_tail, self.capabilities.image, self.name)
            if not is_url(options.image_tail):
                path = str(Path(options.image_tail).expanduser().resolve())
                request = request.model_copy(
                    update={"options": {**request.options, "image_tail": path}}
                )
        return request

    def expected_seconds(self, request: VideoRequest) -> float:
        factor = 1.5 if request.mode == "pro" else 1.0
        return super().expected_seconds(request) * factor

    # -- HTTP -------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.credentials['FAL_KEY']}"}

    def _check_url(self, url: object, what: str) -> str:
        """A URL fal returned: only ever on the queue's own host, which gets our key."""
        queue = origin(self.settings.queue_url)
        if not isinstance(url, str) or origin(url) != queue:
            host = httpx.URL(self.settings.queue_url).host
            raise ProviderUnavailable(
                f"fal gave a {what} that is not on {host} ({str(url)[:80]!r}); "
                "not sending FAL_KEY there",
                provider=self.name,
                retryable=False,
            )
        return url

    async def _request(
        self, method: str, url: str, *, body: dict[str, Any] | None = None, submit: bool = False
    ) -> httpx.Response:
        client = self.http_client()
        with transport_errors(submit=submit):
            return await client.request(method, url, json=body, headers=self._headers())

    # -- the request body -------------------------------------------------------------------

    @staticmethod
    def image_value(image: str) -> str:
        """An http(s) URL passes through; a local file goes inline as a ``data:`` URI.

        fal's own clients upload local files to fal storage first and send that URL;
        providers.md marks ``data:`` URIs on the Kling endpoints *verify*. Inline keeps a job
        to one paid call and no extra storage API or key scope, at a cost: the image travels
        base64-encoded in the JSON body (a 10 MB picture makes a ~13.4 MB request), and a
        host that refuses it answers 413, which says to pass an https URL instead.
        """
        return image_data_uri(image)

    def build_input(self, request: VideoRequest) -> dict[str, Any]:
        endpoint = self.endpoint(request)
        duration = request.duration or self.capabilities.default_duration
        body: dict[str, Any] = {"duration": f"{duration:g}"}  # a string: "5" or "10"
        if request.prompt:
            body["prompt"] = request.prompt
        if endpoint.negative_prompt:
            # Sent even when empty: fal fills in its own default negative prompt otherwise
            # ("blur, distort, and low quality"), which Kling direct does not, so a request
            # that fails over from Kling would silently change meaning. (*verify*: that fal
            # takes "" as "no negative prompt" rather than as missing; its schemas only say
            # the field is an optional string.)
            body["negative_prompt"] = request.negative_prompt or ""
        if request.cfg_scale is not None:
            body["cfg_scale"] = request.cfg_scale
        if request.image is not None:
            assert endpoint.start_field is not None
            body[endpoint.start_field] = self.image_value(request.image)
        elif request.aspect_ratio:
            body["aspect_ratio"] = request.aspect_ratio
        options = self.parse_options(request.options)
        if isinstance(options, FalKlingOptions) and options.image_tail:
            assert endpoint.end_field is not None
            body[endpoint.end_field] = self.image_value(options.image_tail)
        body.update(endpoint.fixed)
        return body

    # -- the contract -----------------------------------------------------------------------

    async def submit(self, job: Job) -> Job:
        endpoint = self.endpoint(job.request)
        body = self.build_input(job.request)
        url = f"{self.settings.queue_url}/{endpoint.model_id}"
        if job.request.callback_url:
            # fal POSTs the outcome there once the request is done (signed: verify_callback)
            url += "?" + urlencode({"fal_webhook": job.request.callback_url})
        response = await self._request("POST", url, body=body, submit=True)
        reply = check(response, submit=True)
        request_id = reply.get("request_id") if isinstance(reply, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise ProviderUnavailable(
                "fal accepted the submission but its reply had no request_id",
                provider=self.name,
                maybe_accepted=True,
            )
        try:
            urls = {key: self._check_url(reply.get(key), key) for key in URL_KEYS}
        except ProviderUnavailable as err:
            # queued (and paid for) at fal: say which request, never submit it again
            raise ProviderUnavailable(
                f"{err} (fal request {request_id} was queued)",
                provider=self.name,
                retryable=False,
                maybe_accepted=True,
            ) from err
        data = {**job.data, "request_id": request_id, "model_id": endpoint.model_id, **urls}
        return job.model_copy(
            update={"task_id": request_id, "state": "queued", "message": "", "data": data}
        )

    def _url(self, job: Job, key: str) -> str:
        url = job.data.get(key)
        if not url:
            raise InvalidRequest(
                f"job {job.id} has no fal request yet (no {key})", provider=self.name, job_id=job.id
            )
        return self._check_url(url, key)

    async def _outcome(
        self, job: Job, reported: Failure | None = None
    ) -> dict[str, Any] | JobStatus:
        """A finished request's result, or the status saying how it failed. ``reported`` is
        the failure its COMPLETED status told: final even when the result cannot be read."""
        response = await self._request("GET", self._url(job, "response_url"))
        failure = request_failure(response)
        if failure is None and reported is not None and not response.is_success:
            failure = reported
        if failure is not None:
            state, message, kind = failure
            return JobStatus(state=state, message=message, failure=kind)
        result = check(response)
        if not isinstance(result, dict):
            raise ProviderUnavailable("fal answered a result that is not an object", provider=NAME)
        return result

    async def poll(self, job: Job) -> JobStatus:
        response = await self._request("GET", self._url(job, "status_url"))
        status = check(response)
        raw_state = status.get("status") if isinstance(status, dict) else None
        state = STATES.get(str(raw_state))
        if state is None or not isinstance(status, dict):
            raise ProviderUnavailable(
                f"fal reported an unknown request status {raw_state!r}", provider=self.name
            )
        raw = {k: v for k, v in status.items() if k != "logs"}
        if state == "queued":
            position = status.get("queue_position")
            message = f"position {position} in fal's queue" if position is not None else ""
            return JobStatus(state=state, message=message, raw=raw)
        if state == "running":
            return JobStatus(state=state, raw=raw)
        # COMPLETED: succeeded, failed or canceled. A request error named on the status is the
        # whole story; any other error there is final too, the result only adds its detail.
        reported = completed_failure(status)
        if reported is not None and reported[1]:
            state, message, kind = reported[0]
            return JobStatus(state=state, message=message, failure=kind, raw=raw)
        outcome = await self._outcome(job, reported[0] if reported else None)
        if isinstance(outcome, JobStatus):
            return outcome.model_copy(update={"raw": raw})
        if job.task_id:
            self._finished[job.task_id] = outcome  # result() needs no second GET
        return JobStatus(state="succeeded", raw=raw)

    async def result(self, job: Job) -> VideoResult:
        cached = self._finished.pop(job.task_id, None) if job.task_id else None
        outcome = cached if cached is not None else await self._outcome(job)
        if isinstance(outcome, JobStatus):
            raise JobFailed(
                f"fal-kling job {job.id} {outcome.state}: {outcome.message}",
                provider=self.name,
                job_id=job.id,
            )
        videos = []
        video = outcome.get("video")
        if isinstance(video, dict) and isinstance(video.get("url"), str) and video["url"]:
            videos.append(Video(url=video["url"]))
        return VideoResult(job_id=job.id, provider=self.name, videos=videos)

    # -- callbacks --------------------------------------------------------------------------

    @classmethod
    def parse_callback(cls, payload: Mapping[str, Any]) -> Callback | None:
        """fal's webhook body: ``request_id`` (the queue's id, our task id) and
        ``gateway_request_id`` (the last attempt's), ``status`` ``OK`` or ``ERROR``, then
        ``payload`` (the result, or the error's detail) and ``error`` on ERROR."""
        request_id = payload.get("request_id")
        status = payload.get("status")
        if not isinstance(request_id, str) or not request_id or status not in ("OK", "ERROR"):
            return None
        keys = [request_id]
        gateway = payload.get("gateway_request_id")
        if isinstance(gateway, str) and gateway and gateway != request_id:
            keys.append(gateway)
        return Callback(keys=tuple(keys), state="succeeded" if status == "OK" else "failed")

    async def verify_callback(
        self, headers: Mapping[str, str], body: bytes, now: float
    ) -> bool | None:
        """fal's ED25519 signature (see :mod:`reelgen_fal.webhooks`), with fal's public keys
        fetched (no FAL_KEY needed: a receiver may run without one) and kept a day; None for a
        request fal did not sign."""
        if not signed_by_fal(headers):
            return None
        keys = await self._jwks.keys(self.make_http_client)
        try:
            verify_signature(headers, body, keys, now=now)
        except NoMatchingKey:
            fresh = await self._jwks.keys(self.make_http_client, stale=True)  # rotated?
            if fresh is keys:
                raise
            verify_signature(headers, body, fresh, now=now)
        return True

    can_cancel = True

    async def cancel(self, job: Job) -> bool:
        """Ask fal to cancel; a request already finished or unknown to fal is left as it is."""
        response = await self._request("PUT", self._url(job, "cancel_url"))
        body = json_body(response)
        if isinstance(body, dict) and body.get("status") in ("ALREADY_COMPLETED", "NOT_FOUND"):
            return False
        check(response)
        return True
