"""The download handler on both runtimes: files behind the local Jobs service's presigned URLs, through the runner."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device import RUNTIMES, Run, run
from localjobs.model import thing_arn
from localjobs.service import JobsService
from test_runner import RUNNER_HEAP, SCRIPT

BUCKET = "firmware"
PLACEHOLDER = "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/%s/%s}"


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def thing_name() -> str:
    return "dl-" + uuid.uuid4().hex[:12]


@pytest.fixture
def service(mosquitto: Any, thing_name: str, tmp_path: Path) -> Iterator[JobsService]:
    """A Jobs service whose S3 stand-in is tmp_path/files, serving presigned URLs over HTTP."""
    (tmp_path / "files" / BUCKET).mkdir(parents=True)
    jobs = JobsService(mosquitto.host, mosquitto.port, http=("127.0.0.1", 0), files=tmp_path / "files").start()
    jobs.create_thing(thing_name)
    try:
        yield jobs
    finally:
        jobs.stop()


def put(tmp_path: Path, key: str, data: bytes) -> str:
    (tmp_path / "files" / BUCKET / key).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def board(runtime: str, mosquitto: Any, thing: str, state: Path, *args: str, heapsize: str = RUNNER_HEAP) -> Run:
    done = run(runtime, SCRIPT, "download", mosquitto.host, str(mosquitto.port), thing, str(state), *args,
               heapsize=heapsize)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def history(service: JobsService, thing: str, job_id: str) -> list[dict[str, Any]]:
    return service.history(thing, job_id)


def test_download_with_good_sha256_succeeds_with_percent_progress(runtime, mosquitto, service, thing_name, tmp_path):
    data = os.urandom(100_000)
    digest = put(tmp_path, "app.bin", data)
    target = tmp_path / "device" / "app.bin"
    target.parent.mkdir()
    service.create_job("job-dl", [thing_arn(thing_name)],
                       {"operation": "download", "url": PLACEHOLDER % (BUCKET, "app.bin"),
                        "path": str(target), "sha256": digest})
    done = board(runtime, mosquitto, thing_name, tmp_path / "device")
    assert done["states"] == ["idle", "running", "succeeded"]
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["app.bin"], "no .part or state file left"
    changes = history(service, thing_name, "job-dl")
    assert changes[-1]["statusDetails"] == {"path": str(target), "size": "100000", "sha256": digest}
    percents = [c["statusDetails"].get("progress") for c in changes if c["status"] == "IN_PROGRESS"]
    assert percents == [None, None, "0%", "10%", "20%", "30%", "40%", "50%", "60%", "70%", "80%", "90%", "100%"]
    assert all(c["statusDetails"].get("checkpoint") == "downloading" for c in changes[3:-1])


def test_download_with_bad_sha256_fails_and_leaves_the_old_file(runtime, mosquitto, service, thing_name, tmp_path):
    put(tmp_path, "app.bin", b"new firmware" * 1000)
    target = tmp_path / "device" / "app.bin"
    target.parent.mkdir()
    target.write_bytes(b"old firmware")
    wrong = "0" * 64
    service.create_job("job-bad", [thing_arn(thing_name)],
                       {"operation": "download", "url": PLACEHOLDER % (BUCKET, "app.bin"),
                        "path": str(target), "sha256": wrong})
    done = board(runtime, mosquitto, thing_name, tmp_path / "device")
    assert done["states"] == ["idle", "running", "failed"]
    failed = history(service, thing_name, "job-bad")[-1]
    assert failed["status"] == "FAILED"
    assert failed["statusDetails"]["error"] == "DownloadError"
    assert failed["statusDetails"]["message"].startswith("SHA-256 mismatch: expected " + wrong)
    assert target.read_bytes() == b"old firmware"
    assert sorted(p.name for p in target.parent.iterdir()) == ["app.bin"]


def test_download_larger_than_the_heap(runtime, mosquitto, service, thing_name, tmp_path):
    heap = int(RUNNER_HEAP.rstrip("k")) * 1024
    data = os.urandom(4 * heap)
    digest = put(tmp_path, "big.bin", data)
    target = tmp_path / "device" / "big.bin"
    target.parent.mkdir()
    service.create_job("job-big", [thing_arn(thing_name)],
                       {"operation": "download", "url": PLACEHOLDER % (BUCKET, "big.bin"),
                        "path": str(target), "sha256": digest})
    done = board(runtime, mosquitto, thing_name, tmp_path / "device")
    assert done["states"] == ["idle", "running", "succeeded"], done.stdout
    assert target.stat().st_size == len(data) and hashlib.sha256(target.read_bytes()).hexdigest() == digest


def test_size_limit_is_enforced_before_writing(runtime, mosquitto, service, thing_name, tmp_path):
    digest = put(tmp_path, "huge.bin", b"x" * 50_000)
    target = tmp_path / "device" / "huge.bin"
    target.parent.mkdir()
    service.create_job("job-huge", [thing_arn(thing_name)],
                       {"operation": "download", "url": PLACEHOLDER % (BUCKET, "huge.bin"),
                        "path": str(target), "sha256": digest})
    done = board(runtime, mosquitto, thing_name, tmp_path / "device", "40000")
    assert done["states"] == ["idle", "running", "failed"]
    failed = history(service, thing_name, "job-huge")[-1]["statusDetails"]
    assert failed["message"] == "50000 bytes is more than the limit of 40000"
    assert not target.exists()


def test_missing_object_fails_without_leaking_the_signature(runtime, mosquitto, service, thing_name, tmp_path):
    target = tmp_path / "device" / "none.bin"
    target.parent.mkdir()
    service.create_job("job-404", [thing_arn(thing_name)],
                       {"operation": "download", "url": PLACEHOLDER % (BUCKET, "none.bin"),
                        "path": str(target)})
    board(runtime, mosquitto, thing_name, tmp_path / "device")
    failed = history(service, thing_name, "job-404")[-1]
    assert failed["status"] == "FAILED"
    assert failed["statusDetails"]["message"] == "HTTP 404 from 127.0.0.1/presigned/firmware/none.bin"
    assert "signature" not in failed["statusDetails"]["message"]


def test_aws_download_file_template_document(runtime, mosquitto, service, thing_name, tmp_path):
    # The document AWS-Download-File makes, its parameters filled in.
    data = b"settings v2\n" * 100
    put(tmp_path, "settings.txt", data)
    target = tmp_path / "device" / "settings.txt"
    target.parent.mkdir()
    document = {"version": "1.0", "steps": [{"action": {
        "name": "Download-File", "type": "runHandler", "runAsUser": "root",
        "input": {"handler": "download-file.sh", "path": "default",
                  "args": [PLACEHOLDER % (BUCKET, "settings.txt"), str(target)]}}}]}
    service.create_job("job-aws", [thing_arn(thing_name)], document)
    done = board(runtime, mosquitto, thing_name, tmp_path / "device")
    assert done["states"] == ["idle", "running", "succeeded"]
    assert target.read_bytes() == data
    # Without a sha256 in the document, the device reports the one it computed.
    assert history(service, thing_name, "job-aws")[-1]["statusDetails"]["sha256"] == hashlib.sha256(data).hexdigest()
