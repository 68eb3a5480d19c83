"""Where a verified video goes: a local path or an object in S3-compatible storage (``s3://``).

A target is a local file (:mod:`reelgen.outputs` decides which ones are allowed, and
:mod:`reelgen.download` saves there) or an :class:`ObjectURI` (``s3://BUCKET/KEY``). Before
anything is paid for, :func:`check` refuses a target the video must not or cannot go to: for an
object, a bad URI, a missing bucket, credentials that are refused, or an object that exists
(unless ``force``). After the job is done, :func:`save` downloads the video (streamed,
resumable, verified) and, for an object, uploads that verified copy from disk with boto3
(``upload_file``: constant memory, multipart for large files), checks the stored size, and
removes the local copy. An upload that fails keeps the verified copy in the staging folder
(``uploads/`` in reelgen's data folder), and the error says how to upload it later.

The endpoint and credentials are the standard AWS settings (``AWS_ENDPOINT_URL`` or
``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``), read from the
engine's environment where set, else by boto3's own chain, so S3, R2 and MinIO all work.
boto3 is optional (``pip install "reelgen[s3]"``) and imported only when an ``s3://`` target
is used.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from .download import download as download_to
from .download import sha256_of
from .errors import ConfigError, DownloadError, InvalidRequest, OutputExists, UploadError
from .outputs import check_target, resolve_target
from .waiting import POLL_OUTAGE

if TYPE_CHECKING:
    import httpx

    from .models import Job
    from .waiting import Waiter

SCHEME = "s3://"
INSTALL = 'pip install "reelgen[s3]"'
UPLOAD_ATTEMPTS = 5
"""Tries of a whole upload on transient errors (botocore retries each request on its own)."""
PART_SIZE = 16 * 1024 * 1024
"""Multipart threshold and part size: a part is read from disk as it is sent."""
BUCKET_SEEN_FOR = 300.0
"""Seconds a bucket found to exist is not asked about again (a batch's lines share it)."""

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_OTHER_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "500",
        "502",
        "503",
        "504",
    }
)
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
    }
)


@dataclass(frozen=True)
class ObjectURI:
    """``s3://BUCKET/KEY``; for a batch's output folder, ``key`` is a prefix ("" or ending
    in ``/``)."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    def child(self, name: str) -> ObjectURI:
        """The object ``name`` under this prefix."""
        return ObjectURI(self.bucket, self.key + name)


Target: TypeAlias = Path | ObjectURI
"""Where one video goes."""


@dataclass(frozen=True)
class Stored:
    """A verified video where it was asked to go: ``output`` is its path or object URI."""

    output: str
    size: int
    sha256: str


# -- naming ---------------------------------------------------------------------------------


def is_remote(output: object) -> bool:
    """Whether ``output`` names an object (``s3://...``) rather than a local path."""
    return isinstance(output, ObjectURI) or (
        isinstance(output, str) and output[: len(SCHEME)].lower() == SCHEME
    )


def parse_uri(text: str, *, folder: bool = False) -> ObjectURI:
    """``s3://BUCKET/KEY`` (``folder``: ``s3://BUCKET[/PREFIX]``, a batch's output folder),
    checked; InvalidRequest says what is wrong with it."""
    rest = text[len(SCHEME) :]
    bucket, _, key = rest.partition("/")
    example = "s3://BUCKET/PREFIX" if folder else "s3://BUCKET/KEY.mp4"
    if not bucket:
        raise InvalidRequest(f"{text!r} names no bucket; write {example}")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise InvalidRequest(
            f"{bucket!r} in {text} is not a bucket name (3-63 lowercase letters, digits, dots "
            f"and hyphens); write {example}"
        )
    if key.startswith("/"):
        raise InvalidRequest(f"the key in {text} starts with '/'; write {example}")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidRequest(f"the key in {text!r} holds a control character")
    if folder:
        key = key if not key or key.endswith("/") else f"{key}/"
    elif not key:
        raise InvalidRequest(f"{text} names no object; write {example}")
    elif key.endswith("/"):
        raise InvalidRequest(
            f"{text} ends with '/', but an object needs a name: write e.g. {text}clip.mp4"
        )
    if len(key.encode("utf-8")) > 1024:
        raise InvalidRequest(f"the key in {text[:60]}... is longer than S3 allows (1024 bytes)")
    return ObjectURI(bucket, key)


def resolve(output: str | Path | ObjectURI | None, job_id: str) -> Target:
    """Where ``job_id``'s video goes: the object ``output`` names, else the local file
    :func:`reelgen.outputs.resolve_target` makes of it."""
    if isinstance(output, ObjectURI):
        return output
    if isinstance(output, str):
        if is_remote(output):
            return parse_uri(output)
        if _OTHER_SCHEME.match(output):
            raise InvalidRequest(
                f"cannot save to {output}: outputs are local paths or s3://BUCKET/KEY"
            )
    return resolve_target(output, job_id)


def parse(text: str) -> Target:
    """A target as the job log records it (a path or an object URI), as it is."""
    return parse_uri(text) if is_remote(text) else Path(text)


def folder(out_dir: str | Path) -> Path | ObjectURI:
    """A batch's output folder: an absolute local folder, or an ``s3://BUCKET/PREFIX``."""
    if isinstance(out_dir, str) and is_remote(out_dir):
        return parse_uri(out_dir, folder=True)
    if isinstance(out_dir, str) and not out_dir.strip():
        raise InvalidRequest("the output folder is empty; give a folder or s3://BUCKET/PREFIX")
    return Path(out_dir).expanduser().resolve()


def inside(place: Path | ObjectURI, name: str) -> Target:
    """The file or object ``name`` in a batch's output folder."""
    if isinstance(place, ObjectURI):
        return place.child(name)
    return (place / name).resolve()


def lock_folder(prefix: ObjectURI, environ: Mapping[str, str] | None = None) -> Path:
    """A local folder standing in for an ``s3://`` output folder (it holds the batch lock:
    one run per prefix at a time on this machine)."""
    from . import paths

    digest = hashlib.sha256(str(prefix).encode()).hexdigest()[:20]
    return paths.data_dir(environ) / "batches" / digest


def staging_folder(environ: Mapping[str, str] | None = None) -> Path:
    """Where videos bound for object storage are downloaded and verified before the upload."""
    from . import paths

    return paths.data_dir(environ) / "uploads"


# -- checks before paying -------------------------------------------------------------------


def check(
    target: Target,
    *,
    inputs: Sequence[str | Path] = (),
    force: bool = False,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Refuse a target the video must not or cannot go to; call before any paid call.

    A local file: :func:`reelgen.outputs.check_target`. An object: OutputExists when it exists
    and ``force`` is false; InvalidRequest when its bucket does not exist; ConfigError when
    boto3 is missing, the endpoint cannot be reached or the credentials are refused.
    """
    if isinstance(target, Path):
        check_target(target, inputs=inputs, force=force)
        return
    s3 = s3_client(environ)
    try:
        found = _head(s3, target) is not None
    except _Denied as denied:
        if force:
            return  # keys that may only write cannot look: --force uploads without looking
        raise ConfigError(
            f"cannot tell whether {target} exists at {_endpoint(s3)}: {denied.why}; for keys "
            "that may only write, --force uploads without looking (nothing was sent)"
        ) from None
    except _Failed as failed:
        raise _planning_error(target, failed, s3) from None
    if found:
        if not force:
            raise OutputExists(
                f"{target} exists; pass --force to overwrite it, or choose another output"
            )
        return
    _check_bucket(s3, target)  # no such object: is there a bucket to put it in?


def check_folder(place: Path | ObjectURI, *, environ: Mapping[str, str] | None = None) -> None:
    """Refuse a batch's output folder that cannot take videos, before anything is paid: a local
    folder that cannot hold files, or a bucket that does not exist or cannot be reached."""
    if isinstance(place, Path):
        check_target(place / ".reelgen-probe.mp4")
        return
    _check_bucket(s3_client(environ), place)


def exists(target: Target, environ: Mapping[str, str] | None = None) -> bool:
    """Whether something is at ``target`` (a file, or an object)."""
    if isinstance(target, Path):
        return target.exists()
    s3 = s3_client(environ)
    try:
        return _head(s3, target) is not None
    except _Failed as failed:
        raise _planning_error(target, failed, s3) from None


def intact(job: Job, target: Target, environ: Mapping[str, str] | None = None) -> bool:
    """``target`` holds the job's saved video, with the size and sha256 recorded when saved
    (an object is checked by its length and the sha256 stored with it at upload; keys that
    may only write cannot look, and then the job log's word stands)."""
    if job.state != "succeeded" or job.output is None or parse(job.output) != target:
        return False
    if isinstance(target, ObjectURI):
        s3 = s3_client(environ)
        try:
            head = _head(s3, target)
        except _Denied:
            return True  # keys that may only write cannot look: the job log's word stands
        except _Failed as failed:
            raise _planning_error(target, failed, s3) from None
        return (
            head is not None
            and head.get("ContentLength") == job.meta.size
            and head.get("Metadata", {}).get("sha256") == job.meta.sha256
        )
    if not target.is_file() or target.stat().st_size != job.meta.size:
        return False
    return sha256_of(target) == job.meta.sha256


# -- saving ---------------------------------------------------------------------------------


async def save(
    url: str,
    target: Target,
    *,
    job: Job,
    client: httpx.AsyncClient,
    waiter: Waiter,
    environ: Mapping[str, str] | None = None,
    placing: Callable[[int, str], None] | None = None,
) -> Stored:
    """Download the video at ``url`` to ``target`` (streamed, resumable, verified); for an
    object, to a local staging file first, then upload that and remove it.

    Raises DownloadError when the download fails, and UploadError (the verified copy kept,
    the message saying where and how to upload it later) when the upload does. Nothing here
    writes the job log.
    """
    if isinstance(target, Path):
        saved = await download_to(
            url, target, client=client, waiter=waiter, tag=job.id, placing=placing
        )
        return Stored(str(saved.path), saved.size, saved.sha256)
    await asyncio.to_thread(_check_not_foreign, job, target, environ)
    local = _staged(job.id, environ)
    if local is None:
        staging = staging_folder(environ) / f"{job.id}.mp4"
        saved = await download_to(url, staging, client=client, waiter=waiter, tag=job.id)
        local = saved.path.with_name(f"{job.id}.sha256-{saved.sha256}.mp4")
        os.replace(saved.path, local)
    size, digest = local.stat().st_size, _digest_in_name(local)

    async def attempt() -> None:
        try:
            s3 = s3_client(environ)
        except ConfigError as exc:
            raise UploadError(str(exc), retryable=False) from _NoSetup(str(exc), retryable=False)
        await asyncio.to_thread(_put, s3, local, target, size, digest, job.id)

    try:
        await waiter.retry(
            f"upload {target}",
            attempt,
            attempts=UPLOAD_ATTEMPTS,
            deadline=min(POLL_OUTAGE, waiter.policy.deadline),
        )
    except UploadError as err:
        when = err.__cause__.when if isinstance(err.__cause__, _Failed) else "again"
        raise err.with_hint(
            f"; the verified video is kept at {local}, and `reelgen download {job.id} -o "
            f"{target}` uploads it {when}",
            prefix=f"could not upload to {target}: ",
        ) from err.__cause__
    local.unlink(missing_ok=True)  # the object is verified: the local copy has done its job
    return Stored(str(target), size, digest)


def hint(job_id: str, target: ObjectURI, err: DownloadError) -> str:
    """How to pick up a job whose video could not be saved to ``target``."""
    if isinstance(err, UploadError):
        return ""  # the upload's own message says where the video is and how to retry
    if err.retryable:
        return f"; nothing is lost, `reelgen download {job_id} -o {target}` tries again"
    return ""


_clients: dict[tuple[str | None, ...], Any] = {}
_clients_lock = threading.Lock()
_buckets_seen: dict[tuple[int, str], float] = {}


def s3_client(environ: Mapping[str, str] | None = None) -> Any:
    """A boto3 S3 client for the AWS settings in ``environ`` (default the process's); what is
    not set there comes from boto3's own chain (profiles, config files, instance roles)."""
    env = os.environ if environ is None else environ
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError
    except ImportError:
        raise ConfigError(f"s3:// outputs need boto3, which is not installed: {INSTALL}") from None
    key_id, secret = env.get("AWS_ACCESS_KEY_ID") or None, env.get("AWS_SECRET_ACCESS_KEY") or None
    if not (key_id and secret):
        key_id = secret = None  # half a key pair: let boto3's chain find a whole one
    settings = (
        env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
        key_id,
        secret,
        env.get("AWS_SESSION_TOKEN") or None if key_id else None,
        env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        env.get("AWS_PROFILE") or None,
    )
    with _clients_lock:
        if settings not in _clients:
            endpoint, key_id, secret, token, region, profile = settings
            try:
                session = boto3.session.Session(profile_name=profile, region_name=region)
                _clients[settings] = session.client(
                    "s3",
                    endpoint_url=endpoint,
                    aws_access_key_id=key_id,
                    aws_secret_access_key=secret,
                    aws_session_token=token,
                    config=Config(
                        retries={"mode": "standard"},
                        connect_timeout=10,
                        read_timeout=60,
                        user_agent_extra="reelgen",
                    ),
                )
            except (BotoCoreError, ValueError) as exc:  # no such AWS_PROFILE, a bad endpoint URL
                raise ConfigError(f"cannot set up S3 access: {exc}") from None
        return _clients[settings]


# -- the S3 calls ---------------------------------------------------------------------------


class _Failed(Exception):
    """An S3 call failed: ``why`` in one line, whether trying again may help, and when a
    later upload can work (the end of the retry hint)."""

    when = "again"

    def __init__(self, why: str, *, retryable: bool) -> None:
        super().__init__(why)
        self.why = why
        self.retryable = retryable


class _Denied(_Failed):
    """The credentials were refused, or lack the permission."""

    when = "once the keys may write there"


class _NoBucket(_Failed):
    """The bucket does not exist."""

    when = "once the bucket exists"


class _NoCredentials(_Failed):
    """boto3 found no credentials."""

    when = "once credentials are set"


class _NoSetup(_Failed):
    """S3 access cannot be set up here (boto3 missing, an AWS setting that cannot work)."""

    when = "once that is fixed"


def _check_bucket(s3: Any, where: ObjectURI) -> None:
    """Refuse ``where`` when its bucket does not exist or cannot be reached (before paying)."""
    seen = (id(s3), where.bucket)
    if _buckets_seen.get(seen, -BUCKET_SEEN_FOR) + BUCKET_SEEN_FOR > time.monotonic():
        return  # a batch checks its bucket once, not once per line
    try:
        s3.head_bucket(Bucket=where.bucket)
    except Exception as exc:
        failed = _classify(exc)
        if isinstance(failed, _Denied):
            return  # keys that may write without listing the bucket: the upload will tell
        raise _planning_error(where, failed, s3) from None
    _buckets_seen[seen] = time.monotonic()


def _head(s3: Any, uri: ObjectURI) -> dict[str, Any] | None:
    """The object's HEAD (length, metadata), or None when there is none; raises _Failed."""
    try:
        head: dict[str, Any] = s3.head_object(Bucket=uri.bucket, Key=uri.key)
    except Exception as exc:
        if _status(exc) == 404:
            return None  # no such object, or no such bucket: the bucket check tells which
        raise _classify(exc) from exc
    return head


def _put(s3: Any, local: Path, uri: ObjectURI, size: int, digest: str, job_id: str) -> None:
    """Upload ``local`` to ``uri`` from disk, then check the stored length (in a thread)."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4
    )
    extra = {"ContentType": "video/mp4", "Metadata": {"sha256": digest, "reelgen-job": job_id}}
    try:
        try:
            s3.upload_file(str(local), uri.bucket, uri.key, ExtraArgs=extra, Config=config)
        except Exception as exc:
            raise _classify(exc) from exc
        head = _head(s3, uri)
    except _Failed as failed:
        raise UploadError(failed.why, retryable=failed.retryable) from failed
    if head is None:
        raise UploadError(f"{uri} is not there right after the upload", retryable=True)
    if head.get("ContentLength") != size:
        raise UploadError(
            f"{uri} holds {head.get('ContentLength')} bytes after the upload, not {size}",
            retryable=True,
        )


def _check_not_foreign(job: Job, uri: ObjectURI, environ: Mapping[str, str] | None) -> None:
    """An object that appeared at the target after the job was planned is not overwritten
    unless the user allowed it. Anything else that goes wrong here is left for the upload to
    report, after the paid video is safe on disk."""
    if job.meta.overwrite:
        return
    try:
        head = _head(s3_client(environ), uri)
    except (_Failed, ConfigError):
        return
    if head is None or head.get("Metadata", {}).get("reelgen-job") == job.id:
        return  # nothing there, or this job's own earlier upload
    raise OutputExists(
        f"{uri} exists and is not job {job.id}'s video; `reelgen download {job.id} --force` "
        f"replaces it, or `-o s3://BUCKET/OTHER.mp4` saves elsewhere (nothing is lost)",
        job_id=job.id,
    )


def _staged(job_id: str, environ: Mapping[str, str] | None) -> Path | None:
    """A verified copy an earlier, failed upload of ``job_id`` left, if it is still intact."""
    folder_ = staging_folder(environ)
    if not folder_.is_dir():
        return None
    for candidate in sorted(folder_.glob(f"{job_id}.sha256-*.mp4")):
        if sha256_of(candidate) == _digest_in_name(candidate):
            return candidate
        candidate.unlink(missing_ok=True)  # damaged since: download it again
    return None


def _digest_in_name(local: Path) -> str:
    return local.name.rsplit(".sha256-", 1)[1].removesuffix(".mp4")


def _bucket_of(exc: BaseException) -> str:
    """The bucket a ClientError names (with a space after it), or ""."""
    name = getattr(exc, "response", {}).get("Error", {}).get("BucketName")
    return f"{name} " if isinstance(name, str) and name else ""


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None


def _classify(exc: BaseException) -> _Failed:
    """One line for what went wrong with an S3 call, and whether to try again."""
    from boto3.exceptions import S3UploadFailedError
    from botocore import exceptions as boto

    if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
        exc = exc.__context__  # upload_file wraps the client's error in a message
    if isinstance(exc, (boto.NoCredentialsError, boto.PartialCredentialsError)):
        return _NoCredentials(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
            retryable=False,
        )
    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = _status(exc)
        detail = error.get("Message") or code or f"HTTP {status}"
        if code == "NoSuchBucket" or (code == "404" and exc.operation_name == "HeadBucket"):
            return _NoBucket(f"the bucket {_bucket_of(exc)}does not exist", retryable=False)
        if code in _DENIED_CODES or status == 403:
            return _Denied(
                f"access denied ({code or status}: {detail}); check AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY and the key's permissions",
                retryable=False,
            )
        transient = code in _TRANSIENT_CODES or (status is not None and status >= 500)
        return _Failed(f"the storage answered {code or status}: {detail}", retryable=transient)
    if isinstance(
        exc,
        (
            boto.EndpointConnectionError,
            boto.ConnectTimeoutError,
            boto.ReadTimeoutError,
            boto.ConnectionClosedError,
        ),
    ):
        return _Failed(f"cannot reach the storage: {exc}", retryable=True)
    if isinstance(exc, boto.BotoCoreError):
        return _Failed(f"{exc.__class__.__name__}: {exc}", retryable=False)
    if isinstance(exc, OSError):
        return _Failed(f"cannot read the video: {exc.strerror or exc}", retryable=False)
    raise exc  # not an S3 failure: a bug, with its traceback


def _planning_error(where: ObjectURI, failed: _Failed, s3: Any) -> InvalidRequest | ConfigError:
    """A check before paying failed: the user must change something (nothing was sent)."""
    if isinstance(failed, _NoBucket):
        return InvalidRequest(
            f"cannot save to {where}: the bucket {where.bucket} does not exist at "
            f"{_endpoint(s3)}; create it, or choose another output (nothing was sent)"
        )
    return ConfigError(f"cannot check {where} at {_endpoint(s3)}: {failed.why}; nothing was sent")


def _endpoint(s3: Any) -> str:
    """The endpoint a client talks to (the AWS_ENDPOINT_URL in effect, or AWS's own)."""
    return str(getattr(getattr(s3, "meta", None), "endpoint_url", "") or "AWS S3")
