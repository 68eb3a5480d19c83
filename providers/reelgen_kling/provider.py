"""Kling image-to-video (and text-to-video) over Kling's HTTP API, per kling-api.md."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import Field

from reelgen.errors import InvalidRequest, ProviderUnavailable, Unsupported
from reelgen.http import make_client
from reelgen.models import (
    Callback,
    CostEstimate,
    Job,
    JobStatus,
    TaskState,
    Video,
    VideoRequest,
    VideoResult,
)
from reelgen.provider import ProviderSettings, ServiceUrl, VideoProvider
from reelgen.validation import check_image, is_url

from .auth import KlingAuth
from .catalog import CAPABILITIES, SOUND_MODELS, SOUND_NEEDS_PRO, SOUND_PRICES
from .masks import check_masks
from .options import KlingOptions
from .wire_errors import NOT_FOUND_CODES, business_code, transport_errors, unwrap

DEFAULT_BASE_URL = "https://api-singapore.klingai.com"

UNOFFERED_FIELDS: dict[str, str] = {
    "voice_list": 'voice control is billed at Kling\'s "with specified voice" rate, which is '
    "not published, so reelgen cannot keep it within a budget",
    "multi_shot": "multi-shot (kling-v3) is not supported by reelgen yet",
    "shot_type": "multi-shot (kling-v3) is not supported by reelgen yet",
    "multi_prompt": "multi-shot (kling-v3) is not supported by reelgen yet",
    "element_list": "element control (kling-v3) is not supported by reelgen yet",
}
"""Kling body fields reelgen refuses by name (rather than as an unknown option)."""

STATES: dict[str, TaskState] = {
    "submitted": "queued",
    "processing": "running",
    "succeed": "succeeded",
    "succeeded": "succeeded",  # tolerated spelling
    "failed": "failed",
}


def _absolute(value: str) -> str:
    return value if is_url(value) else str(Path(value).expanduser().resolve())


class KlingSettings(ProviderSettings):
    base_url: ServiceUrl = Field(default=DEFAULT_BASE_URL, description="API host (KLING_BASE_URL).")
    expected_seconds: float | None = Field(
        default=None, gt=0, description="Typical processing time of a 5 s std clip."
    )


class KlingProvider(VideoProvider[KlingSettings, KlingOptions]):
    name = "kling"
    description = "Kling AI image-to-video and text-to-video (api-singapore.klingai.com)"
    settings_model = KlingSettings
    options_model = KlingOptions
    credential_names = (
        "KLING_ACCESS_KEY",
        "KLING_SECRET_KEY",
        "KLING_API_KEY",
        "KLING_WEBHOOK_SECRET",
    )
    credential_sets = (("KLING_ACCESS_KEY", "KLING_SECRET_KEY"), ("KLING_API_KEY",))
    webhook_secret_name = "KLING_WEBHOOK_SECRET"  # optional: only --listen checks it
    env_settings: ClassVar[dict[str, str]] = {"base_url": "KLING_BASE_URL"}
    can_lookup = True
    default_max_duration = 5.0
    result_ttl = 30 * 24 * 3600.0  # kling-api.md: results are deleted after 30 days
    default_price_per_second = 0.08
    capabilities = CAPABILITIES

    def __init__(self) -> None:
        super().__init__()
        self._auth: KlingAuth | None = None
        self._finished: dict[str, dict[str, Any]] = {}  # task_id -> last final task seen

    # -- configuration ----------------------------------------------------------------------

    def configure(self, settings: ProviderSettings, credentials: Mapping[str, str]) -> None:
        super().configure(settings, credentials)
        self._auth = None  # new keys: never reuse a token signed with other ones
        self._finished = {}

    @classmethod
    def map_paths(cls, options: Mapping[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
        """The end frame and the static mask, and each motion-brush group's mask file."""
        mapped = super().map_paths(options, fn)
        dynamic = mapped.get("dynamic_masks")
        if isinstance(dynamic, list):
            mapped["dynamic_masks"] = [
                {**item, "mask": fn(item["mask"])}
                if isinstance(item, Mapping) and isinstance(item.get("mask"), str) and item["mask"]
                else item
                for item in dynamic
            ]
        return mapped

    def validate(self, request: VideoRequest) -> VideoRequest:
        unoffered = sorted(UNOFFERED_FIELDS.keys() & request.options.keys())
        if unoffered:
            field = unoffered[0]
            raise Unsupported(
                f"kling option {field}: {UNOFFERED_FIELDS[field]}; drop it", provider=self.name
            )
        request = super().validate(request)
        options = self.parse_options(request.options)
        if request.seed is not None:
            raise Unsupported("kling does not take a seed; drop `seed`", provider=self.name)
        if options is None:
            return request
        model = request.model or self.capabilities.default_model
        if options.sound and model not in SOUND_MODELS:
            raise Unsupported(
                f"sound needs one of {', '.join(sorted(SOUND_MODELS))} (model is {model})",
                provider=self.name,
            )
        if options.sound == "on" and model in SOUND_NEEDS_PRO and request.mode != "pro":
            raise InvalidRequest(
                f"sound on {model} needs mode pro (Kling refuses it in std); pass `mode` pro",
                provider=self.name,
            )
        if options.image_tail:
            if request.image is None:
                raise InvalidRequest("image_tail needs a start image", provider=self.name)
            assert self.capabilities.image is not None
            check_image(options.image_tail, self.capabilities.image, self.name)
        if options.mask_files:
            check_masks(options, request.image, model, self.name)
        # every local file (end frame, masks) absolute, so a job recovered later, from another
        # folder, sends the same pictures (as the core does for the image)
        return request.model_copy(update={"options": self.map_paths(request.options, _absolute)})

    def estimate(self, request: VideoRequest) -> CostEstimate:
        """The silent estimate (model and mode), raised to the published price with sound when
        ``sound`` is on (twice silent on kling-v2-6 pro), so --max-cost holds with sound too."""
        silent = super().estimate(request)
        options = self.parse_options(request.options)
        sound = SOUND_PRICES.get(silent.model, {}).get(silent.mode)
        if options is None or options.sound != "on" or sound is None:
            return silent
        if silent.price_per_second >= sound:
            return silent.model_copy(update={"basis": silent.basis + "; sound included"})
        return silent.model_copy(
            update={
                "price_per_second": sound,
                "basis": f"{self.name}'s published price with sound (${sound:g}/s)",
            }
        )

    def expected_seconds(self, request: VideoRequest) -> float:
        base = self.settings.expected_seconds or self.capabilities.expected_seconds
        duration = request.duration or self.capabilities.default_duration
        factor = max(1.0, duration / self.capabilities.default_duration)
        if request.mode == "pro":
            factor *= 1.5
        return base * factor

    # -- HTTP -------------------------------------------------------------------------------

    def make_http_client(self) -> httpx.AsyncClient:
        c = self.credentials
        self._auth = KlingAuth(
            access_key=c.get("KLING_ACCESS_KEY"),
            secret_key=c.get("KLING_SECRET_KEY"),
            api_key=c.get("KLING_API_KEY"),
            clock=self.clock,
        )
        client = make_client(base_url=self.settings.base_url.rstrip("/"), transport=self.transport)
        client.auth = self._auth
        return client

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        create: bool = False,
    ) -> httpx.Response:
        client = self.http_client()
        with transport_errors(create=create):
            return await client.request(method, path, json=body, params=params)

    # -- the contract -----------------------------------------------------------------------

    @staticmethod
    def endpoint(request: VideoRequest) -> str:
        return "/v1/videos/image2video" if request.image is not None else "/v1/videos/text2video"

    @staticmethod
    def _image_field(image: str) -> str:
        """A URL passes through; a local file is sent as bare base64 (no data: prefix)."""
        if is_url(image):
            return image
        try:
            data = Path(image).expanduser().read_bytes()
        except OSError as exc:
            raise InvalidRequest(
                f"cannot read the image {image} ({exc.strerror or exc}); it was there when the "
                "job was checked"
            ) from None
        return base64.b64encode(data).decode("ascii")

    def build_body(self, job: Job) -> dict[str, Any]:
        request = job.request
        duration = request.duration or self.capabilities.default_duration
        body: dict[str, Any] = {
            "model_name": request.model or self.capabilities.default_model,
            "mode": request.mode or self.capabilities.default_mode,
            "duration": f"{duration:g}",
            "external_task_id": job.idempotency_key,
        }
        if request.prompt:
            body["prompt"] = request.prompt
        if request.negative_prompt:
            body["negative_prompt"] = request.negative_prompt
        if request.cfg_scale is not None:
            body["cfg_scale"] = request.cfg_scale
        if request.image is not None:
            body["image"] = self._image_field(request.image)
        elif request.aspect_ratio:
            body["aspect_ratio"] = request.aspect_ratio
        options = self.parse_options(request.options)
        if isinstance(options, KlingOptions):
            if options.image_tail:
                body["image_tail"] = self._image_field(options.image_tail)
            if options.static_mask:
                body["static_mask"] = self._image_field(options.static_mask)
            if options.dynamic_masks:
                body["dynamic_masks"] = [
                    {
                        "mask": self._image_field(dynamic.mask),
                        "trajectories": [p.model_dump() for p in dynamic.trajectories],
                    }
                    for dynamic in options.dynamic_masks
                ]
            if options.camera_control:
                body["camera_control"] = options.camera_control.model_dump(exclude_none=True)
            if options.watermark is not None:
                body["watermark_info"] = {"enabled": options.watermark}
            if options.sound:
                body["sound"] = options.sound
        if request.callback_url:
            body["callback_url"] = request.callback_url
        return body

    @classmethod
    def parse_callback(cls, payload: Mapping[str, Any]) -> Callback | None:
        """Kling POSTs the task object (kling-api.md), bare or in the ``{code, data}``
        envelope: its ``task_id``, our ``task_info.external_task_id`` and ``task_status``."""
        task: Any = payload
        if "task_id" not in payload and isinstance(payload.get("data"), Mapping):
            task = payload["data"]
        info = task.get("task_info")
        keys = [
            task.get("task_id"),
            info.get("external_task_id") if isinstance(info, Mapping) else None,
        ]
        named = tuple(k for k in keys if isinstance(k, str) and k)
        if not named:
            return None
        status = task.get("task_status")
        return Callback(keys=named, state=STATES.get(status) if isinstance(status, str) else None)

    def _state(self, task: dict[str, Any]) -> TaskState:
        raw_state = str(task.get("task_status"))
        state = STATES.get(raw_state)
        if state is None:
            raise ProviderUnavailable(
                f"kling reported an unknown task_status {raw_state!r}", provider=self.name
            )
        return state

    def _job_from_task(self, job: Job, task: dict[str, Any]) -> Job:
        task_id = task.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            # code 0 means the task exists: find it by its external id, never create again
            raise ProviderUnavailable(
                "kling replied without a task_id", provider=self.name, maybe_accepted=True
            )
        state = self._state(task)
        return job.model_copy(
            update={
                "task_id": task_id,
                "state": state,
                "message": task.get("task_status_msg") or "",
            }
        )

    async def submit(self, job: Job) -> Job:
        body = self.build_body(job)
        response = await self._request("POST", self.endpoint(job.request), body=body, create=True)
        if business_code(response) in (1200, 1201) and "external_task_id" in response.text:
            # our key is taken: an earlier create of this very job went through
            found = await self.lookup(job)
            if found is not None:
                return found
            raise ProviderUnavailable(
                "kling says this job's external_task_id is taken, but no task with it was "
                "found yet",
                provider=self.name,
                maybe_accepted=True,  # it exists: look again, never send it again blindly
            )
        data = unwrap(response, create=True)
        if not isinstance(data, dict):
            raise ProviderUnavailable(
                "kling accepted the task but its reply had no data",
                provider=self.name,
                maybe_accepted=True,
            )
        return self._job_from_task(job, data)

    async def check_keys(self) -> str:
        """List the newest task: free, and only answered to valid keys."""
        response = await self._request(
            "GET", "/v1/videos/image2video", params={"pageNum": 1, "pageSize": 1}
        )
        unwrap(response)
        return f"{self.name} accepted the keys at {self.settings.base_url}"

    async def lookup(self, job: Job) -> Job | None:
        """Find the task by ``external_task_id``; tolerant of the list or object shapes."""
        key = job.idempotency_key
        response = await self._request(
            "GET", self.endpoint(job.request), params={"external_task_id": key}
        )
        if response.status_code == 404 or business_code(response) in NOT_FOUND_CODES:
            return None
        if business_code(response) in (1200, 1201):
            # this host does not take the query form: scan the newest tasks instead
            response = await self._request(
                "GET", self.endpoint(job.request), params={"pageNum": 1, "pageSize": 500}
            )
            data = unwrap(response)
            if not isinstance(data, list):
                return None
        else:
            data = unwrap(response)
        candidates = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
        for task in candidates:
            if not isinstance(task, dict):
                continue
            info = task.get("task_info") or {}
            external = info.get("external_task_id") if isinstance(info, dict) else None
            if external == key or (external is None and not isinstance(data, list)):
                return self._job_from_task(job, task)
        return None

    async def _task(self, job: Job) -> dict[str, Any]:
        if job.task_id is None:
            raise InvalidRequest(f"job {job.id} has no Kling task yet", job_id=job.id)
        response = await self._request("GET", f"{self.endpoint(job.request)}/{job.task_id}")
        data = unwrap(response)
        if not isinstance(data, dict):
            raise ProviderUnavailable("kling answered a query without data", provider=self.name)
        return data

    async def poll(self, job: Job) -> JobStatus:
        task = await self._task(job)
        if task.get("task_status") in ("succeed", "succeeded") and job.task_id:
            self._finished[job.task_id] = task  # result() needs no second query
        charged = task.get("final_unit_deduction")
        took: float | None = None
        created, updated = task.get("created_at"), task.get("updated_at")
        if (
            task.get("task_status") in ("succeed", "succeeded")
            and isinstance(created, (int, float))
            and isinstance(updated, (int, float))
            and updated >= created
        ):
            took = (updated - created) / 1000  # Kling's own timestamps are in ms
        return JobStatus(
            took=took,
            state=self._state(task),
            message=str(task.get("task_status_msg") or ""),
            charged=str(charged) if charged not in (None, "") else None,
            raw={k: v for k, v in task.items() if k != "task_result"},
        )

    async def result(self, job: Job) -> VideoResult:
        cached = self._finished.pop(job.task_id, None) if job.task_id else None
        task = cached if cached is not None else await self._task(job)
        result = task.get("task_result") or {}
        videos = []
        for item in result.get("videos") or [] if isinstance(result, dict) else []:
            if isinstance(item, dict) and item.get("url"):
                duration = item.get("duration")
                try:
                    seconds = float(duration) if duration not in (None, "") else None
                except (TypeError, ValueError):
                    seconds = None
                videos.append(
                    Video(
                        url=str(item["url"]),
                        duration=seconds,
                        id=str(item["id"]) if item.get("id") else None,
                        watermark_url=str(item["watermark_url"])
                        if item.get("watermark_url")
                        else None,
                    )
                )
        charged = task.get("final_unit_deduction")
        return VideoResult(
            job_id=job.id,
            provider=self.name,
            videos=videos,
            charged=str(charged) if charged not in (None, "") else None,
        )
