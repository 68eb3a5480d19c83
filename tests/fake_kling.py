"""A fake Kling AI video API, written from ``/work/shared/kling-api.md`` only.

It encodes the documented contract, not any client's assumptions, and imports nothing from
``reelgen`` or ``reelgen_kling``. Two ways to use it:

* in tests, as ``httpx.MockTransport(FakeKling().handler)`` for sync and async clients (and to
  record vcrpy cassettes through it);
* as a real local server for manual end-to-end checks and benchmarks::

      python tests/fake_kling.py --port 8765 --polls 3 --concurrency 4

Behaviour in brief:

* JWT auth (HS256, ``iss`` = access key, ``exp``/``nbf`` checked against the injected clock with
  no leeway) or a single API key; error codes 1000-1004 as in the doc.
* ``POST /v1/videos/{image2video,text2video}`` validates the body as the doc describes and
  replies with the envelope ``{"code", "message", "request_id", "data"}``; 1201 names the field.
* A task is ``submitted`` on create, ``processing`` on its first query and ``succeed`` on the
  ``polls_to_finish``-th query (or after ``seconds_to_finish`` of clock time).
* Result URLs point at ``cdn_url``: signed, expiring after 30 days, no auth, Range supported.
* Faults are queued with :meth:`FakeKling.inject` and consumed in order.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard, cast

import httpx

if not __package__:  # run as ``python tests/<this file>``: put the repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import fake_http
from tests.fake_http import FakeBase, Server, path_under, same_origin, text_reply, tiny_mp4

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_BASE_URL",
    "DEFAULT_CDN_URL",
    "DEFAULT_SECRET_KEY",
    "MODELS",
    "FakeKling",
    "Fault",
    "TaskRecord",
    "main",
    "parse_fault_spec",
    "serve",
    "tiny_mp4",
]

DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
DEFAULT_CDN_URL = "https://cdn.fake-kling.test"
DEFAULT_ACCESS_KEY = "ak-fake-test"
# 32 bytes: PyJWT >= 2.10 emits InsecureKeyLengthWarning for shorter HMAC keys, which the
# project's ``filterwarnings = ["error"]`` turns into a failure in every client test.
DEFAULT_SECRET_KEY = "sk-fake-test-padded-to-32-bytes!"

KINDS = ("image2video", "text2video")
MODELS = (
    "kling-v1",
    "kling-v1-5",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    "kling-v3",
)
I2V_ONLY_MODELS = frozenset({"kling-v1-5", "kling-v2-1"})
SOUND_MODELS = frozenset({"kling-v2-6", "kling-v3"})
MODES = ("std", "pro")
DURATIONS = ("5", "10")
V3_DURATIONS = tuple(str(s) for s in range(3, 16))
T2V_ASPECT_RATIOS = ("16:9", "9:16", "1:1")
CAMERA_SIMPLE_KEYS = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")
CAMERA_PRESETS = ("down_back", "forward_up", "right_turn_forward", "left_turn_forward")
MAX_PROMPT_CHARS = 2500
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MIN_IMAGE_SIDE = 300
MAX_IMAGE_RATIO = 2.5
URL_TTL_SECONDS = 30 * 24 * 3600
NBF_MARGIN_SECONDS = 5.0
UNIT_USD = 0.14
# USD per second of silent video, from the doc's "Limits and cost" section: {model: (std, pro)}.
PRICE_PER_SECOND: dict[str, tuple[float, float]] = {
    "kling-v1": (0.028, 0.098),
    "kling-v1-5": (0.056, 0.098),
    "kling-v1-6": (0.056, 0.098),
    "kling-v2-1": (0.056, 0.098),
    "kling-v2-master": (0.28, 0.28),
    "kling-v2-1-master": (0.28, 0.28),
    "kling-v2-5-turbo": (0.042, 0.07),
    "kling-v2-6": (0.042, 0.07),
    "kling-v3": (0.084, 0.112),
}
# USD per second with sound on, {(model, mode): price}: v2-6 pro from the doc ("$0.14"); v3 from
# "Updates to check" as verified for reelgen (1.5x silent, std and pro; not in kling-api.md).
SOUND_PRICE_PER_SECOND: dict[tuple[str, str], float] = {
    ("kling-v2-6", "pro"): 0.14,
    ("kling-v3", "std"): 0.126,
    ("kling-v3", "pro"): 0.168,
}
SOUND_NEEDS_PRO = frozenset({"kling-v2-6"})  # "requires mode pro" on those models
# Motion brush ("older models"): kling-v1 and kling-v1-5 take static_mask/dynamic_masks.
MOTION_BRUSH_MODELS = frozenset({"kling-v1", "kling-v1-5"})
MAX_DYNAMIC_MASKS = 6
TRAJECTORY_POINTS = (2, 77)
MASK_ASPECT_TOLERANCE = 0.01

_COMMON_FIELDS = frozenset(
    {
        "model_name",
        "prompt",
        "negative_prompt",
        "cfg_scale",
        "mode",
        "duration",
        "camera_control",
        "callback_url",
        "external_task_id",
        "watermark_info",
        "sound",
    }
)
_IMAGE_FIELDS = frozenset({"image", "image_tail", "static_mask", "dynamic_masks"})
DOCUMENTED_FIELDS: dict[str, frozenset[str]] = {
    "image2video": _COMMON_FIELDS | _IMAGE_FIELDS,
    "text2video": _COMMON_FIELDS | {"aspect_ratio"},
}

Route = Literal["create", "query", "download", "any"]
FaultKind = Literal["business", fake_http.SharedFaultKind]
TaskStatus = Literal["submitted", "processing", "succeed", "failed"]
_RUNNING = ("submitted", "processing")
_TERMINAL = ("succeed", "failed")


@dataclass(frozen=True)
class Fault(fake_http.Fault):
    """A shared fault (``raw``, timeouts, drops, cut downloads) or a Kling error envelope."""

    kind: FaultKind
    code: int = 0
    message: str = ""

    @staticmethod
    def business(
        code: int, http_status: int, message: str = "", retry_after: float | None = None
    ) -> Fault:
        """Reply with an error envelope (``data: null``), optionally with ``Retry-After``."""
        return Fault(
            "business",
            http_status=http_status,
            code=code,
            message=message or f"fake error {code}",
            retry_after=retry_after,
        )


class _ApiError(Exception):
    """An error reply inside the fake: HTTP status, business code, message."""

    def __init__(self, http_status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message


def _param_error(message: str) -> _ApiError:
    return _ApiError(400, 1201, message)


@dataclass
class TaskRecord:
    """What the fake knows about a task beyond the served object (for test assertions)."""

    task_id: str
    kind: str
    model_name: str
    """The effective model (``kling-v1`` when the body had no ``model_name``)."""
    mode: str
    duration: str
    body: dict[str, Any]
    ignored_fields: list[str]
    """Body fields the doc does not define for this endpoint (silently ignored, e.g. ``model``)."""
    external_task_id: str | None
    callback_url: str | None
    created_s: float
    seq: int
    polls: int = 0
    fail_msg: str | None = None
    video_paths: list[str] = field(default_factory=list)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _b64url_decode(segment: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _format_units(units: float) -> str:
    return f"{units:.2f}".rstrip("0").rstrip(".")


def units_for(model: str, mode: str, duration: str, sound: bool = False) -> str:
    """Units charged for a finished task, derived from the doc's per-second USD prices."""
    std, pro = PRICE_PER_SECOND[model]
    per_second = pro if mode == "pro" else std
    if sound:
        per_second = SOUND_PRICE_PER_SECOND.get((model, mode), per_second)
    return _format_units(per_second * float(duration) / UNIT_USD)


class FakeKling(FakeBase[Fault]):
    """An in-memory Kling API; ``handler`` serves ``httpx.Request`` objects."""

    name = "fake-kling"
    routes = ("create", "query", "download", "any")
    cdn_method_text = "method not allowed"

    def __init__(
        self,
        *,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        api_key: str | None = None,
        clock: Callable[[], float] = time.time,
        polls_to_finish: int = 2,
        seconds_to_finish: float | None = None,
        concurrency_limit: int = 5,
        token_ttl: float | None = None,
        video: bytes | None = None,
        base_url: str = DEFAULT_BASE_URL,
        cdn_url: str = DEFAULT_CDN_URL,
        pending_result: Literal["empty", "null"] = "empty",
        external_lookup: Literal["object", "list", "ignored"] = "object",
        report_units: bool = True,
        seed: int | None = None,
        max_recorded: int | None = None,
    ) -> None:
        """Configure the fake.

        ``pending_result`` picks the doc's two shapes of ``task_result`` before completion
        (``{}`` or ``null``); ``external_lookup`` picks how ``?external_task_id=`` answers
        (the doc marks it uncertain): a single object (404/1203 if unknown), a filtered array,
        or ignored (the plain list). ``report_units=False`` omits ``final_unit_deduction``
        (older accounts). ``seed`` makes ids deterministic; ``max_recorded`` bounds
        ``requests``/``log`` for long-running servers.
        """
        if polls_to_finish < 1:
            raise ValueError("polls_to_finish must be >= 1")
        if concurrency_limit < 1:
            raise ValueError("concurrency_limit must be >= 1")
        self._init_base(clock, video, cdn_url, seed, max_recorded)
        self.access_key = access_key
        self.secret_key = secret_key
        self.api_key = api_key
        self.polls_to_finish = polls_to_finish
        self.seconds_to_finish = seconds_to_finish
        self.concurrency_limit = concurrency_limit
        self.token_ttl = token_ttl
        self.base_url = base_url.rstrip("/")
        self.pending_result = pending_result
        self.external_lookup = external_lookup
        self.report_units = report_units

        self._base = httpx.URL(self.base_url)
        self._fail_next: list[str] = []
        self._cdn_secret = self._rng.getrandbits(128).to_bytes(16, "big")

        # Observations for tests (and ``requests``, ``log``, ``downloads`` from FakeBase).
        self.creates_accepted = 0
        """Creates that produced a task."""
        self.tasks: dict[str, dict[str, Any]] = {}
        """task_id -> the full task object as a query serves it."""
        self.records: dict[str, TaskRecord] = {}
        """task_id -> what the fake knows about the task (effective model, raw body...)."""
        self.max_running_seen = 0
        """Peak number of tasks submitted or processing at once."""
        self.callbacks: list[tuple[str, dict[str, Any]]] = []
        """(callback_url, task object) Kling would POST on each status change."""

    # ------------------------------------------------------------------ public controls

    def fail_task(self, task_id_or_external: str, msg: str) -> None:
        """Make a running task end ``failed`` with ``msg`` when it would otherwise succeed."""
        with self._lock:
            rec = self._find(task_id_or_external)
            if rec is None:
                raise KeyError(task_id_or_external)
            if self.tasks[rec.task_id]["task_status"] in _TERMINAL:
                raise ValueError(f"task {rec.task_id} already finished")
            rec.fail_msg = msg

    def fail_next(self, msg: str, times: int = 1) -> None:
        """Make the next ``times`` created tasks end ``failed`` with ``msg``."""
        with self._lock:
            self._fail_next.extend([msg] * times)

    def running(self) -> int:
        """Number of tasks currently submitted or processing."""
        with self._lock:
            return self._running()

    def task_for_external(self, external_task_id: str) -> dict[str, Any] | None:
        """The served task object with this ``external_task_id``, if any."""
        with self._lock:
            rec = self._find(external_task_id)
            return None if rec is None else copy.deepcopy(self.tasks[rec.task_id])

    def _is_api(self, url: httpx.URL) -> bool:
        return same_origin(url, self._base)

    def _classify(self, request: httpx.Request) -> str:
        url = request.url
        if self._is_cdn(url):
            return "download"
        if self._is_api(url):
            path = path_under(url, self._base)
            if request.method == "POST" and path in (
                "/v1/videos/image2video",
                "/v1/videos/text2video",
            ):
                return "create"
            if request.method == "GET" and path.startswith("/v1/videos/"):
                return "query"
        return "other"

    def _request_id(self) -> str:
        return self._random_uuid()

    def _envelope(
        self,
        http_status: int,
        code: int,
        message: str,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        payload = {"code": code, "message": message, "request_id": self._request_id(), "data": data}
        return httpx.Response(http_status, json=payload, headers=headers)

    def _ok(self, data: Any) -> httpx.Response:
        return self._envelope(200, 0, "SUCCEED", data)

    def _error_reply(self, fault: Fault) -> tuple[httpx.Response, str] | None:
        if fault.kind != "business":
            return None
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        response = self._envelope(fault.http_status, fault.code, fault.message, None, headers)
        return response, f"{response.status_code} code={fault.code}"

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _dispatch(self, request: httpx.Request, route: str) -> tuple[httpx.Response, str]:
        if route == "download":
            return self._download(request), ""
        if not self._is_api(request.url):
            raise self._no_such_host(request)
        try:
            self._check_auth(request)
            return self._api(request), ""
        except _ApiError as err:
            return self._envelope(err.http_status, err.code, err.message), ""

    # ------------------------------------------------------------------ auth

    def _check_auth(self, request: httpx.Request) -> None:
        header = request.headers.get("authorization")
        if header is None or not header.strip():
            raise _ApiError(401, 1001, "Authorization header is empty")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            raise _ApiError(401, 1002, "Authorization header is invalid: expected 'Bearer <token>'")
        if not token:
            raise _ApiError(401, 1001, "Authorization header is empty")
        if self.api_key is not None and hmac.compare_digest(token, self.api_key):
            return
        parts = token.split(".")
        if len(parts) != 3:
            if self.api_key is not None:
                raise _ApiError(401, 1000, "Authorization failed: unknown API key")
            raise _ApiError(401, 1002, "Authorization header is invalid: not a JWT")
        try:
            jwt_header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise _ApiError(401, 1002, "Authorization header is invalid: malformed JWT") from None
        if not isinstance(jwt_header, dict) or not isinstance(claims, dict):
            raise _ApiError(401, 1002, "Authorization header is invalid: malformed JWT")
        if jwt_header.get("alg") != "HS256":
            raise _ApiError(401, 1000, "Authorization failed: JWT alg must be HS256")
        expected = hmac.new(
            self.secret_key.encode(), f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(expected, signature):
            raise _ApiError(401, 1000, "Authorization failed: signature does not match")
        if claims.get("iss") != self.access_key:
            raise _ApiError(401, 1000, "Authorization failed: unknown access key (iss)")
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not _is_number(exp) or not _is_number(nbf):
            raise _ApiError(401, 1002, "Authorization header is invalid: exp and nbf required")
        now = self.clock()
        if nbf > now:
            raise _ApiError(401, 1003, "Authorization token is not yet valid (nbf)")
        if exp <= now:
            raise _ApiError(401, 1004, "Authorization token has expired")
        if self.token_ttl is not None and now - (nbf + NBF_MARGIN_SECONDS) > self.token_ttl:
            raise _ApiError(401, 1004, "Authorization token has expired")

    # ------------------------------------------------------------------ API routes

    def _api(self, request: httpx.Request) -> httpx.Response:
        path = path_under(request.url, self._base)
        match = re.fullmatch(r"/v1/videos/([^/]+)(?:/([^/]+))?", path)
        if match is None or match.group(1) not in KINDS:
            raise _ApiError(404, 1203, f"resource not found: {path}")
        kind, task_id = match.group(1), match.group(2)
        if task_id is None:
            if request.method == "POST":
                return self._create(kind, request)
            if request.method == "GET":
                return self._list_or_lookup(kind, request)
            raise _ApiError(404, 1202, f"method {request.method} not allowed on {path}")
        if request.method != "GET":
            raise _ApiError(404, 1202, f"method {request.method} not allowed on {path}")
        rec = self.records.get(task_id)
        if rec is None or rec.kind != kind:
            raise _ApiError(404, 1203, f"task not found: {task_id}")
        return self._ok(self._observe(rec))

    def _list_or_lookup(self, kind: str, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        external = params.get("external_task_id")
        if external is not None and self.external_lookup != "ignored":
            rec = self._find_external(external)
            if rec is not None and rec.kind != kind:
                rec = None
            if self.external_lookup == "list":
                return self._ok([] if rec is None else [self._observe(rec)])
            if rec is None:
                raise _ApiError(404, 1203, f"task not found: external_task_id={external}")
            return self._ok(self._observe(rec))
        page_num = _int_param(params.get("pageNum"), "pageNum", 1, 1, 1000)
        page_size = _int_param(params.get("pageSize"), "pageSize", 30, 1, 500)
        recs = sorted(
            (r for r in self.records.values() if r.kind == kind),
            key=lambda r: (r.created_s, r.seq),
            reverse=True,
        )
        start = (page_num - 1) * page_size
        data = []
        for rec in recs[start : start + page_size]:
            self._refresh(rec)
            data.append(self._served(rec))
        return self._ok(data)

    def _observe(self, rec: TaskRecord) -> dict[str, Any]:
        """A query of one task (by task_id or external id): advances it, returns the object."""
        rec.polls += 1
        self._refresh(rec)
        return self._served(rec)

    def _served(self, rec: TaskRecord) -> dict[str, Any]:
        return copy.deepcopy(self.tasks[rec.task_id])

    def _find_external(self, external: str) -> TaskRecord | None:
        for rec in self.records.values():
            if rec.external_task_id == external:
                return rec
        return None

    def _find(self, ident: str) -> TaskRecord | None:
        return self.records.get(ident) or self._find_external(ident)

    def _running(self) -> int:
        count = 0
        for rec in self.records.values():
            self._refresh(rec)
            if self.tasks[rec.task_id]["task_status"] in _RUNNING:
                count += 1
        return count

    # ------------------------------------------------------------------ task lifecycle

    def _refresh(self, rec: TaskRecord) -> None:
        status = self.tasks[rec.task_id]["task_status"]
        if status in _TERMINAL:
            return
        if self.seconds_to_finish is not None:
            elapsed = self.clock() - rec.created_s
            done = elapsed >= self.seconds_to_finish
            started = rec.polls >= 1 or elapsed > 0
        else:
            done = rec.polls >= self.polls_to_finish
            started = rec.polls >= 1
        if done:
            self._finish(rec)
            if self.seconds_to_finish is not None:  # it ended then, however late we looked
                ended = rec.created_s + self.seconds_to_finish
                self.tasks[rec.task_id]["updated_at"] = int(ended * 1000)
        elif started and status == "submitted":
            self._set_status(rec, "processing")

    def _finish(self, rec: TaskRecord) -> None:
        task = self.tasks[rec.task_id]
        if rec.fail_msg is not None:
            task["task_result"] = {}
            if self.report_units:
                task["final_unit_deduction"] = "0"
            self._set_status(rec, "failed", rec.fail_msg)
            return
        video_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        video: dict[str, Any] = {
            "id": video_id,
            "url": self._sign(f"/videos/{rec.task_id}/{video_id}.mp4", rec),
            "duration": f"{float(rec.duration) + 0.1:.1f}",
        }
        watermark = rec.body.get("watermark_info")
        if isinstance(watermark, dict) and watermark.get("enabled") is True:
            video["watermark_url"] = self._sign(f"/videos/{rec.task_id}/{video_id}-wm.mp4", rec)
        task["task_result"] = {"videos": [video]}
        if self.report_units:
            task["final_unit_deduction"] = units_for(
                rec.model_name, rec.mode, rec.duration, rec.body.get("sound") == "on"
            )
        self._set_status(rec, "succeed")

    def _sign(self, path: str, rec: TaskRecord) -> str:
        expires = int(self.clock()) + URL_TTL_SECONDS
        rec.video_paths.append(path)
        return f"{self.cdn_url}{path}?expires={expires}&sig={self._signature(path, expires)}"

    def _signature(self, path: str, expires: int) -> str:
        msg = f"{path}:{expires}".encode()
        return hmac.new(self._cdn_secret, msg, hashlib.sha256).hexdigest()[:32]

    def _set_status(self, rec: TaskRecord, status: TaskStatus, msg: str = "") -> None:
        task = self.tasks[rec.task_id]
        task["task_status"] = status
        task["task_status_msg"] = msg
        task["updated_at"] = self._now_ms()
        if rec.callback_url:
            self.callbacks.append((rec.callback_url, copy.deepcopy(task)))

    # ------------------------------------------------------------------ create

    def _create(self, kind: str, request: httpx.Request) -> httpx.Response:
        try:
            body = json.loads(request.content)
        except (ValueError, UnicodeDecodeError):
            raise _ApiError(400, 1200, "invalid request: body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _ApiError(400, 1200, "invalid request: body must be a JSON object")
        model, mode, duration, ignored = _validate_create(kind, body)
        external = body.get("external_task_id")
        if external is not None and self._find_external(external) is not None:
            raise _param_error("external_task_id already exists")
        if self._running() >= self.concurrency_limit:
            raise _ApiError(
                429,
                1303,
                f"parallel task limit reached ({self.concurrency_limit} running); retry later",
            )
        self._seq += 1
        task_id = f"fk-{self._seq}-{self._rng.getrandbits(48):012x}"
        now_s = self.clock()
        now_ms = int(now_s * 1000)
        task_info: dict[str, Any] = {}
        if external is not None:
            task_info["external_task_id"] = external
        rec = TaskRecord(
            task_id=task_id,
            kind=kind,
            model_name=model,
            mode=mode,
            duration=duration,
            body=body,
            ignored_fields=ignored,
            external_task_id=external,
            callback_url=body.get("callback_url"),
            created_s=now_s,
            seq=self._seq,
            fail_msg=self._fail_next.pop(0) if self._fail_next else None,
        )
        self.records[task_id] = rec
        self.tasks[task_id] = {
            "task_id": task_id,
            "task_status": "submitted",
            "task_status_msg": "",
            "task_info": task_info,
            "task_result": {} if self.pending_result == "empty" else None,
            "created_at": now_ms,
            "updated_at": now_ms,
        }
        self.creates_accepted += 1
        if rec.callback_url:
            self.callbacks.append((rec.callback_url, copy.deepcopy(self.tasks[task_id])))
        self.max_running_seen = max(self.max_running_seen, self._running())
        data = {
            "task_id": task_id,
            "task_status": "submitted",
            "task_info": copy.deepcopy(task_info),
            "created_at": now_ms,
            "updated_at": now_ms,
        }
        return self._ok(data)

    # ------------------------------------------------------------------ CDN

    def _refuse_video(self, request: httpx.Request) -> httpx.Response | None:
        path = self._cdn_path(request.url)
        owner = next((r for r in self.records.values() if path in r.video_paths), None)
        if owner is None:
            return text_reply(404, "NoSuchKey")
        expires_raw = request.url.params.get("expires", "")
        sig = request.url.params.get("sig", "")
        if not expires_raw.isdigit() or not hmac.compare_digest(
            sig, self._signature(path, int(expires_raw))
        ):
            return text_reply(403, "AccessDenied: bad signature")
        if self.clock() >= int(expires_raw):
            return text_reply(403, "AccessDenied: Request has expired")
        return None


# ---------------------------------------------------------------------- validation helpers


def _int_param(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    if not re.fullmatch(r"\d+", raw) or not low <= int(raw) <= high:
        raise _param_error(f"{name} must be an integer in {low}..{high}")
    return int(raw)


def _require_str(body: dict[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise _param_error(f"{name} must be a string, got {type(value).__name__}")
    return value


def _validate_create(kind: str, body: dict[str, Any]) -> tuple[str, str, str, list[str]]:
    """Check a create body against the doc; return (model, mode, duration, ignored fields)."""
    ignored = sorted(k for k in body if k not in DOCUMENTED_FIELDS[kind])
    if kind == "image2video" and "aspect_ratio" in body:
        raise _param_error(
            "aspect_ratio is not an image2video parameter (framing follows the image)"
        )
    if kind == "text2video":
        present = sorted(k for k in _IMAGE_FIELDS if k in body)
        if present:
            raise _param_error(f"{', '.join(present)} not allowed for text2video")

    model = "kling-v1"  # the doc: a missing model_name (even with `model` set) means kling-v1
    if "model_name" in body:
        model = _require_str(body, "model_name")
        if model not in MODELS:
            raise _param_error(f"model_name {model!r} is not supported")
    if kind == "text2video" and model in I2V_ONLY_MODELS:
        raise _param_error(f"model_name {model} does not support text2video")

    mode = "std"
    if "mode" in body:
        mode = _require_str(body, "mode")
        if mode not in MODES:
            raise _param_error("mode must be 'std' or 'pro'")

    duration = "5"
    if "duration" in body:
        duration = _require_str(body, "duration")
        allowed = V3_DURATIONS if model == "kling-v3" else DURATIONS
        if duration not in allowed:
            raise _param_error(
                f"duration {duration!r} is not supported by {model}; allowed: {', '.join(allowed)}"
            )

    for name in ("prompt", "negative_prompt"):
        if name in body:
            text = _require_str(body, name)
            if len(text) > MAX_PROMPT_CHARS:
                raise _param_error(f"{name} must be at most {MAX_PROMPT_CHARS} characters")
    prompt = body.get("prompt")
    if kind == "text2video" and not (isinstance(prompt, str) and prompt.strip()):
        raise _param_error("prompt is required for text2video")

    if "cfg_scale" in body:
        cfg = body["cfg_scale"]
        if not _is_number(cfg) or not 0 <= cfg <= 1:
            raise _param_error("cfg_scale must be a number between 0 and 1")

    if "camera_control" in body:
        _check_camera_control(body["camera_control"])

    if "callback_url" in body:
        url = _require_str(body, "callback_url")
        if not url.startswith(("http://", "https://")):
            raise _param_error("callback_url must be an http(s) URL")

    if "external_task_id" in body and not _require_str(body, "external_task_id"):
        raise _param_error("external_task_id must not be empty")

    if "watermark_info" in body:
        info = body["watermark_info"]
        if not isinstance(info, dict) or not isinstance(info.get("enabled", False), bool):
            raise _param_error('watermark_info must be an object like {"enabled": true}')

    if "sound" in body:
        if _require_str(body, "sound") not in ("on", "off"):
            raise _param_error("sound must be 'on' or 'off'")
        if model not in SOUND_MODELS:
            raise _param_error(f"sound is not supported by {model} (kling-v2-6 and later)")
        if body["sound"] == "on" and model in SOUND_NEEDS_PRO and mode != "pro":
            raise _param_error(f"sound on {model} requires mode pro")

    if kind == "image2video":
        _validate_image_fields(body)
        if ("static_mask" in body or "dynamic_masks" in body) and model not in MOTION_BRUSH_MODELS:
            raise _param_error(f"static_mask/dynamic_masks are not supported by {model}")
    else:
        ratio = body.get("aspect_ratio", "16:9")
        if ratio not in T2V_ASPECT_RATIOS:
            raise _param_error(f"aspect_ratio must be one of {', '.join(T2V_ASPECT_RATIOS)}")
    return model, mode, duration, ignored


def _validate_image_fields(body: dict[str, Any]) -> None:
    if not body.get("image") and not body.get("image_tail"):
        raise _param_error("image or image_tail is required for image2video")
    for name in ("image", "image_tail"):
        if name in body:
            _check_image(name, body[name])
    masks = _check_masks(body)
    if masks:
        if not body.get("image"):
            raise _param_error("static_mask/dynamic_masks need image")
        start = _image_size(body["image"])
        for name, size in masks.items():
            if start is not None and size is not None:
                ratio = (size[0] / size[1]) / (start[0] / start[1])
                if abs(ratio - 1) > MASK_ASPECT_TOLERANCE:
                    raise _param_error(f"{name} must have the same aspect ratio as image")
        sizes = {size for size in masks.values() if size is not None}
        if len(sizes) > 1:
            raise _param_error("static_mask and dynamic_masks.mask must have the same resolution")
    groups = [
        name
        for name, present in (
            ("image_tail", "image_tail" in body),
            ("static_mask/dynamic_masks", "static_mask" in body or "dynamic_masks" in body),
            ("camera_control", "camera_control" in body),
        )
        if present
    ]
    if len(groups) > 1:
        raise _param_error(f"{' and '.join(groups)} cannot be used together")


def _check_masks(body: dict[str, Any]) -> dict[str, tuple[int, int] | None]:
    """Check static_mask and dynamic_masks as the doc describes; return each mask's size (None
    for a URL, which the fake does not fetch)."""
    masks: dict[str, tuple[int, int] | None] = {}
    if "static_mask" in body:
        _check_image("static_mask", body["static_mask"], mask=True)
        masks["static_mask"] = _image_size(body["static_mask"])
    if "dynamic_masks" not in body:
        return masks
    groups = body["dynamic_masks"]
    if not isinstance(groups, list) or not 1 <= len(groups) <= MAX_DYNAMIC_MASKS:
        raise _param_error(f"dynamic_masks must be an array of 1 to {MAX_DYNAMIC_MASKS} groups")
    low, high = TRAJECTORY_POINTS
    for i, group in enumerate(groups):
        where = f"dynamic_masks[{i}]"
        if not isinstance(group, dict) or set(group) != {"mask", "trajectories"}:
            raise _param_error(f"{where} must be an object with mask and trajectories")
        _check_image(f"{where}.mask", group["mask"], mask=True)
        masks[f"{where}.mask"] = _image_size(group["mask"])
        points = group["trajectories"]
        if not isinstance(points, list) or not low <= len(points) <= high:
            raise _param_error(f"{where}.trajectories must hold {low} to {high} points")
        for point in points:
            if not isinstance(point, dict) or set(point) != {"x", "y"}:
                raise _param_error(f"{where}.trajectories items must be {{x, y}} objects")
            if not all(_is_pixel(v) for v in point.values()):
                raise _param_error(f"{where}.trajectories x and y must be pixel integers >= 0")
    return masks


def _is_pixel(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _image_size(value: str) -> tuple[int, int] | None:
    """The size of a base64 picture already checked by _check_image (None for a URL)."""
    if value.startswith(("http://", "https://")):
        return None
    found = fake_http.read_image(base64.b64decode(value))
    return None if found is None else found[1]


def _check_image(name: str, value: object, *, mask: bool = False) -> None:
    """A frame (or, with ``mask``, a motion-brush mask: same format rules, while its size and
    shape are checked against the start image instead)."""
    if not isinstance(value, str) or not value:
        raise _param_error(f"{name} must be a non-empty string (URL or base64)")
    if value[:5].lower() == "data:":
        raise _param_error(f"{name} must be bare base64 without a 'data:...;base64,' prefix")
    if value.startswith(("http://", "https://")):
        return  # a public URL; the fake does not fetch it
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
        raise _param_error(f"{name} URL must be http(s)")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _param_error(f"{name} is neither an http(s) URL nor valid base64") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise _param_error(f"{name} is larger than 10 MB")
    image = fake_http.read_image(raw)
    if image is None:
        raise _param_error(f"{name} is not a readable jpg/png image")
    fmt, (width, height) = image
    if fmt not in ("JPEG", "PNG"):
        raise _param_error(f"{name} must be jpg/jpeg/png, got {fmt}")
    if mask:
        return
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        raise _param_error(
            f"{name} is {width}x{height}; width and height must be at least {MIN_IMAGE_SIDE}px"
        )
    if not 1 / MAX_IMAGE_RATIO <= width / height <= MAX_IMAGE_RATIO:
        raise _param_error(f"{name} aspect ratio {width}x{height} is outside 1:2.5..2.5:1")


def _check_camera_control(value: object) -> None:
    if not isinstance(value, dict):
        raise _param_error("camera_control must be an object")
    kind = value.get("type")
    if kind == "simple":
        config = value.get("config")
        if not isinstance(config, dict):
            raise _param_error("camera_control.config is required when type is 'simple'")
        unknown = sorted(set(config) - set(CAMERA_SIMPLE_KEYS))
        if unknown:
            raise _param_error(f"camera_control.config has unknown keys: {', '.join(unknown)}")
        nonzero = 0
        for key, number in config.items():
            if not _is_number(number) or not -10 <= number <= 10:
                raise _param_error(f"camera_control.config.{key} must be a number in -10..10")
            nonzero += number != 0
        if nonzero != 1:
            raise _param_error("camera_control.config needs exactly one non-zero value")
    elif kind in CAMERA_PRESETS:
        if value.get("config") is not None:
            raise _param_error(f"camera_control.config must be omitted for type {kind!r}")
    else:
        raise _param_error(
            f"camera_control.type must be 'simple' or one of {', '.join(CAMERA_PRESETS)}"
        )


# ---------------------------------------------------------------------- fault specs (CLI)


def parse_fault_spec(spec: str) -> list[tuple[Route, Fault, int]]:
    """Parse ``ROUTE:KIND[:ARG...][*N]`` items separated by commas.

    Kinds: ``business:CODE:STATUS[:RETRY_AFTER]``, ``raw:STATUS``, ``timeout_before``,
    ``timeout_after``, ``drop_after``, ``cut:BYTES``. Example:
    ``create:business:1303:429:2*3,download:cut:1000,query:raw:502``.
    """

    def business(kind: str, args: list[str], item: str) -> Fault | None:
        if kind != "business" or len(args) not in (2, 3):
            return None
        retry = float(args[2]) if len(args) == 3 else None
        return Fault.business(int(args[0]), int(args[1]), retry_after=retry)

    items = fake_http.parse_fault_items(spec, FakeKling.routes, Fault, business)
    return [(cast(Route, route), fault, times) for route, fault, times in items]


# ---------------------------------------------------------------------- real server mode


def serve(port: int = 8765, **options: Any) -> Server:
    """Bind a ThreadingHTTPServer on 127.0.0.1 (port 0 = any) serving a fresh FakeKling.

    ``options``: ``fake_kwargs`` (FakeKling's arguments), ``faults`` (``(route, fault, times)``
    to inject), ``hang_seconds`` (how long timeout faults hang), ``quiet``. Result URLs point at
    ``http://127.0.0.1:PORT/cdn`` so they download from the same server. Call
    ``serve_forever()`` on the result (and ``shutdown()``/``server_close()`` to stop).
    """
    return fake_http.serve_fake(port, FakeKling, ("base_url", "cdn_url"), **options)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: run the fake as a local HTTP server until Ctrl-C."""
    parser = fake_http.server_parser(
        "Fake Kling AI API server (kling-api.md).", 8765, 5, parse_fault_spec.__doc__ or ""
    )
    parser.add_argument("--token-ttl", type=float, default=None, help="reject older tokens")
    parser.add_argument("--access-key", default=DEFAULT_ACCESS_KEY)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument("--api-key", default=None, help="also accept 'Bearer <api key>'")
    args = parser.parse_args(argv)

    options = fake_http.server_options(
        args,
        parse_fault_spec,
        access_key=args.access_key,
        secret_key=args.secret_key,
        api_key=args.api_key,
        token_ttl=args.token_ttl,
    )
    server = serve(args.port, **options)
    print(f"fake Kling API on {server.origin} (videos under {server.fake.cdn_url})")
    print(f"  KLING_BASE_URL={server.origin}")
    print(f"  access key:  {args.access_key}")
    print(f"  secret key:  {args.secret_key}")
    if args.api_key:
        print(f"  API key:     {args.api_key}")
    return fake_http.run_until_interrupted(server)


if __name__ == "__main__":
    raise SystemExit(main())
