"""Kling (and Seedance) image- and text-to-video through Replicate's predictions API.

One job is one prediction: ``POST {base}/models/{owner}/{name}/predictions`` with
``{"input": {...}}`` answers the prediction object (``id``, ``status`` ``starting``, ...);
``GET {base}/predictions/{id}`` reports it (``starting``, ``processing``, ``succeeded``,
``failed``, ``canceled``, ``aborted``) with the output URL(s) in ``output`` and a failure's text
in ``error``; ``POST {base}/predictions/{id}/cancel`` stops it. The paths are the documented
ones, built from the id (the ``urls`` of the reply are only kept for the user to read).

Replicate deletes an API prediction's output about an hour after it finishes
(:data:`catalog.RESULT_TTL`): the core downloads at once and records when it expires. Replicate
cannot find a prediction by a key of ours, so a create whose reply was lost is never sent
again (the core keeps the job uncertain for ``reelgen wait``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field

from reelgen.errors import InvalidRequest, JobFailed, ProviderUnavailable, Unsupported
from reelgen.http import make_client
from reelgen.models import Callback, Job, JobStatus, TaskState, Video, VideoRequest, VideoResult
from reelgen.provider import ProviderSettings, ServiceUrl, VideoProvider, path_option
from reelgen.validation import check_image, image_data_uri, is_url

from .catalog import CAPABILITIES, MODELS, RESULT_TTL, ReplicateModel, modes_for
from .wire_errors import NAME, check, prediction_failure, transport_errors

DEFAULT_BASE_URL = "https://api.replicate.com/v1"

STATES: dict[str, TaskState] = {
    "starting": "queued",  # waiting for a worker (cold boot or queue)
    "processing": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
    # terminated before it started running, e.g. a deadline reached first (the OpenAPI
    # schema); not asked for by us, so a failure another provider may not have
    "aborted": "failed",
}

WEBHOOK_EVENTS = ("completed",)
"""Only the final state: the core confirms with a query of its own, so ``start``/``output``/
``logs`` deliveries would only cost queries."""


class ReplicateSettings(ProviderSettings):
    base_url: ServiceUrl = Field(
        default=DEFAULT_BASE_URL, description="Replicate's API root (REPLICATE_BASE_URL)."
    )


class ReplicateOptions(BaseModel):
    """Options only replicate understands (named as the kling provider names them)."""

    model_config = ConfigDict(extra="forbid")

    image_tail: str | None = path_option(
        "End frame: a local JPEG/PNG or an http(s) URL (kling-v2-1 in pro mode).",
        max_length=4096,
    )


class ReplicateProvider(VideoProvider[ReplicateSettings, ReplicateOptions]):
    name = NAME
    description = "Kling and Seedance video models hosted by Replicate (api.replicate.com)"
    settings_model = ReplicateSettings
    options_model = ReplicateOptions
    credential_names = ("REPLICATE_API_TOKEN", "REPLICATE_WEBHOOK_SECRET")
    webhook_secret_name = "REPLICATE_WEBHOOK_SECRET"
    """The account's signing secret (``whsec_...``, from ``GET /v1/webhooks/default/secret``):
    Replicate signs webhooks the Standard Webhooks way, which the core's receiver checks."""
    env_settings: ClassVar[dict[str, str]] = {"base_url": "REPLICATE_BASE_URL"}
    # Replicate cannot find a prediction by a key of ours: a create whose reply was lost is
    # never sent again (it could pay twice); the core keeps it uncertain for `reelgen wait`.
    can_lookup = False
    can_cancel = True
    result_ttl = RESULT_TTL
    default_max_duration = 5.0
    default_price_per_second = 0.08  # planning figure, as kling's; never below the published
    capabilities = CAPABILITIES

    def __init__(self) -> None:
        super().__init__()
        self._finished: dict[str, Any] = {}  # prediction id -> output of a succeeded poll

    # -- configuration ----------------------------------------------------------------------

    def configure(self, settings: ProviderSettings, credentials: Mapping[str, str]) -> None:
        super().configure(settings, credentials)
        self._finished = {}

    def make_http_client(self) -> httpx.AsyncClient:
        return make_client(base_url=self.settings.base_url, transport=self.transport)

    def model(self, request: VideoRequest) -> ReplicateModel:
        """The Replicate model of a validated request."""
        name = request.model or self.settings.model or self.capabilities.default_model
        found = MODELS.get(name)
        if found is None:
            raise Unsupported(
                f"replicate does not host {name}; choose one of {', '.join(MODELS)}",
                provider=self.name,
            )
        return found

    def _default_mode(self, request: VideoRequest) -> VideoRequest:
        """With no mode asked for, std where the model has it, else its one tier.

        (kling-v2-5-turbo is published on Replicate as its pro tier only, seedance-1-lite in
        one tier.) The estimate names the mode and its price.
        """
        if request.mode is not None or self.settings.mode is not None:
            return request
        name = request.model or self.settings.model or self.capabilities.default_model
        modes = modes_for(name)
        if modes and self.capabilities.default_mode not in modes:
            return request.model_copy(update={"mode": modes[0]})
        return request

    def validate(self, request: VideoRequest) -> VideoRequest:
        request = super().validate(self._default_mode(request))
        model = self.model(request)
        if not request.prompt.strip():
            # prompt is a required input of every model here: refused before it is paid for
            raise Unsupported(
                "Replicate's video models need a prompt; pass -p PROMPT", provider=self.name
            )
        if request.seed is not None and not model.seed:
            takers = sorted(n for n, m in MODELS.items() if m.seed)
            raise Unsupported(
                f"replicate {request.model} takes no seed; drop `seed` or choose "
                f"{', '.join(takers)}",
                provider=self.name,
            )
        if request.negative_prompt and not model.negative_prompt:
            # dropping it would change the clip a failover asked for: another candidate runs it
            takers = sorted(n for n, m in MODELS.items() if m.negative_prompt)
            raise Unsupported(
                f"replicate {request.model} takes no negative prompt; drop it or choose "
                f"{', '.join(takers)}",
                provider=self.name,
            )
        if request.callback_url and not request.callback_url.startswith("https://"):
            # the create reference: "An HTTPS URL for receiving a webhook"
            raise Unsupported(
                "Replicate posts webhooks to https URLs only; give an https callback URL "
                "(e.g. a tunnel in front of --listen)",
                provider=self.name,
            )
        options = self.parse_options(request.options)
        if options is not None and options.image_tail:
            request = self._check_end_frame(request, model, options.image_tail)
        return request

    def _check_end_frame(
        self, request: VideoRequest, model: ReplicateModel, tail: str
    ) -> VideoRequest:
        if request.image is None:
            raise InvalidRequest("image_tail needs a start image", provider=self.name)
        mode = request.mode or self.capabilities.default_mode
        if model.end_field is None or mode not in model.end_modes:
            takers = sorted(
                f"{name} {m}"
                for name, spec in MODELS.items()
                if spec.end_field
                for m in sorted(spec.end_modes)
            )
            raise Unsupported(
                f"replicate's {request.model} {mode} takes no end frame (image_tail); choose "
                f"one of: {', '.join(takers)}",
                provider=self.name,
            )
        assert self.capabilities.image is not None
        check_image(tail, self.capabilities.image, self.name)
        if not is_url(tail):
            path = str(Path(tail).expanduser().resolve())
            options = {**request.options, "image_tail": path}
            request = request.model_copy(update={"options": options})
        return request

    def expected_seconds(self, request: VideoRequest) -> float:
        factor = 1.5 if request.mode == "pro" else 1.0
        return super().expected_seconds(request) * factor

    # -- the create body ----------------------------------------------------------------------

    def image_value(self, image: str) -> str:
        """An http(s) URL as it is; a local file as a ``data:`` URI.

        The create reference: "Files should be passed as HTTP URLs or data URLs", a data URL
        recommended for files of 256 KB or less. A larger local picture still goes as a data
        URL (base64 in the JSON body, about 4/3 of the file); a host that refuses the size
        answers 413, which says to pass an https URL instead. (Replicate's files API would
        take large files, at the cost of a second upload call per job; not used.)
        """
        return image_data_uri(image)

    def build_input(self, request: VideoRequest) -> dict[str, Any]:
        """The model's ``input`` for a validated request (field names per model)."""
        model = self.model(request)
        mode = request.mode or self.capabilities.default_mode
        duration = request.duration or self.capabilities.default_duration
        body: dict[str, Any] = {"prompt": request.prompt, "duration": int(duration)}
        wire_mode = model.modes.get(mode)
        if wire_mode is not None:
            body["mode"] = wire_mode
        if request.negative_prompt and model.negative_prompt:
            body["negative_prompt"] = request.negative_prompt
        if request.image is not None:
            assert model.start_field is not None
            body[model.start_field] = self.image_value(request.image)
        elif request.aspect_ratio:
            body["aspect_ratio"] = request.aspect_ratio
        if request.seed is not None:
            body["seed"] = request.seed
        options = self.parse_options(request.options)
        if isinstance(options, ReplicateOptions) and options.image_tail:
            assert model.end_field is not None
            body[model.end_field] = self.image_value(options.image_tail)
        body.update(model.fixed)
        return body

    def build_body(self, request: VideoRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"input": self.build_input(request)}
        if request.callback_url:
            body["webhook"] = request.callback_url
            body["webhook_events_filter"] = list(WEBHOOK_EVENTS)
        return body

    # -- HTTP -------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials['REPLICATE_API_TOKEN']}"}

    async def _request(
        self, method: str, path: str, *, body: dict[str, Any] | None = None, submit: bool = False
    ) -> httpx.Response:
        client = self.http_client()
        with transport_errors(submit=submit):
            return await client.request(method, path, json=body, headers=self._headers())

    # -- the contract -----------------------------------------------------------------------

    async def submit(self, job: Job) -> Job:
        model = self.model(job.request)
        body = self.build_body(job.request)
        # No `Prefer: wait`. It holds the create open up to 60 s for the output, and a video
        # takes minutes, so it would never return the output; it would only widen the window
        # in which a dropped connection leaves a paid prediction whose id we never saw (an
        # uncertain job, never resent since Replicate has no lookup by our key). Without it
        # the create answers at once with the prediction id.
        path = f"/models/{model.owner}/{model.name}/predictions"
        response = await self._request("POST", path, body=body, submit=True)
        prediction = check(response, submit=True)
        pid = prediction.get("id") if isinstance(prediction, dict) else None
        if not isinstance(pid, str) or not pid:
            raise ProviderUnavailable(
                "Replicate accepted the prediction but its reply had no id",
                provider=self.name,
                retryable=False,
                maybe_accepted=True,
            )
        assert isinstance(prediction, dict)
        state = STATES.get(str(prediction.get("status")), "queued")
        urls = prediction.get("urls")
        web = urls.get("web") if isinstance(urls, dict) else None
        data = {**job.data, "prediction_id": pid, "model": model.slug}
        if isinstance(web, str):
            data["web_url"] = web
        return job.model_copy(update={"task_id": pid, "state": state, "message": "", "data": data})

    def _path(self, job: Job, tail: str = "") -> str:
        if not job.task_id:
            raise InvalidRequest(
                f"job {job.id} has no Replicate prediction yet", provider=self.name, job_id=job.id
            )
        return f"/predictions/{job.task_id}{tail}"

    async def _get(self, job: Job) -> dict[str, Any]:
        prediction = check(await self._request("GET", self._path(job)))
        if not isinstance(prediction, dict):
            raise ProviderUnavailable(
                "Replicate answered a prediction that is not an object", provider=self.name
            )
        return prediction

    def _status(self, prediction: dict[str, Any]) -> JobStatus:
        raw_state = prediction.get("status")
        state = STATES.get(str(raw_state))
        if state is None:
            raise ProviderUnavailable(
                f"Replicate reported an unknown prediction status {raw_state!r}",
                provider=self.name,
            )
        raw = {k: v for k, v in prediction.items() if k not in ("logs", "input")}
        metrics = prediction.get("metrics")
        took = metrics.get("predict_time") if isinstance(metrics, dict) else None
        took = float(took) if isinstance(took, (int, float)) and took >= 0 else None
        if state == "failed":
            message, kind = prediction_failure(prediction.get("error"))
            if raw_state == "aborted":
                message = f"Replicate aborted the prediction before it ran: {message}"
            return JobStatus(state=state, message=message, failure=kind, took=took, raw=raw)
        if state == "queued":
            return JobStatus(state=state, message="starting at Replicate", raw=raw)
        return JobStatus(state=state, took=took, raw=raw)

    async def poll(self, job: Job) -> JobStatus:
        prediction = await self._get(job)
        status = self._status(prediction)
        if status.state == "succeeded" and job.task_id:
            self._finished[job.task_id] = prediction.get("output")  # result() needs no GET
        return status

    @staticmethod
    def _urls(output: object) -> list[str]:
        """The video URL(s) of an output: a string, or a list of strings."""
        items = output if isinstance(output, list) else [output]
        return [u for u in items if isinstance(u, str) and u.startswith(("https://", "http://"))]

    async def result(self, job: Job) -> VideoResult:
        if job.task_id and job.task_id in self._finished:
            output = self._finished.pop(job.task_id)
        else:
            prediction = await self._get(job)
            status = self._status(prediction)
            if status.state != "succeeded":
                raise JobFailed(
                    f"replicate job {job.id} {status.state}: {status.message}",
                    provider=self.name,
                    job_id=job.id,
                )
            output = prediction.get("output")
            if output is None and prediction.get("data_removed"):
                raise JobFailed(
                    f"replicate job {job.id}: Replicate has deleted the output (it keeps it "
                    "about an hour after the prediction finishes); run the job again",
                    provider=self.name,
                    job_id=job.id,
                    retryable=False,
                )
        videos = [Video(url=url) for url in self._urls(output)]
        if not videos:
            raise ProviderUnavailable(
                f"replicate job {job.id} succeeded but its output holds no video URL",
                provider=self.name,
                job_id=job.id,
                retryable=False,
            )
        return VideoResult(job_id=job.id, provider=self.name, videos=videos)

    async def cancel(self, job: Job) -> bool:
        """Ask Replicate to cancel; a prediction already finished (or unknown) is left alone."""
        response = await self._request("POST", self._path(job, "/cancel"))
        if response.status_code == 404:
            return False
        prediction = check(response)
        status = prediction.get("status") if isinstance(prediction, dict) else None
        return status not in ("succeeded", "failed", "aborted")

    async def check_keys(self) -> str:
        """``GET /account``: free, and answered only to a valid token."""
        account = check(await self._request("GET", "/account"))
        who = account.get("username") if isinstance(account, dict) else None
        return f"replicate accepted the token (account {who or 'unknown'})"

    @classmethod
    def parse_callback(cls, payload: Mapping[str, Any]) -> Callback | None:
        """Replicate POSTs the prediction object (the same body as ``GET
        /predictions/{id}``): its ``id`` and ``status``. Payloads without the prediction's
        shape (``id``, a known ``status`` and ``urls``/``version``) are another provider's."""
        pid = payload.get("id")
        status = payload.get("status")
        if not isinstance(pid, str) or not pid or not isinstance(status, str):
            return None
        if status not in STATES or not ({"urls", "version"} & set(payload)):
            return None
        return Callback(keys=(pid,), state=STATES[status])
