"""The baseline: a Kling client written the common way, to compare reelgen against.

What a typical hand-written integration does: a fresh ``httpx.AsyncClient`` (so a new
connection) and a freshly signed JWT for every call, create the task, then poll it every fixed
10 s, at most 5 jobs at once (``asyncio.Semaphore(5)``), and download the video with a plain
GET whose whole body is read into memory before it is written out. No retries: an error
envelope or a broken connection fails the job.

The only concessions to the benchmark are injectable ``clock`` (the wall clock the JWT is
signed with) and ``mounts`` (where its HTTP clients send requests; ``None`` in real use).
Creating each client without a ``transport`` keeps the real per-client cost (an SSL context)
even when the requests go to the in-process fake through ``mounts``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

POLL_INTERVAL = 10.0
CONCURRENCY = 5


@dataclass
class BaselineSettings:
    base_url: str
    access_key: str
    secret_key: str
    poll_interval: float = POLL_INTERVAL
    concurrency: int = CONCURRENCY
    timeout: float = 3600.0
    clock: Callable[[], float] = time.time
    mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None


@dataclass
class BaselineJob:
    id: str
    image: Path
    prompt: str
    output: Path


@dataclass
class BaselineResult:
    id: str
    ok: bool
    task_id: str | None = None
    seen_done: float | None = None
    """Loop time at which a poll first answered ``succeed``."""
    error: str = ""
    polls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class BaselineError(Exception):
    pass


class BaselineClient:
    def __init__(self, settings: BaselineSettings) -> None:
        self.settings = settings

    def _token(self) -> str:
        now = self.settings.clock()
        claims = {"iss": self.settings.access_key, "exp": int(now) + 1800, "nbf": int(now) - 5}
        return jwt.encode(claims, self.settings.secret_key, algorithm="HS256")

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(mounts=self.settings.mounts, timeout=30.0)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self._token()}"}
        async with self._client() as client:
            response = await client.request(
                method, self.settings.base_url + path, json=body, headers=headers
            )
        payload = response.json()
        if payload.get("code") != 0:
            raise BaselineError(f"kling error {payload.get('code')}: {payload.get('message')}")
        return payload["data"]

    async def generate(self, job: BaselineJob) -> BaselineResult:
        result = BaselineResult(job.id, ok=False)
        loop = asyncio.get_running_loop()
        image = base64.b64encode(job.image.read_bytes()).decode("ascii")
        body = {
            "model_name": "kling-v2-5-turbo",
            "mode": "std",
            "duration": "5",
            "image": image,
            "prompt": job.prompt,
        }
        created = await self._call("POST", "/v1/videos/image2video", body)
        result.task_id = task_id = created["task_id"]
        started = loop.time()
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            task = await self._call("GET", f"/v1/videos/image2video/{task_id}")
            result.polls += 1
            if task["task_status"] == "succeed":
                result.seen_done = loop.time()
                break
            if task["task_status"] == "failed":
                raise BaselineError(f"task failed: {task.get('task_status_msg')}")
            if loop.time() - started > self.settings.timeout:
                raise BaselineError("timed out")
        url = task["task_result"]["videos"][0]["url"]
        async with self._client() as client:
            response = await client.get(url)
            response.raise_for_status()
            data = response.read()
        job.output.parent.mkdir(parents=True, exist_ok=True)
        job.output.write_bytes(data)
        result.ok = True
        return result

    async def run(self, jobs: list[BaselineJob]) -> list[BaselineResult]:
        semaphore = asyncio.Semaphore(self.settings.concurrency)

        async def one(job: BaselineJob) -> BaselineResult:
            async with semaphore:
                try:
                    return await self.generate(job)
                except (BaselineError, httpx.HTTPError, ValueError, KeyError) as exc:
                    return BaselineResult(job.id, ok=False, error=f"{type(exc).__name__}: {exc}")

        return list(await asyncio.gather(*(one(job) for job in jobs)))
