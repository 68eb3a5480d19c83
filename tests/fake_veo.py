"""A fake of the Gemini API's Veo video generation, from its documentation.

Sources: ai.google.dev/gemini-api/docs/video ("Veo API parameters and specifications", the REST
examples, "Limitations"), the troubleshooting page's error table, and the request shape the
official ``google-genai`` SDK sends in Gemini API mode. It imports nothing from ``reelgen*``.
Use it as ``httpx.MockTransport(FakeVeo().handler)``.

Behaviour in brief:

* The key travels in ``x-goog-api-key`` (``?key=`` is accepted too, as Google's APIs do, and
  recorded so tests can insist it is never used). A wrong key -> 400 INVALID_ARGUMENT with an
  ErrorInfo ``API_KEY_INVALID``; no key -> 403 PERMISSION_DENIED.
* ``POST /v1beta/models/{model}:predictLongRunning`` with ``{"instances": [{prompt, image}],
  "parameters": {...}}`` checks every field against the model's documented values (400
  INVALID_ARGUMENT, unknown model 404 NOT_FOUND) and answers ``{"name":
  "models/{model}/operations/{id}"}``.
* ``GET /v1beta/{name}``: ``{"name", "metadata"}`` until the ``polls_to_finish``-th poll, then
  ``done: true`` with ``response.generateVideoResponse.generatedSamples[0].video.uri`` (or the
  failure scripted with :meth:`FakeVeo.fail_next`: an operation ``error`` or the RAI filter).
* ``GET /v1beta/files/{id}:download?alt=media`` with the key redirects (302) to the video under
  ``cdn_url`` (*verify*: the guide's ``curl -L`` follows a redirect; where to is not
  documented); ``redirect=False`` serves the bytes directly instead. Files are kept 2 days.
* ``GET /v1beta/models`` lists the models (the free call keys are checked with).
* Faults are queued with :meth:`FakeVeo.inject` and consumed in order.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from tests import fake_http
from tests.fake_http import FakeBase, path_under, read_image, same_origin

DEFAULT_KEY = "AIza-fake-gemini-key-for-tests-0000"
DEFAULT_API_URL = "https://generativelanguage.googleapis.com"
DEFAULT_CDN_URL = "https://video-downloads.googleusercontent.example"
RETENTION = 2 * 24 * 3600.0
ASPECT_RATIOS = ("16:9", "9:16")
MIME_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG"}
RESPONSE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
METADATA_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningMetadata"
# ^ *verify*: the @type strings are not in the guide; clients must not depend on them.

Route = Literal["submit", "operation", "file", "download", "models", "any"]
ROUTES: tuple[Route, ...] = ("submit", "operation", "file", "download", "models", "any")
FaultKind = Literal["rpc", fake_http.SharedFaultKind]
RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class ModelSpec:
    """One Veo model as the parameter table describes it."""

    durations: tuple[int, ...]
    resolutions: tuple[str, ...] = ()
    hd_needs: int | None = None
    hd_landscape_only: bool = False
    person_text: tuple[str, ...] = ("allow_all",)
    person_image: tuple[str, ...] = ("allow_adult",)


_V31 = ModelSpec((4, 6, 8), ("720p", "1080p"), hd_needs=8)
_V3 = ModelSpec((4, 6, 8), ("720p", "1080p"), hd_landscape_only=True)
MODELS: dict[str, ModelSpec] = {
    "veo-3.1-generate-preview": _V31,
    "veo-3.1-fast-generate-preview": _V31,
    "veo-3.0-generate-001": _V3,
    "veo-3.0-fast-generate-001": _V3,
    "veo-2.0-generate-001": ModelSpec(
        (5, 6, 8),
        person_text=("allow_all", "allow_adult", "dont_allow"),
        person_image=("allow_adult", "dont_allow"),
    ),
}
INSTANCE_FIELDS = frozenset({"prompt", "image", "lastFrame", "referenceImages", "video"})
PARAMETER_FIELDS = frozenset(
    {
        "aspectRatio",
        "durationSeconds",
        "negativePrompt",
        "personGeneration",
        "resolution",
        "sampleCount",
        "enhancePrompt",
    }
)
"""What the Gemini API takes (the SDK's Gemini API mode); ``seed``, ``generateAudio``, ``fps``
and the other Vertex-only fields are refused as unknown."""


@dataclass(frozen=True)
class Fault(fake_http.Fault):
    """A shared fault (raw replies, timeouts, drops, cuts) or a google.rpc error reply."""

    kind: FaultKind
    message: str = "fake Gemini API error"
    rpc_status: str = ""
    reason: str = ""

    @staticmethod
    def rpc(
        status: int,
        message: str = "fake Gemini API error",
        rpc_status: str = "",
        retry_after: float | None = None,
        reason: str = "",
    ) -> Fault:
        """Reply ``{"error": {"code", "message", "status", "details"}}`` (not processed)."""
        return Fault(
            "rpc",
            http_status=status,
            message=message,
            rpc_status=rpc_status or RPC_STATUS.get(status, "UNKNOWN"),
            retry_after=retry_after,
            reason=reason,
        )


def rpc_body(status: int, message: str, rpc_status: str = "", reason: str = "") -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": rpc_status or RPC_STATUS.get(status, "UNKNOWN"),
    }
    if reason:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
    return {"error": error}


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=payload, headers=dict(headers or {}))


def _invalid(message: str) -> httpx.Response:
    return _json(400, rpc_body(400, message))


_SUBMIT = re.compile(r"/v1beta/models/(?P<model>[^/:]+):predictLongRunning")
_OPERATION = re.compile(r"/v1beta/(?P<name>models/(?P<model>[^/]+)/operations/(?P<id>[^/]+))")
_FILE = re.compile(r"/v1beta/files/(?P<id>[^/:]+):download")
_MODELS = re.compile(r"/v1beta/models")


class FakeVeo(FakeBase[Fault]):
    """An in-memory Gemini API serving the Veo models; ``handler`` serves ``httpx.Request``."""

    name = "fake-veo"
    routes = ROUTES

    def __init__(
        self,
        *,
        key: str = DEFAULT_KEY,
        clock: Callable[[], float] = time.time,
        polls_to_finish: int = 2,
        video: bytes | None = None,
        api_url: str = DEFAULT_API_URL,
        cdn_url: str = DEFAULT_CDN_URL,
        redirect: bool = True,
        seed: int | None = None,
        max_recorded: int | None = None,
    ) -> None:
        if polls_to_finish < 1:
            raise ValueError("polls_to_finish must be >= 1")
        self._init_base(clock, video, cdn_url, seed, max_recorded)
        self.key = key
        self.polls_to_finish = polls_to_finish
        self.api_url = api_url.rstrip("/")
        self.redirect = redirect
        self._api = httpx.URL(self.api_url)
        self._fail_next: list[dict[str, Any]] = []

        self.submits_accepted = 0
        """Starts that created an operation (each one is paid for)."""
        self.operations: dict[str, dict[str, Any]] = {}
        """operation name -> ``model``, ``body``, ``polls``, ``done``, ``outcome`` (the
        ``response`` or ``error`` object once done), ``file``."""
        self.files: dict[str, float] = {}
        """file id -> when it was made (removed after :data:`RETENTION`)."""
        self.keys_in_url = 0
        """Requests that carried the key in the URL (``?key=``) instead of the header."""

    # ------------------------------------------------------------------ public controls

    def fail_next(
        self,
        *,
        error: Mapping[str, Any] | None = None,
        rai_reasons: tuple[str, ...] = (),
        times: int = 1,
    ) -> None:
        """Make the next ``times`` operations end ``done`` without a video: with ``error`` (a
        google.rpc.Status such as ``{"code": 13, "message": ...}``), or filtered by the RAI
        checks with ``rai_reasons``."""
        if error is not None:
            outcome: dict[str, Any] = {"error": dict(error)}
        else:
            outcome = {
                "response": {
                    "@type": RESPONSE_TYPE,
                    "generateVideoResponse": {
                        "raiMediaFilteredCount": 1,
                        "raiMediaFilteredReasons": list(rai_reasons or ("filtered",)),
                    },
                }
            }
        with self._lock:
            self._fail_next.extend(copy.deepcopy(outcome) for _ in range(times))

    def file_url(self, file_id: str) -> str:
        return f"{self.api_url}/v1beta/files/{file_id}:download?alt=media"

    # ------------------------------------------------------------------ routing

    def _error_reply(self, fault: Fault) -> tuple[httpx.Response, str] | None:
        if fault.kind != "rpc":
            return None
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        body = rpc_body(fault.http_status, fault.message, fault.rpc_status, fault.reason)
        return _json(fault.http_status, body, headers), f"{fault.http_status} {fault.rpc_status}"

    def _classify(self, request: httpx.Request) -> str:
        url = request.url
        if self._is_cdn(url):
            return "download"
        if not same_origin(url, self._api):
            return "other"
        path = path_under(url, self._api)
        if _SUBMIT.fullmatch(path) and request.method == "POST":
            return "submit"
        if _OPERATION.fullmatch(path):
            return "operation"
        if _FILE.fullmatch(path):
            return "file"
        if _MODELS.fullmatch(path):
            return "models"
        return "other"

    def _dispatch(self, request: httpx.Request, route: str) -> tuple[httpx.Response, str]:
        if route == "download":
            return self._download(request), ""
        if not same_origin(request.url, self._api):
            raise self._no_such_host(request)
        denied = self._check_key(request)
        if denied is not None:
            return denied, " (key)"
        path = path_under(request.url, self._api)
        if route == "submit":
            match = _SUBMIT.fullmatch(path)
            assert match is not None
            return self._submit(request, match.group("model"))
        if route == "operation" and request.method == "GET":
            match = _OPERATION.fullmatch(path)
            assert match is not None
            return self._operation(match.group("name")), ""
        if route == "file" and request.method == "GET":
            match = _FILE.fullmatch(path)
            assert match is not None
            return self._file(request, match.group("id")), ""
        if route == "models" and request.method == "GET":
            names = [
                {"name": f"models/{m}", "supportedGenerationMethods": ["predictLongRunning"]}
                for m in MODELS
            ]
            return _json(200, {"models": names}), ""
        return _json(404, rpc_body(404, f"Method not found: {request.method} {path}")), ""

    def _check_key(self, request: httpx.Request) -> httpx.Response | None:
        given = request.headers.get("x-goog-api-key")
        in_url = request.url.params.get("key")
        if in_url is not None:
            self.keys_in_url += 1
            given = given or in_url
        if not given:
            return _json(
                403,
                rpc_body(
                    403,
                    "Method doesn't allow unregistered callers (callers without established "
                    "identity). Please use API Key or other form of API consumer identity.",
                ),
            )
        if given != self.key:
            return _json(
                400,
                rpc_body(
                    400, "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID"
                ),
            )
        return None

    # ------------------------------------------------------------------ the API

    def _submit(self, request: httpx.Request, model: str) -> tuple[httpx.Response, str]:
        spec = MODELS.get(model)
        if spec is None:
            return _json(
                404,
                rpc_body(
                    404,
                    f"models/{model} is not found for API version v1beta, or is not "
                    "supported for predictLongRunning.",
                ),
            ), ""
        try:
            body = json.loads(request.content or b"null")
        except ValueError:
            return _invalid("Invalid JSON payload received."), ""
        problem = validate_body(body, spec)
        if problem is not None:
            return _invalid(problem), " (invalid)"
        op_id = self._random_uuid().replace("-", "")[:12]
        name = f"models/{model}/operations/{op_id}"
        self.submits_accepted += 1
        self.operations[name] = {
            "model": model,
            "body": body,
            "polls": 0,
            "done": False,
            "outcome": None,
            "created": self.clock(),
            "failure": self._fail_next.pop(0) if self._fail_next else None,
        }
        return _json(200, {"name": name}), f" {name}"

    def _operation(self, name: str) -> httpx.Response:
        op = self.operations.get(name)
        if op is None:
            return _json(404, rpc_body(404, f"Operation {name} not found."))
        op["polls"] += 1
        if not op["done"] and op["polls"] >= self.polls_to_finish:
            op["done"] = True
            if op["failure"] is not None:
                op["outcome"] = op["failure"]
            else:
                file_id = self._random_uuid().replace("-", "")[:12]
                self.files[file_id] = self.clock()
                op["file"] = file_id
                op["outcome"] = {
                    "response": {
                        "@type": RESPONSE_TYPE,
                        "generateVideoResponse": {
                            "generatedSamples": [{"video": {"uri": self.file_url(file_id)}}]
                        },
                    }
                }
        reply: dict[str, Any] = {"name": name, "metadata": {"@type": METADATA_TYPE}}
        if op["done"]:
            reply["done"] = True
            reply.update(copy.deepcopy(op["outcome"]))
        return _json(200, reply)

    def _file(self, request: httpx.Request, file_id: str) -> httpx.Response:
        made = self.files.get(file_id)
        if (
            made is None
            or self.clock() - made > RETENTION
            or request.url.params.get("alt") != "media"
        ):
            return _json(404, rpc_body(404, f"File {file_id} not found."))
        if self.redirect:
            target = f"{self.cdn_url}/{file_id}.mp4?sig={self._random_uuid()[:8]}"
            return httpx.Response(302, headers={"Location": target})
        return self._serve_video(request)

    def _refuse_video(self, request: httpx.Request) -> httpx.Response | None:
        file_id = self._cdn_path(request.url).strip("/").removesuffix(".mp4")
        if file_id not in self.files or "sig" not in request.url.params:
            return httpx.Response(403, text="Forbidden")
        if "x-goog-api-key" in request.headers:
            raise AssertionError("fake-veo: the API key reached the video host")
        return None


def validate_body(body: Any, spec: ModelSpec) -> str | None:
    """What the Gemini API would say about a ``predictLongRunning`` body; None when valid."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received. Expected an object."
    unknown = set(body) - {"instances", "parameters"}
    if unknown:
        return _unknown(unknown, "")
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        return "instances must hold exactly one instance."
    instance = instances[0]
    unknown = set(instance) - INSTANCE_FIELDS
    if unknown:
        return _unknown(unknown, "instances[0]")
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        return "parameters must be an object."
    unknown = set(parameters) - PARAMETER_FIELDS
    if unknown:
        return _unknown(unknown, "parameters")
    prompt = instance.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        return "prompt must be a string."
    image = instance.get("image")
    if image is None and not prompt:
        return "A prompt is required for text-to-video."
    if image is not None:
        problem = _check_image(image)
        if problem:
            return problem
    ratio = parameters.get("aspectRatio", "16:9")
    if ratio not in ASPECT_RATIOS:
        return f"aspectRatio {ratio!r} is not supported; use 16:9 or 9:16."
    duration = parameters.get("durationSeconds", 8)
    if isinstance(duration, str) and duration.isdigit():
        duration = int(duration)
    if (
        not isinstance(duration, int)
        or isinstance(duration, bool)
        or duration not in spec.durations
    ):
        return f"durationSeconds {duration!r} is out of range; this model takes {spec.durations}."
    if "resolution" in parameters:
        resolution = parameters["resolution"]
        if resolution not in spec.resolutions:
            return f"resolution {resolution!r} is not supported by this model."
        if resolution == "1080p" and spec.hd_needs is not None and duration != spec.hd_needs:
            return "1080p is only supported with an 8 second duration."
        if resolution == "1080p" and spec.hd_landscape_only and ratio != "16:9":
            return "1080p is only supported for 16:9."
    person = parameters.get("personGeneration")
    if person is not None:
        allowed = spec.person_image if image is not None else spec.person_text
        if person not in allowed:
            return f"personGeneration {person!r} is not supported for this use case."
    negative = parameters.get("negativePrompt")
    if negative is not None and not isinstance(negative, str):
        return "negativePrompt must be a string."
    return None


def _unknown(names: set[str], where: str) -> str:
    at = f" at '{where}'" if where else ""
    return (
        f'Invalid JSON payload received. Unknown name "{sorted(names)[0]}"{at}: Cannot find field.'
    )


def _check_image(image: Any) -> str | None:
    if not isinstance(image, dict):
        return "image must be an object."
    if "gcsUri" in image or "uri" in image:
        return "Image URIs are not supported in the Gemini API; send bytesBase64Encoded."
    if set(image) - {"bytesBase64Encoded", "mimeType"}:
        return "image takes bytesBase64Encoded and mimeType."
    data, mime = image.get("bytesBase64Encoded"), image.get("mimeType")
    if not isinstance(data, str) or not isinstance(mime, str):
        return "image needs bytesBase64Encoded and mimeType."
    if mime not in MIME_FORMATS:
        return f"Unsupported MIME type: {mime}"
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return "image.bytesBase64Encoded is not valid base64."
    info = read_image(raw)
    if info is None or info[0] != MIME_FORMATS[mime]:
        return f"The image is not a valid {mime} image."
    return None
