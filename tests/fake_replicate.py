"""A fake of Replicate's predictions API hosting a few video models, written from Replicate's
HTTP reference (the OpenAPI description at api.replicate.com) and the models' input schemas.

It encodes the documented contract, not any client's assumptions, and imports nothing from
``reelgen*``. Two ways to use it:

* in tests, as ``httpx.MockTransport(FakeReplicate().handler)`` for sync and async clients;
* as a real local server for manual end-to-end checks::

      python tests/fake_replicate.py --port 8767 --polls 3

Behaviour in brief:

* ``Authorization: Bearer <token>``; anything else -> 401 problem details
  ``{"title": "Unauthenticated", "detail": "You did not pass a valid authentication token",
  "status": 401}`` (``application/problem+json``).
* ``POST /v1/models/{owner}/{name}/predictions`` (official models of :data:`MODELS`, unknown ->
  404) with ``{"input": {...}}`` and optional ``webhook`` (https) and
  ``webhook_events_filter`` (``start``/``output``/``logs``/``completed``); any other top-level
  key is refused (the request schema has ``additionalProperties: false``). The input is checked
  against the model's schema (required fields, enums, types, file inputs as http(s) URLs or
  ``data:`` URIs): 422 with ``invalid_fields``. ``Prefer: wait[=1..60]`` is checked for its
  form; the fake never blocks. Reply 201: the prediction, ``status`` ``starting``.
* ``GET /v1/predictions/{id}``: ``starting`` on the first poll, ``processing`` after,
  ``succeeded`` on the ``polls_to_finish``-th (or by clock with ``seconds_to_finish``), with the
  video URL as ``output`` (a string, or a one-item list with ``output_as_list``). A failed
  prediction has ``status`` ``failed`` and an ``error`` text. An hour after it finished
  (:data:`OUTPUT_TTL`) the output is removed: ``output`` null, ``data_removed`` true, and the
  file answers 404.
* ``POST /v1/predictions/{id}/cancel``: 200 with the prediction (``canceled`` unless it had
  already finished); unknown id -> 404.
* ``GET /v1/account`` -> the account; ``GET /v1/webhooks/default/secret`` -> ``{"key"}``.
* Webhooks a prediction would send are recorded in :attr:`FakeReplicate.webhooks`, signed the
  Standard Webhooks way with :data:`DEFAULT_WEBHOOK_SECRET`.
* Videos live under ``cdn_url`` (``replicate.delivery``): no auth, Range supported.
* Faults are queued with :meth:`FakeReplicate.inject` and consumed in order.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
import string
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import httpx

if not __package__:  # run as ``python tests/<this file>``: put the repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import fake_http
from tests.fake_http import FakeBase, Server, path_under, same_origin, text_reply

__all__ = [
    "CONTENT_REFUSAL",
    "DEFAULT_API_URL",
    "DEFAULT_CDN_URL",
    "DEFAULT_TOKEN",
    "DEFAULT_WEBHOOK_SECRET",
    "MODELS",
    "OUTPUT_TTL",
    "FakeReplicate",
    "Fault",
    "ModelSchema",
    "main",
    "parse_fault_spec",
    "serve",
    "sign",
]

DEFAULT_TOKEN = "r8_fake_test_token_0000"
DEFAULT_API_URL = "https://api.replicate.com/v1"
DEFAULT_CDN_URL = "https://replicate.delivery"
DEFAULT_WEBHOOK_SECRET = "whsec_ZmFrZS1yZXBsaWNhdGUtd2ViaG9vay1zZWNyZXQ="
"""A Standard Webhooks secret (``whsec_`` + base64), obviously fake."""
OUTPUT_TTL = 3600.0
"""Seconds after completion an API prediction keeps its output ("removed after an hour")."""
CONTENT_REFUSAL = (
    "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"
)
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
_PREFER = re.compile(r"^wait(=([1-9]|[1-9][0-9]|60))?$")

Route = Literal["create", "get", "cancel", "account", "download", "any"]
ROUTES: tuple[Route, ...] = ("create", "get", "cancel", "account", "download", "any")
FaultKind = Literal["http", fake_http.SharedFaultKind]


@dataclass(frozen=True)
class Field_:
    """One input field of a model's schema."""

    kind: Literal["string", "integer", "boolean", "uri"]
    required: bool = False
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ModelSchema:
    """One official model on Replicate and its input schema."""

    slug: str
    fields: Mapping[str, Field_] = field(default_factory=dict)
    only_with: Mapping[str, tuple[str, Any]] = field(default_factory=dict)
    """field -> (other field, value) it requires (kling-v2.1's end_image needs mode pro)."""


_DURATION = Field_("integer", choices=(5, 10))
_RATIOS = ("16:9", "9:16", "1:1")

# From each model's input schema on Replicate (its API tab).
MODELS: dict[str, ModelSchema] = {
    schema.slug: schema
    for schema in (
        ModelSchema(
            "kwaivgi/kling-v2.1",
            {
                "prompt": Field_("string", required=True),
                "start_image": Field_("uri", required=True),
                "mode": Field_("string", choices=("standard", "pro")),
                "duration": _DURATION,
                "negative_prompt": Field_("string"),
                "end_image": Field_("uri"),
            },
            only_with={"end_image": ("mode", "pro")},
        ),
        ModelSchema(
            "kwaivgi/kling-v2.5-turbo-pro",
            {
                "prompt": Field_("string", required=True),
                "start_image": Field_("uri"),
                "image": Field_("uri"),  # deprecated alias of start_image
                "aspect_ratio": Field_("string", choices=_RATIOS),
                "duration": _DURATION,
                "negative_prompt": Field_("string"),
            },
        ),
        ModelSchema(
            "bytedance/seedance-1-lite",
            {
                "prompt": Field_("string", required=True),
                "image": Field_("uri"),
                "last_frame_image": Field_("uri"),
                "duration": _DURATION,
                "resolution": Field_("string", choices=("480p", "720p", "1080p")),
                "aspect_ratio": Field_("string", choices=(*_RATIOS, "4:3", "3:4", "21:9", "9:21")),
                "fps": Field_("integer", choices=(24,)),
                "camera_fixed": Field_("boolean"),
                "seed": Field_("integer"),
            },
        ),
    )
}


@dataclass(frozen=True)
class Fault(fake_http.Fault):
    """A shared fault (``raw``, timeouts, drops, cut downloads) or a Replicate error reply."""

    kind: FaultKind
    detail: str = ""
    title: str = ""

    @staticmethod
    def http(
        status: int,
        detail: str = "fake replicate error",
        title: str = "",
        retry_after: float | None = None,
    ) -> Fault:
        """Reply problem details ``{"title", "detail", "status"}`` (request not processed);
        ``Retry-After`` when ``retry_after`` is given."""
        return Fault(
            "http", http_status=status, detail=detail, title=title, retry_after=retry_after
        )


def _problem(status: int, detail: str, title: str = "", **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"title": title or _TITLES.get(status, "Error"), "detail": detail}
    body["status"] = status
    body.update(extra)
    return httpx.Response(
        status,
        headers={"Content-Type": "application/problem+json"},
        content=json.dumps(body).encode(),
    )


_TITLES = {
    401: "Unauthenticated",
    402: "Insufficient credit",
    404: "Not found",
    405: "Method not allowed",
    422: "Input validation failed",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
_ID_CHARS = string.ascii_lowercase + string.digits


def sign(body: bytes, secret: str, msg_id: str, timestamp: int) -> dict[str, str]:
    """Standard Webhooks headers for ``body`` (HMAC-SHA256 over ``id.timestamp.body``)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }


class FakeReplicate(FakeBase[Fault]):
    """An in-memory Replicate predictions API; ``handler`` serves ``httpx.Request``."""

    name = "fake-replicate"
    routes = ROUTES

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        clock: Callable[[], float] = time.time,
        polls_to_finish: int = 2,
        seconds_to_finish: float | None = None,
        concurrency_limit: int | None = None,
        video: bytes | None = None,
        api_url: str = DEFAULT_API_URL,
        cdn_url: str = DEFAULT_CDN_URL,
        output_as_list: bool = False,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        models: Mapping[str, ModelSchema] | None = None,
        seed: int | None = None,
        max_recorded: int | None = None,
    ) -> None:
        """Configure the fake.

        ``polls_to_finish``: GETs until ``succeeded`` (first ``starting``, later
        ``processing``); ``seconds_to_finish`` switches to clock time (``starting`` until the
        clock moves). ``concurrency_limit``: predictions running at once; others stay
        ``starting`` (Replicate queues them, it does not refuse). ``output_as_list``: the output
        is ``[url]`` instead of ``url`` (models differ).
        """
        if polls_to_finish < 1:
            raise ValueError("polls_to_finish must be >= 1")
        self._init_base(clock, video, cdn_url, seed, max_recorded)
        self.token = token
        self.polls_to_finish = polls_to_finish
        self.seconds_to_finish = seconds_to_finish
        self.concurrency_limit = concurrency_limit
        self.api_url = api_url.rstrip("/")
        self.output_as_list = output_as_list
        self.webhook_secret = webhook_secret
        self.models: dict[str, ModelSchema] = dict(models if models is not None else MODELS)
        self._api = httpx.URL(self.api_url)
        self._fail_next: list[str] = []
        self._files: dict[str, str] = {}  # CDN path -> prediction id

        self.creates_accepted = 0
        """Creates that made a (paid) prediction."""
        self.predictions: dict[str, dict[str, Any]] = {}
        """id -> record: ``model``, ``body`` (the create body), ``input``, ``ignored_fields``,
        ``status``, ``error``, ``polls``, ``video_url``, ``prefer``, ``webhook``, times..."""
        self.webhooks: list[tuple[str, dict[str, str], bytes]] = []
        """(URL, signed headers, body) of every webhook Replicate would POST."""

    # ------------------------------------------------------------------ public controls

    def fail_next(self, error: str = CONTENT_REFUSAL, times: int = 1) -> None:
        """Make the next ``times`` predictions end ``failed`` with this ``error`` text."""
        with self._lock:
            self._fail_next.extend([error] * times)

    def expire_outputs(self) -> None:
        """Remove every finished prediction's output now (as an hour later)."""
        with self._lock:
            for record in self.predictions.values():
                if record["completed_s"] is not None:
                    record["completed_s"] -= OUTPUT_TTL + 1

    # ------------------------------------------------------------------ plumbing

    def _error_reply(self, fault: Fault) -> tuple[httpx.Response, str] | None:
        if fault.kind != "http":
            return None
        response = _problem(fault.http_status, fault.detail, fault.title)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = f"{fault.retry_after:g}"
        return response, f"{fault.http_status}"

    def _classify(self, request: httpx.Request) -> str:
        url = request.url
        if self._is_cdn(url):
            return "download"
        if same_origin(url, self._api):
            path = path_under(url, self._api)
            if path == "/account":
                return "account"
            if path.endswith("/cancel"):
                return "cancel"
            if path.startswith("/predictions/"):
                return "get"
            if request.method == "POST":
                return "create"
        return "other"

    def _dispatch(self, request: httpx.Request, route: str) -> tuple[httpx.Response, str]:
        if route == "download":
            return self._download(request), ""
        if not same_origin(request.url, self._api):
            raise self._no_such_host(request)
        if not self._authorised(request):
            return _problem(401, "You did not pass a valid authentication token"), ""
        path = path_under(request.url, self._api)
        match = re.fullmatch(r"/models/([^/]+)/([^/]+)/predictions", path)
        if match is not None:
            if request.method != "POST":
                return _problem(405, "Method not allowed"), ""
            return self._create(request, f"{match.group(1)}/{match.group(2)}"), ""
        match = re.fullmatch(r"/predictions/([^/]+)(/cancel)?", path)
        if match is not None:
            record = self.predictions.get(match.group(1))
            want = "POST" if match.group(2) else "GET"
            if request.method != want:
                return _problem(405, "Method not allowed"), ""
            if record is None:
                return _problem(404, "The requested resource could not be found."), ""
            if match.group(2):
                return self._cancel(record), ""
            record["polls"] += 1
            self._advance(record, poll=True)
            return httpx.Response(200, json=self._prediction(record)), ""
        if path == "/account" and request.method == "GET":
            account = {"type": "user", "username": "fake-user", "name": "Fake User"}
            return httpx.Response(200, json=account), ""
        if path == "/webhooks/default/secret" and request.method == "GET":
            return httpx.Response(200, json={"key": self.webhook_secret}), ""
        return _problem(404, "The requested resource could not be found."), ""

    def _authorised(self, request: httpx.Request) -> bool:
        scheme, _, token = (request.headers.get("authorization") or "").strip().partition(" ")
        return scheme.lower() == "bearer" and token.strip() == self.token

    def _now_iso(self, at: float | None = None) -> str:
        moment = self.clock() if at is None else at
        return dt.datetime.fromtimestamp(moment, dt.timezone.utc).isoformat().replace("+00:00", "Z")

    def _new_id(self) -> str:
        return "".join(_ID_CHARS[self._rng.randrange(len(_ID_CHARS))] for _ in range(26))

    # ------------------------------------------------------------------ create

    def _create(self, request: httpx.Request, slug: str) -> httpx.Response:
        schema = self.models.get(slug)
        if schema is None:
            return _problem(404, "The requested resource could not be found.")
        prefer = request.headers.get("prefer")
        if prefer is not None and not _prefer_ok(prefer):
            return _problem(400, f"Invalid Prefer header {prefer!r}: expected wait or wait=1..60")
        try:
            body = json.loads(request.content)
        except (ValueError, UnicodeDecodeError):
            return _problem(400, "The request body is not valid JSON")
        if not isinstance(body, dict):
            return _problem(422, "The request body must be an object")
        invalid = self._check_body(body, schema)
        if invalid:
            detail = "; ".join(f"{i['field']}: {i['description']}" for i in invalid)
            return _problem(422, detail, invalid_fields=invalid)
        self._seq += 1
        pid = self._new_id()
        now = self.clock()
        model_input = body["input"]
        record: dict[str, Any] = {
            "id": pid,
            "model": slug,
            "body": body,
            "input": model_input,
            "ignored_fields": sorted(k for k in model_input if k not in schema.fields),
            "status": "starting",
            "error": self._fail_next.pop(0) if self._fail_next else None,
            "polls": 0,
            "seq": self._seq,
            "created_s": now,
            "started_s": None,
            "completed_s": None,
            "video_url": None,
            "prefer": prefer,
            "webhook": body.get("webhook"),
            "webhook_events": list(body.get("webhook_events_filter") or WEBHOOK_EVENTS),
        }
        self.predictions[pid] = record
        self.creates_accepted += 1
        self._send_webhook(record, "start")
        return httpx.Response(201, json=self._prediction(record))

    def _check_body(self, body: dict[str, Any], schema: ModelSchema) -> list[dict[str, str]]:
        invalid: list[dict[str, str]] = []

        def bad(where: str, kind: str, description: str) -> None:
            invalid.append({"type": kind, "field": where, "description": description})

        for key in body:
            if key not in ("input", "webhook", "webhook_events_filter", "stream"):
                bad(key, "additional_property_not_allowed", "Additional property not allowed")
        model_input = body.get("input")
        if not isinstance(model_input, dict):
            bad("input", "required", "input is required and must be an object")
            return invalid
        webhook = body.get("webhook")
        if webhook is not None and not (
            isinstance(webhook, str) and webhook.startswith("https://")
        ):
            bad("webhook", "format", "must be an HTTPS URL")
        events = body.get("webhook_events_filter")
        if events is not None and (
            not isinstance(events, list) or any(e not in WEBHOOK_EVENTS for e in events)
        ):
            bad("webhook_events_filter", "enum", f"items must be one of {list(WEBHOOK_EVENTS)}")
        for name, spec in schema.fields.items():
            where = f"input.{name}"
            if name not in model_input:
                if spec.required:
                    bad(where, "required", f"{name} is required")
                continue
            problem = _check_value(model_input[name], spec)
            if problem is not None:
                bad(where, problem[0], problem[1])
        for name, (other, value) in schema.only_with.items():
            if name in model_input and model_input.get(other) != value:
                bad(f"input.{name}", "dependency", f"{name} requires {other} {value!r}")
        return invalid

    # ------------------------------------------------------------------ lifecycle

    def _running(self) -> int:
        return sum(1 for r in self.predictions.values() if r["status"] == "processing")

    def _advance(self, record: dict[str, Any], *, poll: bool) -> None:
        if record["status"] not in ("starting", "processing"):
            return
        if self.seconds_to_finish is None:
            polls = record["polls"]
            target = (
                "succeeded"
                if polls >= self.polls_to_finish
                else "starting"
                if polls <= 1
                else "processing"
            )
        else:
            elapsed = self.clock() - record["created_s"]
            target = (
                "starting"
                if elapsed <= 0
                else "succeeded"
                if elapsed >= self.seconds_to_finish
                else "processing"
            )
        if (
            record["status"] == "starting"
            and target != "starting"
            and self.concurrency_limit is not None
            and self._running() >= self.concurrency_limit
        ):
            return  # queued behind the account's running predictions
        if target != "starting" and record["started_s"] is None:
            record["started_s"] = self.clock()
        if target == "processing":
            record["status"] = "processing"
        elif target == "succeeded":
            self._complete(record)

    def _complete(self, record: dict[str, Any], *, canceled: bool = False) -> None:
        record["completed_s"] = self.clock()
        if canceled:
            record["status"] = "canceled"
        elif record["error"] is not None:
            record["status"] = "failed"
        else:
            record["status"] = "succeeded"
            token = f"{self._rng.getrandbits(128):032x}"
            path = f"/xezq/{token}/tmp{record['id'][:8]}.mp4"
            self._files[path] = record["id"]
            record["video_url"] = f"{self.cdn_url}{path}"
        self._send_webhook(record, "completed")

    def _expired(self, record: dict[str, Any]) -> bool:
        done = record["completed_s"]
        return done is not None and self.clock() - done > OUTPUT_TTL

    def _prediction(self, record: dict[str, Any]) -> dict[str, Any]:
        pid = record["id"]
        removed = self._expired(record)
        output: Any = None
        if record["status"] == "succeeded" and not removed:
            output = [record["video_url"]] if self.output_as_list else record["video_url"]
        started, completed = record["started_s"], record["completed_s"]
        body: dict[str, Any] = {
            "id": pid,
            "model": record["model"],
            "version": "hidden",
            "input": None if removed else record["input"],
            "logs": "",
            "output": output,
            "data_removed": removed,
            "error": record["error"] if record["status"] == "failed" else None,
            "status": record["status"],
            "source": "api",
            "created_at": self._now_iso(record["created_s"]),
            "urls": {
                "web": f"https://replicate.com/p/{pid}",
                "get": f"{self.api_url}/predictions/{pid}",
                "cancel": f"{self.api_url}/predictions/{pid}/cancel",
            },
        }
        if started is not None:
            body["started_at"] = self._now_iso(started)
        if completed is not None:
            body["completed_at"] = self._now_iso(completed)
            base = started if started is not None else completed
            body["metrics"] = {
                "predict_time": round(completed - base, 3),
                "total_time": round(completed - record["created_s"], 3),
            }
        return body

    def _cancel(self, record: dict[str, Any]) -> httpx.Response:
        self._advance(record, poll=False)
        if record["status"] in ("starting", "processing"):
            self._complete(record, canceled=True)
        return httpx.Response(200, json=self._prediction(record))

    def _send_webhook(self, record: dict[str, Any], event: str) -> None:
        if not record["webhook"] or event not in record["webhook_events"]:
            return
        body = json.dumps(self._prediction(record)).encode()
        msg_id = f"msg_{self._new_id()}"
        headers = sign(body, self.webhook_secret, msg_id, int(self.clock()))
        self.webhooks.append((record["webhook"], headers, body))

    # ------------------------------------------------------------------ CDN

    def _refuse_video(self, request: httpx.Request) -> httpx.Response | None:
        pid = self._files.get(self._cdn_path(request.url))
        if pid is None or self._expired(self.predictions[pid]):
            return text_reply(404, "Not Found")
        return None


# ---------------------------------------------------------------------- input values


def _prefer_ok(prefer: str) -> bool:
    """``wait`` or ``wait=n`` with n from 1 to 60 (the header's description; its pattern
    alone would let 61-99 through)."""
    match = _PREFER.fullmatch(prefer.strip())
    return match is not None and (match.group(2) is None or int(match.group(2)) <= 60)


_DATA_URI = re.compile(r"data:(?P<mime>[^;,]+)(?:;[^;,]+)*?;base64,(?P<data>.*)", re.S)


def _check_value(value: object, spec: Field_) -> tuple[str, str] | None:
    """``(type, description)`` when ``value`` does not fit ``spec``; None when it does."""
    if spec.kind == "string" and not isinstance(value, str):
        return "invalid_type", "Expected: string"
    if spec.kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        return "invalid_type", "Expected: integer"  # "5" (a string) is refused
    if spec.kind == "boolean" and not isinstance(value, bool):
        return "invalid_type", "Expected: boolean"
    if spec.kind == "uri":
        return _check_file(value)
    if spec.choices and value not in spec.choices:
        shown = ", ".join(json.dumps(c) for c in spec.choices)
        return "enum", f"must be one of the following: {shown}"
    return None


def _check_file(value: object) -> tuple[str, str] | None:
    """Files are http(s) URLs or ``data:`` URIs (the create reference) holding a picture."""
    if not isinstance(value, str) or not value:
        return "invalid_type", "Expected: string (an http(s) URL or a data URL)"
    if value[:8].lower().startswith(("http://", "https://")):
        try:
            return None if httpx.URL(value).host else ("format", "Does not match format 'uri'")
        except httpx.InvalidURL:
            return "format", "Does not match format 'uri'"
    match = _DATA_URI.fullmatch(value)
    if match is None:
        return "format", "Does not match format 'uri'"
    try:
        raw = base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError):
        return "format", "The data URL is not valid base64"
    if not match.group("mime").startswith("image/") or fake_http.read_image(raw) is None:
        return "format", "The data URL does not hold a readable image"
    return None


# ---------------------------------------------------------------------- fault specs (CLI)


def parse_fault_spec(spec: str) -> list[tuple[Route, Fault, int]]:
    """Parse ``ROUTE:KIND[:ARG...][*N]`` items separated by commas.

    Routes: create, get, cancel, account, download, any. Kinds: ``http:STATUS[:RETRY_AFTER]``,
    ``raw:STATUS``, ``timeout_before``, ``timeout_after``, ``drop_after``, ``cut:BYTES``.
    Example: ``create:http:429:2*3,download:cut:1000,get:raw:502``.
    """

    def http(kind: str, args: list[str], item: str) -> Fault | None:
        if kind != "http" or not 1 <= len(args) <= 2:
            return None
        retry = float(args[1]) if len(args) == 2 else None
        return Fault.http(int(args[0]), retry_after=retry)

    items = fake_http.parse_fault_items(spec, ROUTES, Fault, http)
    return [(cast(Route, route), fault, times) for route, fault, times in items]


# ---------------------------------------------------------------------- real server mode


def serve(port: int = 8767, **options: Any) -> Server:
    """Bind a ThreadingHTTPServer on 127.0.0.1 (port 0 = any) serving a fresh FakeReplicate,
    its API under ``/v1`` and videos under ``/cdn`` of the server's origin (unless
    ``fake_kwargs`` says otherwise)."""
    kwargs = dict(options.pop("fake_kwargs", None) or {})

    def make(**given: Any) -> FakeReplicate:
        given["api_url"] = given["api_url"].rstrip("/") + "/v1"
        return FakeReplicate(**given)

    return fake_http.serve_fake(port, make, ("api_url", "cdn_url"), fake_kwargs=kwargs, **options)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: run the fake as a local HTTP server until Ctrl-C."""
    parser = fake_http.server_parser(
        "Fake Replicate predictions API server.", 8767, None, parse_fault_spec.__doc__ or ""
    )
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the accepted API token")
    parser.add_argument("--output-as-list", action="store_true", help="output is [url]")
    args = parser.parse_args(argv)
    options = fake_http.server_options(
        args, parse_fault_spec, token=args.token, output_as_list=args.output_as_list
    )
    server = serve(args.port, **options)
    print(f"fake Replicate API on {server.fake.api_url} (videos under {server.fake.cdn_url})")
    print(f"  REPLICATE_BASE_URL={server.fake.api_url}")
    print(f"  REPLICATE_API_TOKEN={args.token}")
    return fake_http.run_until_interrupted(server)


if __name__ == "__main__":
    raise SystemExit(main())
