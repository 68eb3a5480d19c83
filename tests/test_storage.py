"""Videos saved to S3-compatible object storage (``-o s3://BUCKET/KEY``, ``--out-dir
s3://BUCKET/PREFIX``), against a real local S3 server (moto's, on 127.0.0.1): what lands in the
bucket is the verified video the job log describes, bad targets are refused before anything is
paid, and an upload that fails after paying loses nothing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result

from reelgen import storage
from reelgen.errors import UploadError
from reelgen.models import Job, VideoRequest
from reelgen.testing import FakeTimer
from reelgen.waiting import Waiter
from tests.cli_helpers import Cli, json_lines, refused, stored, write_manifest
from tests.fake_kling import FakeKling

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])

SMALL_LOCAL = "[providers.local]\nheight = 144   # small previews keep the tests fast\n"


@pytest.fixture
def s3(s3_bucket: str, s3_server: str) -> Any:
    """A boto3 client on the test server, to look at (and arrange) what the bucket holds."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@pytest.fixture
def small_local(isolated: Path) -> None:
    """The offline provider renders small clips (fast tests)."""
    (isolated / "config.toml").write_text(SMALL_LOCAL)


def body(s3: Any, bucket: str, key: str) -> bytes:
    data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def keys(s3: Any, bucket: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def job_id_of(result: Result) -> str:
    found = re.search(r"\b(rg-[0-9a-f]+)\b", result.stdout + result.stderr)
    assert found, result.output + result.stderr
    return found.group(1)


def local_leftovers(isolated: Path) -> list[Path]:
    """What an upload left on this machine: files in the staging folder, and videos or parts
    in the working folder (the local provider's own renders, under REELGEN_HOME/local, are
    its "CDN", not ours)."""
    staged = storage.staging_folder()
    assert staged.parent == isolated
    left = list(staged.rglob("*")) if staged.exists() else []
    return left + [p for p in Path.cwd().rglob("*") if p.suffix in (".mp4", ".part")]


def one_error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output + result.stderr
    return lines[0]


# -- generate -o s3:// -------------------------------------------------------------------------


def test_generate_uploads_the_verified_video_and_records_its_uri(
    cli: Cli, s3: Any, s3_bucket: str, small_local: None, make_image, isolated: Path
) -> None:
    """`generate -P local -o s3://B/clips/clip.mp4` exits 0 printing the URI; the object's bytes
    have the size and sha256 the job log records, the job's output is the URI, and no local
    copy is left behind."""
    uri = f"s3://{s3_bucket}/clips/clip.mp4"
    result = cli("generate", str(make_image()), "-p", "slow zoom", "-P", "local", "-o", uri)
    assert result.exit_code == 0, result.output + result.stderr
    assert f"saved {uri}" in result.stdout
    job = stored(job_id_of(result))
    data = body(s3, s3_bucket, "clips/clip.mp4")
    assert len(data) > 1000
    assert (job.state, job.output) == ("succeeded", uri)
    assert (job.meta.size, job.meta.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert keys(s3, s3_bucket) == ["clips/clip.mp4"]
    assert local_leftovers(isolated) == []


def test_the_library_output_takes_an_s3_uri(
    s3: Any, s3_bucket: str, small_local: None, make_image
) -> None:
    """`reelgen.generate(..., output="s3://B/lib.mp4")` uploads the clip and returns the URI as
    the video's path, with its sha256."""
    import reelgen

    uri = f"s3://{s3_bucket}/lib.mp4"
    result = reelgen.generate(
        image=str(make_image()), prompt="waves", provider="local", output=uri, duration=1
    )
    video = result.videos[0]
    data = body(s3, s3_bucket, "lib.mp4")
    assert video.path == uri
    assert video.sha256 == hashlib.sha256(data).hexdigest()


def test_an_existing_object_is_refused_before_paying_and_force_replaces_it(
    cli: Cli, s3: Any, s3_bucket: str, fake_kling: FakeKling, make_image
) -> None:
    """-o s3://B/clip.mp4 over an existing object: exit 2, one line naming --force, nothing
    sent to Kling, the object untouched; with --force the clip replaces it (paid once)."""
    s3.put_object(Bucket=s3_bucket, Key="clip.mp4", Body=b"somebody's own video")
    uri = f"s3://{s3_bucket}/clip.mp4"
    image = make_image()

    result = cli("generate", str(image), "-p", "waves", "-P", "kling", "-o", uri)
    refused(result, fake_kling, "exists", "--force", uri)
    assert body(s3, s3_bucket, "clip.mp4") == b"somebody's own video"

    forced = cli("generate", str(image), "-p", "waves", "-P", "kling", "-o", uri, "--force")
    assert forced.exit_code == 0, forced.output + forced.stderr
    assert body(s3, s3_bucket, "clip.mp4") == fake_kling.video
    assert fake_kling.creates_accepted == 1


@pytest.mark.parametrize(
    ("output", "says"),
    [
        ("s3://", "names no bucket"),
        ("s3:///clip.mp4", "names no bucket"),
        ("s3://{bucket}", "names no object"),
        ("s3://{bucket}/", "names no object"),
        ("s3://{bucket}/clips/", "ends with '/'"),
        ("s3://Not_A_Bucket/clip.mp4", "is not a bucket name"),
        ("s3://{bucket}//clip.mp4", "starts with '/'"),
        ("s3://reelgen-no-such-bucket-4f1c/clip.mp4", "does not exist"),
        ("gs://{bucket}/clip.mp4", "local paths or s3://"),
    ],
)
def test_bad_s3_targets_are_refused_before_paying(
    cli: Cli, s3_bucket: str, fake_kling: FakeKling, make_image, output: str, says: str
) -> None:
    """A malformed s3:// output, a key that is a folder, or a bucket that does not exist: exit
    2 with one line saying what is wrong, and nothing sent to Kling."""
    target = output.format(bucket=s3_bucket)
    result = cli("generate", str(make_image()), "-p", "waves", "-P", "kling", "-o", target)
    refused(result, fake_kling, says)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("AWS_PROFILE", "reelgen-no-such-profile"), ("AWS_ENDPOINT_URL", "not a url")],
)
def test_aws_settings_that_cannot_work_are_refused_before_paying(
    cli: Cli,
    s3_bucket: str,
    fake_kling: FakeKling,
    make_image,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
) -> None:
    """An AWS_PROFILE that does not exist or an AWS_ENDPOINT_URL that is not a URL: exit 2,
    one line saying S3 cannot be set up, nothing sent to Kling."""
    monkeypatch.setenv(variable, value)
    uri = f"s3://{s3_bucket}/clip.mp4"
    result = cli("generate", str(make_image()), "-p", "waves", "-P", "kling", "-o", uri)
    refused(result, fake_kling, "cannot set up S3 access")


def test_without_boto3_an_s3_output_says_how_to_install_it(
    cli: Cli, fake_kling: FakeKling, make_image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without boto3, -o s3://... is refused before paying with one line naming
    `pip install "reelgen[s3]"`."""
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 -> ImportError
    uri = "s3://some-bucket/clip.mp4"
    result = cli("generate", str(make_image()), "-p", "waves", "-P", "kling", "-o", uri)
    refused(result, fake_kling, 'pip install "reelgen[s3]"')


# -- failures after paying -----------------------------------------------------------------


def test_a_missing_bucket_after_paying_keeps_the_video_and_download_uploads_it_later(
    cli: Cli, s3: Any, s3_bucket: str, fake_kling: FakeKling, make_image, isolated: Path
) -> None:
    """The bucket vanishes while Kling runs the job: `wait` fails with one line (exit 1) naming
    where the verified video is kept and the `reelgen download JOB -o s3://...` that uploads
    it; the job stays `result`. Once the bucket exists again that command uploads the kept
    copy (not downloaded again, not paid again) and leaves no local file behind."""
    uri = f"s3://{s3_bucket}/clip.mp4"
    submitted = cli(
        "generate", str(make_image()), "-p", "waves", "-P", "kling", "-o", uri, "--no-wait"
    )
    assert submitted.exit_code == 0, submitted.output + submitted.stderr
    job_id = job_id_of(submitted)
    s3.delete_bucket(Bucket=s3_bucket)

    failed = cli("wait", job_id)
    assert failed.exit_code == 1, failed.output + failed.stderr
    line = one_error_line(failed)
    assert "does not exist" in line and "kept at" in line
    assert f"`reelgen download {job_id} -o {uri}`" in line
    assert stored(job_id).state == "result"
    kept_at = re.search(r"kept at (\S+),", line)
    assert kept_at is not None, line
    assert Path(kept_at.group(1)).read_bytes() == fake_kling.video
    assert fake_kling.downloads == 1

    s3.create_bucket(Bucket=s3_bucket)
    again = cli("download", job_id, "-o", uri)
    assert again.exit_code == 0, again.output + again.stderr
    assert f"saved {uri}" in again.stdout
    job = stored(job_id)
    assert (job.state, job.output) == ("succeeded", uri)
    assert body(s3, s3_bucket, "clip.mp4") == fake_kling.video
    assert job.meta.sha256 == hashlib.sha256(fake_kling.video).hexdigest()
    assert (fake_kling.downloads, fake_kling.creates_accepted) == (1, 1)
    assert local_leftovers(isolated) == []


def test_an_object_deleted_after_saving_is_uploaded_again_without_paying(
    cli: Cli, s3: Any, s3_bucket: str, fake_kling: FakeKling, make_image
) -> None:
    """`reelgen wait JOB` on a saved job whose object was deleted puts it back (checked by the
    size and sha256 stored with it); the job is not paid for again."""
    uri = f"s3://{s3_bucket}/clip.mp4"
    done = cli("generate", str(make_image()), "-p", "waves", "-P", "kling", "-o", uri)
    assert done.exit_code == 0, done.output + done.stderr
    job_id = job_id_of(done)
    s3.delete_object(Bucket=s3_bucket, Key="clip.mp4")

    again = cli("wait", job_id)
    assert again.exit_code == 0, again.output + again.stderr
    assert body(s3, s3_bucket, "clip.mp4") == fake_kling.video
    assert fake_kling.creates_accepted == 1
    assert stored(job_id).output == uri


def test_a_video_larger_than_one_part_arrives_whole(
    s3: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated: Path
) -> None:
    """A video bigger than the upload's part size goes up as a multipart upload from disk and
    arrives byte for byte, its sha256 stored with it; the temp copy is removed."""
    monkeypatch.setattr(storage, "PART_SIZE", 5 * 1024 * 1024)  # S3's smallest part
    video = tmp_path / "big.mp4"
    video.write_bytes(os.urandom(11 * 1024 * 1024 + 17))  # three parts, the last one short
    job = Job(id="rg-big", provider="local", request=VideoRequest(prompt="x"), idempotency_key="k")
    target = storage.parse(f"s3://{s3_bucket}/big.mp4")

    async def save() -> storage.Stored:
        async with httpx.AsyncClient() as client:
            return await storage.save(
                str(video), target, job=job, client=client, waiter=Waiter(timer=FakeTimer())
            )

    saved = asyncio.run(save())
    data = body(s3, s3_bucket, "big.mp4")
    digest = hashlib.sha256(data).hexdigest()
    assert data == video.read_bytes()
    assert (saved.output, saved.size, saved.sha256) == (str(target), len(data), digest)
    head = s3.head_object(Bucket=s3_bucket, Key="big.mp4")
    assert head["Metadata"]["sha256"] == digest
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload's ETag counts its parts
    assert local_leftovers(isolated) == []


def test_transient_upload_failures_are_retried(
    cli: Cli,
    s3: Any,
    s3_bucket: str,
    small_local: None,
    make_image,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Storage that fails twice with a transient error (a 503, say) still gets the video:
    the upload is tried again and the command exits 0."""
    real_put = storage._put
    calls: list[int] = []

    def flaky(*args: Any) -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise UploadError("the storage answered 503: Slow Down", retryable=True)
        real_put(*args)

    monkeypatch.setattr(storage, "_put", flaky)
    uri = f"s3://{s3_bucket}/flaky.mp4"
    result = cli("generate", str(make_image()), "-p", "x", "-P", "local", "-o", uri)
    assert result.exit_code == 0, result.output + result.stderr
    assert len(calls) == 3
    assert keys(s3, s3_bucket) == ["flaky.mp4"]


# -- batch --out-dir s3:// -----------------------------------------------------------------


@pytest.fixture
def local_batch(monkeypatch: pytest.MonkeyPatch, small_local: None) -> Iterator[None]:
    monkeypatch.setenv("REELGEN_PROVIDER", "local")
    yield


def test_batch_puts_one_object_per_line_and_a_rerun_skips_them(
    cli: Cli,
    s3: Any,
    s3_bucket: str,
    local_batch: None,
    make_image,
    tmp_path: Path,
    isolated: Path,
) -> None:
    """`batch --out-dir s3://B/shots` puts shots/<id>.mp4 for every line, each the verified
    video its job records; rerunning the same command finds them intact and makes nothing
    again; no local copies are left."""
    manifest = write_manifest(tmp_path / "m.jsonl", make_image(), "a", "b", "c")
    out = f"s3://{s3_bucket}/shots"
    first = cli("batch", str(manifest), "--out-dir", out, "--json")
    assert first.exit_code == 0, first.output + first.stderr
    assert keys(s3, s3_bucket) == ["shots/a.mp4", "shots/b.mp4", "shots/c.mp4"]
    for line in json_lines(first):
        key = f"shots/{line['id']}.mp4"
        assert line["state"] == "succeeded"
        assert line["output"] == f"s3://{s3_bucket}/{key}"
        job = stored(line["job_id"])
        data = body(s3, s3_bucket, key)
        assert (job.meta.size, job.meta.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert local_leftovers(isolated) == []

    rerun = cli("batch", str(manifest), "--out-dir", out, "--json")
    assert rerun.exit_code == 0, rerun.output + rerun.stderr
    assert "3 already done" in rerun.stderr
    assert {line["state"] for line in json_lines(rerun)} == {"skipped"}


def test_batch_refuses_an_existing_object_before_paying(
    cli: Cli,
    s3: Any,
    s3_bucket: str,
    fake_kling: FakeKling,
    make_image,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A line whose s3://B/out/<id>.mp4 already exists (not this batch's) stops the batch before
    anything is sent, naming the line and --force; the object is untouched."""
    monkeypatch.setenv("REELGEN_PROVIDER", "kling")
    s3.put_object(Bucket=s3_bucket, Key="out/b.mp4", Body=b"keep me")
    manifest = write_manifest(tmp_path / "m.jsonl", make_image(), "a", "b")
    result = cli(
        "batch", str(manifest), "--out-dir", f"s3://{s3_bucket}/out", "--yes", "--max-cost", "5"
    )
    assert result.exit_code == 2, result.output + result.stderr
    assert "(b)" in result.stderr and "exists" in result.stderr and "--force" in result.stderr
    assert fake_kling.requests == [] and fake_kling.creates_accepted == 0
    assert body(s3, s3_bucket, "out/b.mp4") == b"keep me"


def test_batch_refuses_a_missing_bucket_before_paying(
    cli: Cli, s3_bucket: str, fake_kling: FakeKling, make_image, tmp_path: Path
) -> None:
    """`batch --out-dir s3://no-such-bucket/...`: one line saying the bucket does not exist,
    exit 2, nothing sent."""
    manifest = write_manifest(tmp_path / "m.jsonl", make_image(), "a")
    result = cli("batch", str(manifest), "--out-dir", "s3://reelgen-no-such-bucket-77/x")
    refused(result, fake_kling, "does not exist")


@pytest.mark.parametrize(
    ("error", "retryable", "says"),
    [
        ({"Code": "NoSuchBucket", "BucketName": "gone"}, False, "bucket gone does not exist"),
        ({"Code": "AccessDenied", "Message": "Access Denied"}, False, "AWS_ACCESS_KEY_ID"),
        ({"Code": "InvalidAccessKeyId"}, False, "access denied"),
        ({"Code": "SlowDown", "Message": "Please reduce"}, True, "SlowDown"),
        ({"Code": "InternalError"}, True, "InternalError"),
        ({"Code": "EntityTooLarge"}, False, "EntityTooLarge"),
    ],
)
def test_storage_answers_are_told_apart(error: dict[str, str], retryable: bool, says: str) -> None:
    """What S3 answers decides what the user reads and whether reelgen tries again: a missing
    bucket and refused keys are final and named, throttling and 5xx are retried."""
    from botocore.exceptions import ClientError

    status = 503 if retryable else 400
    exc = ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")
    failed = storage._classify(exc)
    assert failed.retryable is retryable
    assert says in failed.why


def test_unreachable_storage_and_missing_keys_are_told_apart() -> None:
    """A storage that cannot be reached is retried; no credentials at all is final and names
    the AWS settings that fix it."""
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    down = storage._classify(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert down.retryable and "cannot reach" in down.why
    keyless = storage._classify(NoCredentialsError())
    assert not keyless.retryable and "AWS_ACCESS_KEY_ID" in keyless.why
