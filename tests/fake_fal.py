"""A fake of fal's queue API hosting the Kling video models, from ``/work/shared/providers.md``.

It encodes the documented contract (section "fal — queue API"), not any client's assumptions,
and imports nothing from ``reelgen*``. Two ways to use it:

* in tests, as ``httpx.MockTransport(FakeFal().handler)`` for sync and async clients;
* as a real local server for manual end-to-end checks::

      python tests/fake_fal.py --port 8766 --polls 3

Behaviour in brief:

* ``Authorization: Key <key>``; ``Bearer``, a wrong key or no header -> 401 ``{"detail": ...}``.
* ``POST {queue_url}/{model_id}`` (``model_id`` from :data:`MODELS`, unknown -> 404) queues a
  request and replies ``{request_id, status_url, response_url, cancel_url}``. Those URLs address
  the *app* (``fal-ai/kling-video``) without the endpoint sub-path; the same paths built with the
  full model id answer 404 (the classic hand-built-URL bug).
* A request is ``IN_QUEUE`` on its first status poll, ``IN_PROGRESS`` after, ``COMPLETED`` on
  the ``polls_to_finish``-th (or by clock with ``seconds_to_finish``). A failed request is still
  ``COMPLETED``; the failure shows when the result is fetched: an HTTP error with
  ``{"detail": [{"loc", "msg", "type", ...}]}`` and ``X-Fal-Retryable``. A request that ends
  in one of fal's *request errors* (:data:`REQUEST_ERROR_TYPES`, :meth:`FakeFal.fail_next_with`)
  says so on its COMPLETED status (``error``, ``error_type``) and its result is the flat
  ``{"detail": "<text>", "error_type": "<type>"}`` with ``X-Fal-Error-Type``, at the type's
  typical status.
* Input is validated per model (a field map per model id). By default the errors surface at the
  result (422), as the queue accepts any JSON object; ``validation="submit"`` rejects at submit.
* ``PUT cancel_url`` -> 202 ``CANCELLATION_REQUESTED`` / 400 ``ALREADY_COMPLETED`` /
  404 ``NOT_FOUND``.
* Result videos live under ``cdn_url``: no auth, Range supported, Content-Length always.
* Faults are queued with :meth:`FakeFal.inject` and consumed in order.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

if not __package__:  # run as ``python tests/<this file>``: put the repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import fake_http
from tests.fake_http import FakeBase, Server, path_under, same_origin, text_reply

__all__ = [
    "APP_ID",
    "DEFAULT_CDN_URL",
    "DEFAULT_KEY",
    "DEFAULT_QUEUE_URL",
    "MODELS",
    "FakeFal",
    "Fault",
    "ModelSpec",
    "check_image_url",
    "main",
    "parse_fault_spec",
    "serve",
    "validate_input",
]

DEFAULT_KEY = "fal-key-fake-test-0000"
DEFAULT_QUEUE_URL = "https://queue.fal.run"
DEFAULT_CDN_URL = "https://v3.fal.media"
APP_ID = "fal-ai/kling-video"
ERRORS_DOC_URL = "https://docs.fal.ai/errors"

Endpoint = Literal["image-to-video", "text-to-video"]
I2V: Endpoint = "image-to-video"
T2V: Endpoint = "text-to-video"
DURATIONS = ("5", "10")
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
MAX_PROMPT_CHARS = 2500
RETRY_HEADERS = ("X-Fal-Retryable", "X-Fal-Needs-Retry")
CANCELLED_STATUS = 499
"""fal's request-error status for ``client_cancelled`` (the result of a cancelled request)."""
REQUEST_ERROR_TYPES: dict[str, tuple[int, str]] = {
    "request_timeout": (504, "Request timed out"),
    "startup_timeout": (504, "Runner did not start in time"),
    "runner_scheduling_failure": (503, "No runner could be allocated"),
    "runner_connection_timeout": (503, "Connection to the runner timed out"),
    "runner_disconnected": (503, "Runner disconnected"),
    "runner_connection_refused": (503, "Runner refused the connection"),
    "runner_connection_error": (503, "Connection error with the runner"),
    "runner_incomplete_response": (502, "Runner sent an incomplete response"),
    "runner_server_error": (500, "Runner internal server error"),
    "client_disconnected": (499, "Client disconnected"),
    "client_cancelled": (CANCELLED_STATUS, "Request was cancelled"),
    "bad_request": (400, "Invalid timeout header"),
    "internal_error": (500, "Internal error"),
}
"""fal's "Request Error Types" table: error_type -> (typical HTTP status, a detail text)."""

Route = Literal["submit", "status", "result", "cancel", "download", "any"]
ROUTES: tuple[Route, ...] = ("submit", "status", "result", "cancel", "download", "any")
FaultKind = Literal["http", fake_http.SharedFaultKind]
QueueStatus = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]

_COMMON_FIELDS = frozenset({"prompt", "duration", "negative_prompt", "cfg_scale"})


@dataclass(frozen=True)
class ModelSpec:
    """One Kling endpoint on fal and its input field map."""

    model_id: str
    version: str
    tier: str
    endpoint: Endpoint
    image_fields: tuple[str, ...] = ()
    """Accepted names of the start frame (image-to-video); the first is the documented one."""
    tail_fields: tuple[str, ...] = ()
    """Accepted names of the optional end frame, on the versions that take one."""
    durations: tuple[str, ...] = DURATIONS
    """The ``duration`` strings this endpoint takes."""
    sound: bool = False
    """Takes ``generate_audio`` (v2.6 and v3: sound on by default, at a higher price)."""

    @property
    def fields(self) -> frozenset[str]:
        """Every input field this endpoint understands (others are ignored and recorded)."""
        extra = {"aspect_ratio"} if self.endpoint == T2V else set()
        if self.sound:
            extra.add("generate_audio")
        return _COMMON_FIELDS | set(self.image_fields) | set(self.tail_fields) | extra


# Kling versions on fal and the tiers/endpoints each exposes (names as fal spells them).
_CATALOGUE: dict[str, dict[str, tuple[Endpoint, ...]]] = {
    "v1": {"standard": (I2V, T2V)},  # v1 pro is no longer served
    "v1.5": {"pro": (I2V, T2V)},
    "v1.6": {"standard": (I2V, T2V), "pro": (I2V, T2V)},
    "v2": {"master": (I2V, T2V)},
    "v2.1": {"standard": (I2V,), "pro": (I2V,), "master": (I2V, T2V)},
    "v2.5-turbo": {"standard": (I2V,), "pro": (I2V, T2V)},
    "v2.6": {"pro": (I2V, T2V)},
    "v3": {"standard": (I2V, T2V), "pro": (I2V, T2V)},
}
# fal's model pages: v2.6 and v3 name the frames start_image_url / end_image_url (only), take
# generate_audio, and v3 takes 3 to 15 s.
_NEWER = frozenset({"v2.6", "v3"})
_NEWER_DURATIONS = {"v3": tuple(str(d) for d in range(3, 16))}
# providers.md: newer Kling endpoints name the start frame ``start_image_url``; accept it as an
# alternative to ``image_url`` from v2 on.
_START_IMAGE_ALIAS = frozenset({"v2", "v2.1", "v2.5-turbo"})
# providers.md: ``end_image_url`` / ``tail_image_url`` "on some versions": the pro image-to-video
# endpoints of v1.6 and later take either name here.
_TAIL_FRAME = frozenset({("v1.6", "pro"), ("v2.1", "pro"), ("v2.5-turbo", "pro")})


def _build_models() -> dict[str, ModelSpec]:
    models: dict[str, ModelSpec] = {}
    for version, tiers in _CATALOGUE.items():
        for tier, endpoints in tiers.items():
            for endpoint in endpoints:
                model_id = f"{APP_ID}/{version}/{tier}/{endpoint}"
                image: tuple[str, ...] = ()
                tail: tuple[str, ...] = ()
                newer = version in _NEWER
                if endpoint == I2V and newer:
                    image, tail = ("start_image_url",), ("end_image_url",)
                elif endpoint == I2V:
                    image = ("image_url", "start_image_url")
                    if version not in _START_IMAGE_ALIAS:
                        image = ("image_url",)
                    if (version, tier) in _TAIL_FRAME:
                        tail = ("tail_image_url", "end_image_url")
                durations = _NEWER_DURATIONS.get(version, DURATIONS)
                models[model_id] = ModelSpec(
                    model_id, version, tier, endpoint, image, tail, durations, newer
                )
    return models


MODELS: dict[str, ModelSpec] = _build_models()
"""model_id -> spec, e.g. ``fal-ai/kling-video/v2.1/standard/image-to-video``."""


@dataclass(frozen=True)
class Fault(fake_http.Fault):
    """A shared fault (``raw``, timeouts, drops, cut downloads) or a fal error reply."""

    kind: FaultKind
    detail: str | list[dict[str, Any]] = ""
    retryable: bool | None = None
    error_type: str | None = None

    @staticmethod
    def http(
        status: int,
        detail: str | list[dict[str, Any]] = "fake fal error",
        retryable: bool | None = None,
        retry_after: float | None = None,
        error_type: str | None = None,
    ) -> Fault:
        """Reply ``{"detail": detail}`` (request not processed).

        ``X-Fal-Retryable`` is sent when ``retryable`` is not None, ``Retry-After`` when
        ``retry_after`` is; ``error_type`` adds fal's request-error field and
        ``X-Fal-Error-Type`` header (e.g. ``runner_scheduling_failure`` on a 503).
        """
        return Fault(
            "http",
            http_status=status,
            detail=detail,
            retryable=retryable,
            retry_after=retry_after,
            error_type=error_type,
        )


def _error_item(loc: list[str | int], msg: str, type_: str, **extra: Any) -> dict[str, Any]:
    """One entry of fal's ``detail`` array (``loc``, ``msg``, ``type`` and ``url``, optional
    ``input``/``ctx`` in the style of fal's pydantic-based validation)."""
    item: dict[str, Any] = {"loc": loc, "msg": msg, "type": type_}
    item.update(extra)
    item["url"] = f"{ERRORS_DOC_URL}#{type_}"
    return item


_REQUEST_PATH = re.compile(
    r"/(?P<prefix>.+?)/requests/(?P<rid>[^/]+)(?P<tail>/status/stream|/status|/cancel)?"
)
_WORDS = ("rabbit", "tiger", "zebra", "koala", "panda", "lion", "elephant", "monkey")


class FakeFal(FakeBase[Fault]):
    """An in-memory fal queue API with the Kling models; ``handler`` serves ``httpx.Request``."""

    name = "fake-fal"
    routes = ROUTES

    def __init__(
        self,
        *,
        key: str = DEFAULT_KEY,
        clock: Callable[[], float] = time.time,
        polls_to_finish: int = 2,
        seconds_to_finish: float | None = None,
        concurrency_limit: int | None = None,
        video: bytes | None = None,
        queue_url: str = DEFAULT_QUEUE_URL,
        cdn_url: str = DEFAULT_CDN_URL,
        validation: Literal["result", "submit"] = "result",
        accept_data_uri: bool = True,
        retry_header: Literal["X-Fal-Retryable", "X-Fal-Needs-Retry"] = "X-Fal-Retryable",
        honour_cancel_in_progress: bool = True,
        models: Mapping[str, ModelSpec] | None = None,
        seed: int | None = None,
        max_recorded: int | None = None,
    ) -> None:
        """Configure the fake.

        ``polls_to_finish``: status polls until ``COMPLETED`` (first poll ``IN_QUEUE``, later
        ones ``IN_PROGRESS``). ``seconds_to_finish`` switches to clock time instead: ``IN_QUEUE``
        until the clock moves, then ``IN_PROGRESS``, ``COMPLETED`` after that many seconds
        (refreshed on status, result and cancel). ``concurrency_limit`` models fal's account
        limit on requests in progress: extra requests stay ``IN_QUEUE`` (never rejected).

        Choices where the contract allows two forms: ``validation`` says where invalid input
        shows (``"result"``: the request completes and its result is a 422, as providers.md
        puts it; ``"submit"``: 422 at submit); ``accept_data_uri=False`` rejects ``data:``
        image URIs; ``retry_header`` picks ``X-Fal-Retryable`` or the older
        ``X-Fal-Needs-Retry``; ``honour_cancel_in_progress=False`` lets an in-progress request
        run to completion after a cancel (fal only signals the runner).
        """
        if polls_to_finish < 1:
            raise ValueError("polls_to_finish must be >= 1")
        if concurrency_limit is not None and concurrency_limit < 1:
            raise ValueError("concurrency_limit must be >= 1")
        if retry_header not in RETRY_HEADERS:
            raise ValueError(f"retry_header must be one of {RETRY_HEADERS}")
        self._init_base(clock, video, cdn_url, seed, max_recorded)
        self.key = key
        self.polls_to_finish = polls_to_finish
        self.seconds_to_finish = seconds_to_finish
        self.concurrency_limit = concurrency_limit
        self.queue_url = queue_url.rstrip("/")
        self.validation = validation
        self.accept_data_uri = accept_data_uri
        self.retry_header = retry_header
        self.honour_cancel_in_progress = honour_cancel_in_progress
        self.models: dict[str, ModelSpec] = dict(models if models is not None else MODELS)

        self._queue = httpx.URL(self.queue_url)
        self._fail_next: list[dict[str, Any]] = []
        self._files: dict[str, str] = {}

        # Observations for tests (and ``requests``, ``log``, ``downloads`` from FakeBase).
        self.submits_accepted = 0
        """Submits that queued a request."""
        self.jobs: dict[str, dict[str, Any]] = {}
        """request_id -> record: ``model_id``, ``input`` (the body), ``ignored_fields``,
        ``input_errors``, ``status``, ``outcome`` (None/"ok"/"error"/"cancelled"), ``failure``,
        ``status_polls``, ``result_fetches``, ``webhook_url``, ``video_url``, times..."""
        self.in_progress_max = 0
        """Peak number of requests queued and not yet COMPLETED (IN_QUEUE or IN_PROGRESS)."""
        self.webhooks: list[tuple[str, dict[str, Any]]] = []
        """(fal_webhook URL, payload) fal would POST when a request with a webhook completes."""

    # ------------------------------------------------------------------ public controls

    def fail_next(
        self,
        detail: str = "content policy violation",
        status: int = 422,
        retryable: bool = False,
        *,
        error_type: str = "content_policy_violation",
        loc: tuple[str | int, ...] = ("body", "prompt"),
        times: int = 1,
    ) -> None:
        """Make the next ``times`` requests that would succeed end ``COMPLETED`` with a failed
        result: HTTP ``status``, ``{"detail": [{"loc", "msg": detail, "type": error_type}]}``
        and the retry header set to ``retryable``."""
        failure = self._failure(status, detail, retryable, error_type, loc)
        with self._lock:
            self._fail_next.extend(copy.deepcopy(failure) for _ in range(times))

    def fail_next_with(self, error_type: str, detail: str | None = None, *, times: int = 1) -> None:
        """Make the next ``times`` requests that would succeed end in the request error
        ``error_type`` (one of :data:`REQUEST_ERROR_TYPES`): the COMPLETED status carries
        ``error`` and ``error_type``, the result answers the flat error body and header."""
        status, text = REQUEST_ERROR_TYPES[error_type]
        failure = {
            "http_status": status,
            "body": {"detail": detail or text, "error_type": error_type},
            "retryable": None,
            "error_type": error_type,
        }
        with self._lock:
            self._fail_next.extend(copy.deepcopy(failure) for _ in range(times))

    def fail_request(
        self,
        request_id: str,
        detail: str = "content policy violation",
        status: int = 422,
        retryable: bool = False,
        *,
        error_type: str = "content_policy_violation",
        loc: tuple[str | int, ...] = ("body", "prompt"),
    ) -> None:
        """Make a queued or running request fail like :meth:`fail_next` when it completes."""
        with self._lock:
            job = self.jobs[request_id]
            if job["status"] == "COMPLETED":
                raise ValueError(f"request {request_id} already completed")
            job["failure"] = self._failure(status, detail, retryable, error_type, loc)

    def outstanding(self) -> int:
        """Number of requests currently IN_QUEUE or IN_PROGRESS."""
        with self._lock:
            return self._outstanding()

    def urls_for(self, request_id: str) -> dict[str, str]:
        """The four URLs a submit returned for ``request_id``."""
        with self._lock:
            return self._urls(request_id)

    def _error_reply(self, fault: Fault) -> tuple[httpx.Response, str] | None:
        if fault.kind != "http":
            return None
        payload: dict[str, Any] = {"detail": fault.detail}
        headers: dict[str, str] = {}
        if fault.error_type is not None:
            payload["error_type"] = fault.error_type
            headers["X-Fal-Error-Type"] = fault.error_type
        if fault.retryable is not None:
            headers[self.retry_header] = "true" if fault.retryable else "false"
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        response = httpx.Response(fault.http_status, json=payload, headers=headers)
        return response, f"{fault.http_status}"

    def _classify(self, request: httpx.Request) -> str:
        url = request.url
        if self._is_cdn(url):
            return "download"
        if same_origin(url, self._queue):
            match = _REQUEST_PATH.fullmatch(path_under(url, self._queue))
            if match is not None:
                tail = match.group("tail") or ""
                if tail == "/cancel":
                    return "cancel"
                return "status" if tail.startswith("/status") else "result"
            if request.method == "POST":
                return "submit"
        return "other"

    def _dispatch(self, request: httpx.Request, route: str) -> tuple[httpx.Response, str]:
        if route == "download":
            return self._download(request), ""
        if not same_origin(request.url, self._queue):
            raise self._no_such_host(request)
        denied = self._check_auth(request)
        if denied is not None:
            return _json(401, {"detail": denied}), ""
        path = path_under(request.url, self._queue)
        match = _REQUEST_PATH.fullmatch(path)
        if match is None:
            if request.method != "POST":
                status = 405 if path.strip("/") in self.models else 404
                return _json(
                    status, {"detail": "Not Found" if status == 404 else "Method Not Allowed"}
                ), ""
            return self._submit(request, path.strip("/"))
        prefix, rid, tail = match.group("prefix"), match.group("rid"), match.group("tail") or ""
        expected = {"": "GET", "/status": "GET", "/status/stream": "GET", "/cancel": "PUT"}[tail]
        if request.method != expected:
            return _json(405, {"detail": "Method Not Allowed"}), ""
        job = self.jobs.get(rid)
        note = ""
        if job is not None and prefix != job["app_id"]:
            note = f" (URL has {prefix!r}, not the app {job['app_id']!r}: hand-built URL?)"
            job = None
        if tail == "/cancel":
            return self._cancel(job), note
        if job is None:
            return _json(404, {"detail": f"Request {rid} not found"}), note
        if tail == "/status":
            return self._status(job, request), ""
        if tail == "/status/stream":
            return self._stream(job, request), ""
        return self._result(job), ""

    def _check_auth(self, request: httpx.Request) -> str | None:
        header = request.headers.get("authorization")
        if header is None or not header.strip():
            return "Missing authorization header: expected 'Authorization: Key <FAL_KEY>'"
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "key":
            return f"Invalid authorization scheme {scheme!r}: expected 'Key <FAL_KEY>'"
        if token.strip() != self.key:
            return "Invalid API key"
        return None

    def _urls(self, rid: str) -> dict[str, str]:
        base = f"{self.queue_url}/{APP_ID}/requests/{rid}"
        return {
            "status_url": f"{base}/status",
            "response_url": base,
            "cancel_url": f"{base}/cancel",
        }

    def _now_iso(self) -> str:
        return dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc).isoformat()

    def _failure(
        self,
        status: int,
        detail: str,
        retryable: bool | None,
        error_type: str,
        loc: tuple[str | int, ...],
    ) -> dict[str, Any]:
        return {
            "http_status": status,
            "body": {"detail": [_error_item(list(loc), detail, error_type)]},
            "retryable": retryable,
        }

    # ------------------------------------------------------------------ submit

    def _submit(self, request: httpx.Request, model_id: str) -> tuple[httpx.Response, str]:
        spec = self.models.get(model_id)
        if spec is None:
            return _json(404, {"detail": f"Application not found: {model_id!r}"}), ""
        try:
            body = json.loads(request.content)
        except (ValueError, UnicodeDecodeError):
            item = _error_item(["body"], "Request body is not valid JSON", "json_invalid")
            return _json(422, {"detail": [item]}), ""
        if not isinstance(body, dict):
            item = _error_item(["body"], "Input should be an object", "model_attributes_type")
            return _json(422, {"detail": [item]}), ""
        errors = validate_input(spec, body, accept_data_uri=self.accept_data_uri)
        if errors and self.validation == "submit":
            return _json(422, {"detail": errors}, {self.retry_header: "false"}), ""

        self._seq += 1
        rid = self._random_uuid()
        now = self.clock()
        failure: dict[str, Any] | None = None
        if errors:
            failure = {"http_status": 422, "body": {"detail": errors}, "retryable": False}
        elif self._fail_next:
            failure = self._fail_next.pop(0)
        job: dict[str, Any] = {
            "request_id": rid,
            "model_id": model_id,
            "app_id": APP_ID,
            "version": spec.version,
            "tier": spec.tier,
            "endpoint": spec.endpoint,
            "input": body,
            "ignored_fields": sorted(k for k in body if k not in spec.fields),
            "input_errors": errors,
            "status": "IN_QUEUE",
            "outcome": None,
            "failure": failure,
            "polls": 0,
            "status_polls": 0,
            "result_fetches": 0,
            "seq": self._seq,
            "created_s": now,
            "started_s": None,
            "completed_s": None,
            "blocked": False,
            "cancel_requested": False,
            "webhook_url": request.url.params.get("fal_webhook"),
            "video_url": None,
            "logs": [],
        }
        self.jobs[rid] = job
        self.submits_accepted += 1
        self.in_progress_max = max(self.in_progress_max, self._outstanding())
        reply = {"request_id": rid, **self._urls(rid)}
        return _json(200, reply, {"X-Fal-Request-Id": rid}), ""

    # ------------------------------------------------------------------ lifecycle

    def _outstanding(self) -> int:
        return sum(1 for job in self.jobs.values() if job["status"] != "COMPLETED")

    def _slot_free(self) -> bool:
        if self.concurrency_limit is None:
            return True
        running = sum(1 for job in self.jobs.values() if job["status"] == "IN_PROGRESS")
        return running < self.concurrency_limit

    def _advance(self, job: dict[str, Any], *, poll: bool) -> None:
        """Move a request along: one status poll (``poll=True``) or a clock refresh."""
        if job["status"] == "COMPLETED":
            return
        target: QueueStatus
        if self.seconds_to_finish is None:
            if not poll:
                return
            nxt = job["polls"] + 1
            if nxt >= self.polls_to_finish:
                target = "COMPLETED"
            else:
                target = "IN_QUEUE" if nxt == 1 else "IN_PROGRESS"
            if job["status"] == "IN_QUEUE" and target != "IN_QUEUE" and not self._slot_free():
                job["blocked"] = True
                return
            job["polls"] = nxt
        else:
            now = self.clock()
            if job["status"] == "IN_QUEUE":
                if now <= job["created_s"]:
                    return
                if not self._slot_free():
                    job["blocked"] = True
                    return
                job["started_s"] = now if job["blocked"] else job["created_s"]
            done = now - job["started_s"] >= self.seconds_to_finish
            target = "COMPLETED" if done else "IN_PROGRESS"
        if target != "IN_QUEUE" and job["started_s"] is None:
            job["started_s"] = self.clock()
        if target == "IN_PROGRESS" and job["status"] == "IN_QUEUE":
            job["status"] = "IN_PROGRESS"
            self._add_log(job, f"Generating video with {job['model_id']}")
        elif target == "COMPLETED":
            self._complete(job)

    def _add_log(self, job: dict[str, Any], message: str, level: str = "INFO") -> None:
        job["logs"].append(
            {"message": message, "level": level, "source": "user", "timestamp": self._now_iso()}
        )

    def _complete(self, job: dict[str, Any], *, cancelled: bool = False) -> None:
        job["status"] = "COMPLETED"
        job["completed_s"] = self.clock()
        rid = job["request_id"]
        webhook: dict[str, Any] = {"request_id": rid, "gateway_request_id": rid}
        if cancelled:
            job["outcome"] = "cancelled"
            self._add_log(job, "Request cancelled", "WARN")
            webhook.update(status="ERROR", error="Request cancelled", payload=None)
        elif job["failure"] is not None:
            job["outcome"] = "error"
            self._add_log(job, "Request failed", "ERROR")
            webhook.update(
                status="ERROR",
                error=f"Invalid status code: {job['failure']['http_status']}",
                payload=copy.deepcopy(job["failure"]["body"]),
            )
        else:
            job["outcome"] = "ok"
            word = _WORDS[self._rng.randrange(len(_WORDS))]
            token = f"{self._rng.getrandbits(96):024x}"
            path = f"/files/{word}/{token}_output.mp4"
            self._files[path] = rid
            job["video_url"] = f"{self.cdn_url}{path}"
            self._add_log(job, "Video generated")
            webhook.update(status="OK", payload=self._video_payload(job))
        if job["webhook_url"]:
            self.webhooks.append((job["webhook_url"], webhook))

    def _video_payload(self, job: dict[str, Any]) -> dict[str, Any]:
        return {
            "video": {
                "url": job["video_url"],
                "content_type": "video/mp4",
                "file_name": "output.mp4",
                "file_size": len(self.video),
            }
        }

    # ------------------------------------------------------------------ status / result

    def _status_payload(self, job: dict[str, Any], with_logs: bool) -> dict[str, Any]:
        status: QueueStatus = job["status"]
        payload: dict[str, Any] = {
            "status": status,
            "request_id": job["request_id"],
            **self._urls(job["request_id"]),
        }
        if status == "IN_QUEUE":
            payload["queue_position"] = sum(
                1
                for other in self.jobs.values()
                if other["status"] == "IN_QUEUE" and other["seq"] < job["seq"]
            )
        payload["logs"] = copy.deepcopy(job["logs"]) if with_logs else None
        failure = job["failure"]
        if status == "COMPLETED" and job["outcome"] == "error" and failure.get("error_type"):
            payload["error"] = failure["body"]["detail"]
            payload["error_type"] = failure["error_type"]
        if status == "COMPLETED":
            started = job["started_s"] if job["started_s"] is not None else job["created_s"]
            payload["metrics"] = {"inference_time": round(job["completed_s"] - started, 3)}
        return payload

    def _status(self, job: dict[str, Any], request: httpx.Request) -> httpx.Response:
        job["status_polls"] += 1
        self._advance(job, poll=True)
        with_logs = _truthy(request.url.params.get("logs"))
        return _json(
            200, self._status_payload(job, with_logs), {"X-Fal-Request-Id": job["request_id"]}
        )

    def _stream(self, job: dict[str, Any], request: httpx.Request) -> httpx.Response:
        """Server-sent status events (providers.md: *verify*): one event per internal poll
        until COMPLETED. The fake cannot wait, so it stops early when the request is held by
        the concurrency limit or runs on clock time."""
        with_logs = _truthy(request.url.params.get("logs"))
        events: list[str] = []
        for _ in range(self.polls_to_finish + 1):
            job["status_polls"] += 1
            self._advance(job, poll=True)
            events.append(f"data: {json.dumps(self._status_payload(job, with_logs))}\n\n")
            if job["status"] == "COMPLETED" or job["blocked"] or self.seconds_to_finish is not None:
                break
        return httpx.Response(
            200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Fal-Request-Id": job["request_id"],
            },
            content="".join(events).encode(),
        )

    def _result(self, job: dict[str, Any]) -> httpx.Response:
        job["result_fetches"] += 1
        self._advance(job, poll=False)
        rid_header = {"X-Fal-Request-Id": job["request_id"]}
        if job["status"] != "COMPLETED":
            return _json(400, {"detail": "Request is still in progress"}, rid_header)
        if job["outcome"] == "ok":
            return _json(200, self._video_payload(job), rid_header)
        if job["outcome"] == "cancelled":
            headers = {
                **rid_header,
                "X-Fal-Error-Type": "client_cancelled",
                self.retry_header: "false",
            }
            body = {"detail": "Request was cancelled", "error_type": "client_cancelled"}
            return _json(CANCELLED_STATUS, body, headers)
        failure = job["failure"]
        headers = dict(rid_header)
        if failure.get("error_type"):
            headers["X-Fal-Error-Type"] = failure["error_type"]
        if failure["retryable"] is not None:
            headers[self.retry_header] = "true" if failure["retryable"] else "false"
        return _json(failure["http_status"], copy.deepcopy(failure["body"]), headers)

    def _cancel(self, job: dict[str, Any] | None) -> httpx.Response:
        if job is None:
            return _json(404, {"status": "NOT_FOUND"})
        self._advance(job, poll=False)
        if job["status"] == "COMPLETED":
            return _json(400, {"status": "ALREADY_COMPLETED"})
        job["cancel_requested"] = True
        if job["status"] == "IN_QUEUE" or self.honour_cancel_in_progress:
            self._complete(job, cancelled=True)
        return _json(202, {"status": "CANCELLATION_REQUESTED"})

    # ------------------------------------------------------------------ CDN

    def _refuse_video(self, request: httpx.Request) -> httpx.Response | None:
        if self._cdn_path(request.url) not in self._files:
            return text_reply(404, "File not found")
        return None


# ---------------------------------------------------------------------- input validation


def validate_input(
    spec: ModelSpec, body: Mapping[str, Any], *, accept_data_uri: bool = True
) -> list[dict[str, Any]]:
    """Check a Kling input body against ``spec``'s field map; return fal ``detail`` items."""
    errors: list[dict[str, Any]] = []
    for name in ("prompt", "negative_prompt"):
        if name not in body:
            if name == "prompt":
                errors.append(_error_item(["body", name], "Field required", "missing"))
            continue
        value = body[name]
        if not isinstance(value, str):
            errors.append(
                _error_item(["body", name], "Input should be a valid string", "string_type")
            )
        elif len(value) > MAX_PROMPT_CHARS:
            errors.append(
                _error_item(
                    ["body", name],
                    f"String should have at most {MAX_PROMPT_CHARS} characters",
                    "string_too_long",
                    ctx={"max_length": MAX_PROMPT_CHARS},
                )
            )
    duration = body.get("duration", "5")
    if not (isinstance(duration, str) and duration in spec.durations):  # the int 5 is rejected
        errors.append(
            _error_item(
                ["body", "duration"],
                "Input should be '5' or '10'",
                "enum",
                input=duration,
                ctx={"expected": "'5' or '10'"},
            )
        )
    if "cfg_scale" in body:
        cfg = body["cfg_scale"]
        loc: list[str | int] = ["body", "cfg_scale"]
        if not isinstance(cfg, (int, float)) or isinstance(cfg, bool):
            errors.append(_error_item(loc, "Input should be a valid number", "float_type"))
        elif cfg < 0:
            errors.append(
                _error_item(loc, "Input should be greater than or equal to 0", "greater_than_equal")
            )
        elif cfg > 1:
            errors.append(
                _error_item(loc, "Input should be less than or equal to 1", "less_than_equal")
            )
    if spec.endpoint == I2V:
        present = [name for name in spec.image_fields if name in body]
        if not present:
            errors.append(_error_item(["body", spec.image_fields[0]], "Field required", "missing"))
        for name in present + [name for name in spec.tail_fields if name in body]:
            problem = check_image_url(body[name], accept_data_uri=accept_data_uri)
            if problem is not None:
                errors.append(_error_item(["body", name], problem[1], problem[0]))
    elif "aspect_ratio" in body and body["aspect_ratio"] not in ASPECT_RATIOS:
        errors.append(
            _error_item(
                ["body", "aspect_ratio"],
                "Input should be '16:9', '9:16' or '1:1'",
                "enum",
                input=body["aspect_ratio"],
            )
        )
    return errors


_DATA_URI = re.compile(r"data:(?P<mime>[^;,]+)(?P<params>(?:;[^;,]+)*?);base64,(?P<data>.*)", re.S)


def check_image_url(value: object, *, accept_data_uri: bool = True) -> tuple[str, str] | None:
    """Return ``(type, msg)`` if ``value`` is not an http(s) URL or a ``data:image/...;base64,``
    URI holding a readable image; ``None`` when it is acceptable."""
    if not isinstance(value, str) or not value:
        return "string_type", "Input should be a non-empty string (an image URL)"
    lowered = value[:8].lower()
    if lowered.startswith(("http://", "https://")):
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL:
            return "url_parsing", "Input should be a valid URL"
        return None if url.host else ("url_parsing", "Input should be a valid URL")
    if lowered.startswith("data:"):
        if not accept_data_uri:
            return "url_scheme", "data URIs are not accepted here; upload the file first"
        match = _DATA_URI.fullmatch(value)
        if match is None or not match.group("mime").lower().startswith("image/"):
            return "image_load_error", "Expected a 'data:image/...;base64,' URI"
        try:
            raw = base64.b64decode(match.group("data"), validate=True)
        except (binascii.Error, ValueError):
            return "image_load_error", "The data URI is not valid base64"
        if fake_http.read_image(raw, verify=True) is None:
            return "image_load_error", "The data URI does not hold a readable image"
        return None
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", value):
        return "url_scheme", "URL scheme should be 'http' or 'https'"
    return "url_parsing", "Input should be a valid URL, relative URL without a base"


# ---------------------------------------------------------------------- webhook signatures

JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
WEBHOOK_USER_ID = "fake-fal-user-0000"


def webhook_key(seed: int = 7) -> Ed25519PrivateKey:
    """A fixed, obviously fake ED25519 key pair standing in for fal's webhook key."""
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def jwks(*keys: Ed25519PrivateKey) -> dict[str, Any]:
    """A JWKS document publishing the public halves of ``keys`` (as fal's does: OKP, Ed25519,
    ``x`` in unpadded base64url)."""
    entries = []
    for n, key in enumerate(keys):
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        entries.append({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": f"fake-{n}", "use": "sig"})
    return {"keys": entries}


def sign_webhook(
    key: Ed25519PrivateKey,
    body: bytes,
    *,
    request_id: str,
    timestamp: int,
    user_id: str = WEBHOOK_USER_ID,
) -> dict[str, str]:
    """The headers fal puts on a webhook delivery of ``body``: an ED25519 signature (hex) over
    request id, user id, timestamp and the body's hex SHA-256, one per line."""
    digest = hashlib.sha256(body).hexdigest()
    signed = "\n".join((request_id, user_id, str(timestamp), digest)).encode()
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": str(timestamp),
        "X-Fal-Webhook-Signature": key.sign(signed).hex(),
    }


# ---------------------------------------------------------------------- small helpers


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=payload, headers=dict(headers or {}))


def _truthy(raw: str | None) -> bool:
    return raw is not None and raw.strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------- fault specs (CLI)


def parse_fault_spec(spec: str) -> list[tuple[Route, Fault, int]]:
    """Parse ``ROUTE:KIND[:ARG...][*N]`` items separated by commas.

    Routes: submit, status, result, cancel, download, any. Kinds:
    ``http:STATUS[:RETRYABLE[:RETRY_AFTER]]`` (RETRYABLE true/false/-), ``raw:STATUS``,
    ``timeout_before``, ``timeout_after``, ``drop_after``, ``cut:BYTES``. Example:
    ``submit:http:429:true:2*3,download:cut:1000,status:raw:502``.
    """

    def http(kind: str, args: list[str], item: str) -> Fault | None:
        if kind != "http" or not 1 <= len(args) <= 3:
            return None
        flags = {"true": True, "false": False, "-": None}
        if len(args) >= 2 and args[1] not in flags:
            raise ValueError(f"bad RETRYABLE in {item!r}")
        retryable = flags[args[1]] if len(args) >= 2 else None
        retry = float(args[2]) if len(args) == 3 else None
        return Fault.http(int(args[0]), retryable=retryable, retry_after=retry)

    items = fake_http.parse_fault_items(spec, ROUTES, Fault, http)
    return [(cast(Route, route), fault, times) for route, fault, times in items]


# ---------------------------------------------------------------------- real server mode


def serve(port: int = 8766, **options: Any) -> Server:
    """Bind a ThreadingHTTPServer on 127.0.0.1 (port 0 = any) serving a fresh FakeFal.

    ``options`` as for :func:`tests.fake_http.serve_fake` (``fake_kwargs``, ``faults``,
    ``hang_seconds``, ``quiet``). The queue is the server's own origin and result videos live
    under ``/cdn`` on it, unless ``fake_kwargs`` says otherwise. Call ``serve_forever()`` on
    the result (and ``shutdown()``/``server_close()`` to stop).
    """
    return fake_http.serve_fake(port, FakeFal, ("queue_url", "cdn_url"), **options)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: run the fake as a local HTTP server until Ctrl-C."""
    parser = fake_http.server_parser(
        "Fake fal queue API (Kling models) server.", 8766, None, parse_fault_spec.__doc__ or ""
    )
    parser.add_argument("--key", default=DEFAULT_KEY, help="the accepted FAL_KEY")
    parser.add_argument("--validation", choices=("result", "submit"), default="result")
    parser.add_argument("--retry-header", choices=RETRY_HEADERS, default=RETRY_HEADERS[0])
    parser.add_argument("--no-data-uri", action="store_true", help="reject data: image URIs")
    args = parser.parse_args(argv)

    options = fake_http.server_options(
        args,
        parse_fault_spec,
        key=args.key,
        validation=args.validation,
        retry_header=args.retry_header,
        accept_data_uri=not args.no_data_uri,
    )
    server = serve(args.port, **options)
    print(f"fake fal queue API on {server.origin} (videos under {server.fake.cdn_url})")
    print(f"  queue URL: {server.fake.queue_url}")
    print(f"  FAL_KEY={args.key}")
    print(f"  e.g. POST {server.fake.queue_url}/{APP_ID}/v2.1/standard/image-to-video")
    return fake_http.run_until_interrupted(server)


if __name__ == "__main__":
    raise SystemExit(main())
