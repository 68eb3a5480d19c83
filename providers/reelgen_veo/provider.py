"""Google Veo on the Gemini API's long-running operations (ai.google.dev/gemini-api/docs/video).

One job is one operation: ``POST {api}/v1beta/models/{model}:predictLongRunning`` with
``instances``/``parameters`` answers an operation ``name`` (``models/{model}/operations/{id}``);
``GET {api}/v1beta/{name}`` answers ``done: true`` once finished, with
``response.generateVideoResponse.generatedSamples[].video.uri`` or an ``error``. The video URI
is a Gemini API file (``.../v1beta/files/{id}:download?alt=media``) that answers only to the
API key.

The key travels in the ``x-goog-api-key`` header, never in a URL, and only to the configured
API host. The core's downloader sends no keys, so :meth:`VeoProvider.result` asks the API for
the file once, without following the redirect the guide's ``curl -L`` follows, and hands the
core the address it redirects to (which needs no key). The key thus never reaches another
host, a log line or the job log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from reelgen.errors import InvalidRequest, JobFailed, ProviderUnavailable, Unsupported
from reelgen.http import origin
from reelgen.models import Job, JobStatus, Video, VideoRequest, VideoResult
from reelgen.provider import ProviderSettings, ServiceUrl, VideoProvider
from reelgen.validation import inline_image, inspect_image

from .catalog import CAPABILITIES, HD, LANDSCAPE, MODELS, PORTRAIT, RESULT_TTL, VeoModel
from .wire_errors import NAME, check, error_for, filtered, operation_failure, transport_errors

DEFAULT_API_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
KEY_HEADER = "x-goog-api-key"
OPERATION_NAME = re.compile(r"models/[A-Za-z0-9._-]+/operations/[A-Za-z0-9._-]+")
"""What a Veo operation name looks like; anything else is never fetched with our key."""
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class VeoSettings(ProviderSettings):
    api_url: ServiceUrl = Field(
        default=DEFAULT_API_URL, description="The Gemini API's host (VEO_API_URL)."
    )


class VeoOptions(BaseModel):
    """Options only Veo understands (the Gemini API's own parameter names, snake_cased)."""

    model_config = ConfigDict(extra="forbid")

    resolution: Literal["720p", "1080p"] | None = Field(
        default=None,
        description="Output resolution: 720p (the default) or 1080p (Veo 3.1: 8 s only; "
        "Veo 3: 16:9 only; Veo 2: 720p only). Same price per second.",
    )
    person_generation: Literal["allow_all", "allow_adult", "dont_allow"] | None = Field(
        default=None,
        description="Who may appear: Veo 3.x takes allow_all for text-to-video and allow_adult "
        "for image-to-video only; Veo 2 also takes dont_allow. Unset: Google's default.",
    )


def _portrait(image: str) -> bool:
    info = inspect_image(Path(image))
    return info.height > info.width


class VeoProvider(VideoProvider[VeoSettings, VeoOptions]):
    name = NAME
    description = "Google Veo text-to-video and image-to-video on the Gemini API"
    settings_model = VeoSettings
    options_model = VeoOptions
    credential_names = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    # Google's SDK reads either variable (GOOGLE_API_KEY first when both are set); one is enough
    credential_sets = (("GEMINI_API_KEY",), ("GOOGLE_API_KEY",))
    env_settings: ClassVar[dict[str, str]] = {"api_url": "VEO_API_URL"}
    # An operation cannot be found by a key of ours: a start whose reply was lost is never
    # sent again (the core says so and keeps the job), it could pay twice.
    can_lookup = False
    # The Gemini API documents no cancel for Veo operations (only tunedModels have one).
    can_cancel = False
    result_ttl = RESULT_TTL
    capabilities = CAPABILITIES

    def __init__(self) -> None:
        super().__init__()
        self._finished: dict[str, str] = {}  # operation name -> video URI

    def configure(self, settings: ProviderSettings, credentials: Mapping[str, str]) -> None:
        super().configure(settings, credentials)
        self._finished = {}

    # -- validation -----------------------------------------------------------------------

    def model_of(self, request: VideoRequest) -> VeoModel:
        return MODELS[request.model or self.capabilities.default_model]

    def validate(self, request: VideoRequest) -> VideoRequest:
        request = super().validate(request)
        model_name = request.model or self.capabilities.default_model
        model = MODELS[model_name]
        if request.seed is not None:
            # the SDK: "seed parameter is only supported in ... (Vertex) mode, not in Gemini
            # Developer API mode"
            raise Unsupported("veo on the Gemini API takes no seed; drop `seed`", provider=NAME)
        options = self.options_for(request)
        image = request.image is not None
        if options.resolution is not None and options.resolution not in model.resolutions:
            raise Unsupported(
                f"veo {model_name} makes 720p video only; drop `resolution`", provider=NAME
            )
        if options.resolution == HD:
            duration = request.duration or self.capabilities.default_duration
            if model.hd_needs is not None and duration != model.hd_needs:
                raise Unsupported(
                    f"veo {model_name} makes 1080p at {model.hd_needs:g} s only; pass "
                    f"`duration` {model.hd_needs:g} or `resolution` 720p",
                    provider=NAME,
                )
            if model.hd_landscape_only and self.aspect_ratio(request) != LANDSCAPE:
                raise Unsupported(
                    f"veo {model_name} makes 1080p in 16:9 only; use a landscape "
                    f"{'image' if image else 'aspect ratio'} or `resolution` 720p",
                    provider=NAME,
                )
        allowed = model.person_image if image else model.person_text
        if options.person_generation is not None and options.person_generation not in allowed:
            kind = "image-to-video" if image else "text-to-video"
            raise Unsupported(
                f"veo {model_name} {kind} takes `person_generation` "
                f"{' or '.join(allowed)}, not {options.person_generation}",
                provider=NAME,
            )
        return request

    def aspect_ratio(self, request: VideoRequest) -> str:
        """The ``aspectRatio`` to ask for: the request's, or the image's orientation (the
        clip keeps the picture's framing), else the API's default 16:9."""
        if request.image is not None:
            return PORTRAIT if _portrait(request.image) else LANDSCAPE
        return request.aspect_ratio or LANDSCAPE

    # -- HTTP -----------------------------------------------------------------------------

    def api_key(self) -> str:
        # Google's SDK prefers GOOGLE_API_KEY when both are set; so does reelgen
        return self.credentials.get("GOOGLE_API_KEY") or self.credentials["GEMINI_API_KEY"]

    def _api(self, path: str) -> str:
        return f"{self.settings.api_url}/{API_VERSION}/{path}"

    def _on_api_host(self, url: str) -> bool:
        return origin(url) is not None and origin(url) == origin(self.settings.api_url)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        body: dict[str, Any] | None = None,
        submit: bool = False,
        stream: bool = False,
    ) -> httpx.Response:
        if not self._on_api_host(url):  # the key goes to the Gemini API's host and nowhere else
            raise ProviderUnavailable(
                f"veo: refusing to send the API key to {url[:80]!r}", provider=NAME
            )
        client = self.http_client()
        request = client.build_request(method, url, json=body, headers={KEY_HEADER: self.api_key()})
        with transport_errors(submit=submit):
            response = await client.send(request, follow_redirects=False, stream=stream)
        return response

    def build_body(self, request: VideoRequest) -> dict[str, Any]:
        """The ``predictLongRunning`` body for a validated request."""
        model = self.model_of(request)
        options = self.options_for(request)
        instance: dict[str, Any] = {}
        if request.prompt:
            instance["prompt"] = request.prompt
        if request.image is not None:
            mime, data = inline_image(request.image)
            instance["image"] = {"bytesBase64Encoded": data, "mimeType": mime}
        duration = request.duration or self.capabilities.default_duration
        parameters: dict[str, Any] = {
            "aspectRatio": self.aspect_ratio(request),
            "durationSeconds": int(duration),  # an integer, as Google's SDK sends it
        }
        if request.negative_prompt:
            parameters["negativePrompt"] = request.negative_prompt
        if options.resolution is not None and model.resolutions:
            parameters["resolution"] = options.resolution
        if options.person_generation is not None:
            parameters["personGeneration"] = options.person_generation
        return {"instances": [instance], "parameters": parameters}

    # -- the contract ---------------------------------------------------------------------

    async def submit(self, job: Job) -> Job:
        model = job.request.model or self.capabilities.default_model
        body = self.build_body(job.request)
        url = self._api(f"models/{model}:predictLongRunning")
        reply = check(await self._request("POST", url, body=body, submit=True), submit=True)
        name = reply.get("name") if isinstance(reply, dict) else None
        if not isinstance(name, str) or not OPERATION_NAME.fullmatch(name):
            raise ProviderUnavailable(
                f"the Gemini API accepted the start but named no operation ({name!r:.80})",
                provider=NAME,
                retryable=False,
                maybe_accepted=True,
            )
        data = {**job.data, "operation": name}
        return job.model_copy(
            update={"task_id": name, "state": "running", "message": "", "data": data}
        )

    def _operation_url(self, job: Job) -> str:
        name = job.task_id or job.data.get("operation")
        if not isinstance(name, str) or not OPERATION_NAME.fullmatch(name):
            raise InvalidRequest(
                f"job {job.id} has no Veo operation yet", provider=NAME, job_id=job.id
            )
        return self._api(name)

    async def _operation(self, job: Job) -> tuple[dict[str, Any], str | JobStatus | None]:
        """The operation and, once done, its video URI or the status saying how it failed."""
        operation = check(await self._request("GET", self._operation_url(job)))
        if not isinstance(operation, dict):
            raise ProviderUnavailable(
                "the Gemini API answered an operation that is not an object", provider=NAME
            )
        if operation.get("done") is not True:
            return operation, None
        if "error" in operation:
            state, message, kind = operation_failure(operation["error"])
            return operation, JobStatus(state=state, message=message, failure=kind)
        response = operation.get("response")
        videos = response.get("generateVideoResponse") if isinstance(response, dict) else None
        if not isinstance(videos, dict):
            raise ProviderUnavailable(
                "the Gemini API finished the operation with no generateVideoResponse",
                provider=NAME,
            )
        for sample in videos.get("generatedSamples") or []:
            video = sample.get("video") if isinstance(sample, dict) else None
            uri = video.get("uri") if isinstance(video, dict) else None
            if isinstance(uri, str) and uri:
                return operation, uri
        refused = filtered(videos)
        if refused is not None:
            state, message, kind = refused
            return operation, JobStatus(state=state, message=message, failure=kind)
        return operation, JobStatus(state="failed", message="the operation returned no video")

    async def poll(self, job: Job) -> JobStatus:
        operation, outcome = await self._operation(job)
        raw = {k: v for k, v in operation.items() if k in ("name", "done", "metadata")}
        if outcome is None:
            return JobStatus(state="running", raw=raw)
        if isinstance(outcome, JobStatus):
            return outcome.model_copy(update={"raw": raw})
        if job.task_id:
            self._finished[job.task_id] = outcome  # result() needs no second GET
        return JobStatus(state="succeeded", raw=raw)

    async def result(self, job: Job) -> VideoResult:
        uri = self._finished.pop(job.task_id, None) if job.task_id else None
        if uri is None:
            _, outcome = await self._operation(job)
            if not isinstance(outcome, str):
                state = "not finished" if outcome is None else outcome.state
                message = "" if outcome is None else f": {outcome.message}"
                raise JobFailed(f"veo job {job.id} {state}{message}", provider=NAME, job_id=job.id)
            uri = outcome
        return VideoResult(
            job_id=job.id, provider=NAME, videos=[Video(url=await self.fetchable(uri))]
        )

    async def fetchable(self, uri: str) -> str:
        """An address the core's downloader can fetch without the key.

        A file on the API host is asked for once with the key and without following
        redirects: the address it redirects to is the answer (*verify*: the guide's
        ``curl -L`` says the file redirects; where, it does not say). Any other https address
        is handed on as it is, without the key.
        """
        if not self._on_api_host(uri):
            if origin(uri) is None:
                raise ProviderUnavailable(
                    f"veo: the video URI is not a web address ({uri[:80]!r})", provider=NAME
                )
            return uri
        response = await self._request("GET", uri, stream=True)
        await response.aclose()  # unread: a body would be the video, which the core downloads
        if response.status_code in REDIRECTS and response.headers.get("location"):
            target = str(response.url.join(response.headers["location"]))
            if origin(target) is None:
                raise ProviderUnavailable(
                    f"veo: the video file redirects to a non-web address ({target[:80]!r})",
                    provider=NAME,
                )
            return target
        if response.is_success:
            raise ProviderUnavailable(
                "veo: the Gemini API served the video only with the API key, and reelgen "
                "never gives its downloader a key; report this (the file URI no longer "
                "redirects)",
                provider=NAME,
                retryable=False,
            )
        raise error_for(response)

    async def check_keys(self) -> str:
        """List the models (free): the key works when the list comes back."""
        reply = check(await self._request("GET", self._api("models?pageSize=1000")))
        models = reply.get("models") if isinstance(reply, dict) else None
        names = [
            str(m.get("name", "")).removeprefix("models/")
            for m in models or []
            if isinstance(m, dict)
        ]
        veo = sorted(n for n in names if n in MODELS)
        return (
            f"the Gemini API key works; Veo models it offers: {', '.join(veo)}"
            if veo
            else "the Gemini API key works, but it lists none of reelgen's Veo models"
        )
