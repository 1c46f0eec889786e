"""Timers, rollouts, abort, CONTINUOUS jobs with thing groups, documents and the SQLite store, on a ManualClock."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localjobs.clock import ManualClock
from localjobs.documents import Documents
from localjobs.model import ApiError, JobsModel, thing_arn
from localjobs.service import JobsService
from localjobs.store import Store

DOC = {"operation": "update"}
GROUP = "arn:aws:iot:us-east-1:123456789012:thinggroup/"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def model(clock: ManualClock) -> JobsModel:
    model = JobsModel(clock)
    for n in range(6):
        model.create_thing(f"t{n}")
    return model


def statuses(model: JobsModel, job_id: str) -> dict[str, str]:
    return {
        e["thingArn"].rsplit("/", 1)[1]: e["jobExecutionSummary"]["status"]
        for e in model.list_job_executions_for_job(job_id)
    }


def notes(model: JobsModel) -> list[tuple[str, str]]:
    return [(n.thing, n.kind) for n in model.take_notifications()]


# ---- timers ------------------------------------------------------------------------------------


def test_step_timer_is_replaced_cancelled_and_capped_by_the_in_progress_timer(
    model: JobsModel, clock: ManualClock
) -> None:
    model.create_job("j1", [thing_arn("t0")], DOC, timeout_config={"inProgressTimeoutInMinutes": 10})
    model.start_next("t0", step_timeout_min=3)
    assert model.describe_job_execution("t0", "j1")["approximateSecondsBeforeTimedOut"] == 180
    clock.advance(120)
    model.update("t0", "j1", "IN_PROGRESS", step_timeout_min=5)  # replaces the step timer: now +300
    assert model.describe_job_execution("t0", "j1")["approximateSecondsBeforeTimedOut"] == 300
    model.update("t0", "j1", "IN_PROGRESS", step_timeout_min=-1)  # cancels it: the in-progress timer remains
    assert model.describe_job_execution("t0", "j1")["approximateSecondsBeforeTimedOut"] == 480
    model.update("t0", "j1", "IN_PROGRESS", step_timeout_min=60)  # never beyond the in-progress deadline
    assert model.describe_job_execution("t0", "j1")["approximateSecondsBeforeTimedOut"] == 480
    clock.advance(479)
    assert model.tick() == []
    clock.advance(1)
    assert model.tick() == [("t0", "j1")]
    assert model.describe_job_execution("t0", "j1")["status"] == "TIMED_OUT"
    assert model.describe_job("j1")["status"] == "COMPLETED"
    assert model.history("t0", "j1")[-1]["cause"] == "timed-out"


# ---- rollouts ----------------------------------------------------------------------------------


def test_maximum_per_minute_releases_executions_minute_by_minute(model: JobsModel, clock: ManualClock) -> None:
    things = [f"t{n}" for n in range(5)]
    model.create_job("j1", [thing_arn(t) for t in things], DOC, rollout_config={"maximumPerMinute": 2})
    assert statuses(model, "j1") == {"t0": "QUEUED", "t1": "QUEUED"}
    assert model.get_pending("t2")["queuedJobs"] == []
    assert ("t2", "notify") not in notes(model)
    assert model.next_deadline() == clock.now() + 60
    clock.advance(59)
    model.tick()
    assert len(statuses(model, "j1")) == 2
    clock.advance(1)
    model.tick()
    assert list(statuses(model, "j1")) == ["t0", "t1", "t2", "t3"]
    assert ("t2", "notify-next") in notes(model)
    # A SNAPSHOT job is not done while things still wait for the rollout.
    for thing in ("t0", "t1", "t2", "t3"):
        model.update(thing, "j1", "SUCCEEDED")
    assert model.describe_job("j1")["status"] == "IN_PROGRESS"
    clock.advance(600)  # a long pause catches up at once
    model.tick()
    model.update("t4", "j1", "SUCCEEDED")
    assert model.describe_job("j1")["status"] == "COMPLETED"


def test_exponential_rate_grows_with_notified_things(model: JobsModel, clock: ManualClock) -> None:
    for n in range(6, 30):
        model.create_thing(f"t{n}")
    rollout = {
        "maximumPerMinute": 8,
        "exponentialRate": {
            "baseRatePerMinute": 2,
            "incrementFactor": 2,
            "rateIncreaseCriteria": {"numberOfNotifiedThings": 2},
        },
    }
    model.create_job("j1", [thing_arn(f"t{n}") for n in range(30)], DOC, rollout_config=rollout)
    released = [len(statuses(model, "j1"))]
    for _ in range(4):
        clock.advance(60)
        model.tick()
        released.append(len(statuses(model, "j1")))
    # 2 in the first minute; each 2 notified double the rate (capped at 8 per minute).
    assert released[0] == 2 and released[1] - released[0] == 4 and released[2] - released[1] == 8
    assert released[3] - released[2] == 8


def test_exponential_rate_grows_with_succeeded_things(model: JobsModel, clock: ManualClock) -> None:
    rollout = {
        "exponentialRate": {
            "baseRatePerMinute": 1,
            "incrementFactor": 3,
            "rateIncreaseCriteria": {"numberOfSucceededThings": 1},
        }
    }
    model.create_job("j1", [thing_arn(f"t{n}") for n in range(6)], DOC, rollout_config=rollout)
    clock.advance(60)
    model.tick()
    assert len(statuses(model, "j1")) == 2  # nothing succeeded: still one a minute
    model.update("t0", "j1", "SUCCEEDED")
    clock.advance(60)
    model.tick()
    assert len(statuses(model, "j1")) == 5  # rate 3


def test_rollout_config_is_validated(model: JobsModel) -> None:
    for bad in (
        {"maximumPerMinute": 0},
        {"exponentialRate": {"baseRatePerMinute": 1, "incrementFactor": 2, "rateIncreaseCriteria": {}}},
        {
            "exponentialRate": {
                "baseRatePerMinute": 1,
                "incrementFactor": 9,
                "rateIncreaseCriteria": {"numberOfNotifiedThings": 1},
            }
        },
    ):
        with pytest.raises(ApiError) as caught:
            model.create_job("bad", [thing_arn("t0")], DOC, rollout_config=bad)
        assert caught.value.code == "InvalidRequest"


# ---- abort -------------------------------------------------------------------------------------


def test_abort_config_cancels_the_job_with_a_reason(model: JobsModel) -> None:
    abort = {
        "criteriaList": [
            {"action": "CANCEL", "failureType": "FAILED", "minNumberOfExecutedThings": 3, "thresholdPercentage": 50}
        ]
    }
    model.create_job("j1", [thing_arn(f"t{n}") for n in range(6)], DOC, abort_config=abort)
    model.start_next("t5")
    model.update("t0", "j1", "FAILED")
    model.update("t1", "j1", "REJECTED")  # 2 executed: below the minimum
    model.update("t2", "j1", "SUCCEEDED")  # 1 FAILED of 3 executed (REJECTED is not FAILED): 33%
    assert model.describe_job("j1")["status"] == "IN_PROGRESS"
    notes(model)
    model.update("t3", "j1", "FAILED")  # 2 of 4: 50%
    job = model.describe_job("j1")
    assert (job["status"], job["reasonCode"]) == ("CANCELED", "ABORT_CRITERIA_MET") and "FAILED" in job["comment"]
    # Queued executions are canceled; one in progress carries on (no force), as CancelJob does.
    assert statuses(model, "j1")["t4"] == "CANCELED" and statuses(model, "j1")["t5"] == "IN_PROGRESS"
    assert notes(model) == [("t3", "notify"), ("t3", "notify-next"), ("t4", "notify"), ("t4", "notify-next")]


def test_abort_all_counts_every_failure_type(model: JobsModel, clock: ManualClock) -> None:
    abort = {
        "criteriaList": [
            {"action": "CANCEL", "failureType": "ALL", "minNumberOfExecutedThings": 2, "thresholdPercentage": 100}
        ]
    }
    model.create_job(
        "j1", [thing_arn(t) for t in ("t0", "t1", "t2")], DOC, abort_config=abort,
        timeout_config={"inProgressTimeoutInMinutes": 1},
    )
    model.update("t0", "j1", "REJECTED")
    model.start_next("t1")
    clock.advance(60)
    model.tick()
    assert model.describe_job("j1")["status"] == "CANCELED"
    assert statuses(model, "j1") == {"t0": "REJECTED", "t1": "TIMED_OUT", "t2": "CANCELED"}


# ---- jobProcessDetails.processingTargets ------------------------------------------------------


def processing(model: JobsModel, job_id: str) -> list[str] | None:
    """processingTargets as thing names, None when DescribeJob leaves it out; checked against the counts."""
    details = model.describe_job(job_id)["jobProcessDetails"]
    targets = details.get("processingTargets")
    assert len(targets or []) == details["numberOfInProgressThings"]
    assert model.index_errors() == []
    return None if targets is None else [t.removeprefix(thing_arn("")) for t in targets]


def test_processing_targets_are_the_things_executing_the_job_now(model: JobsModel, clock: ManualClock) -> None:
    timeouts = {"inProgressTimeoutInMinutes": 1}
    model.create_job("j1", [thing_arn(f"t{n}") for n in range(6)], DOC, timeout_config=timeouts)
    assert processing(model, "j1") is None  # QUEUED is awaiting execution, not executing
    model.start_next("t3")
    model.update("t1", "j1", "IN_PROGRESS", {"step": "1"})
    model.start_next("t4")
    assert processing(model, "j1") == ["t1", "t3", "t4"]  # in the order the job queued them
    model.update("t1", "j1", "IN_PROGRESS", {"step": "2"})  # still executing: no change
    model.update("t3", "j1", "SUCCEEDED")
    assert processing(model, "j1") == ["t1", "t4"]
    model.update("t4", "j1", "FAILED")
    model.start_next("t0")
    model.start_next("t5")
    model.cancel_job_execution("j1", "t5", force=True)
    model.delete_thing("t0")  # REMOVED
    assert processing(model, "j1") == ["t1"]
    clock.advance(60)
    model.tick()  # t1 times out
    assert processing(model, "j1") is None
    model.start_next("t2")
    assert processing(model, "j1") == ["t2"]
    model.delete_job_execution("j1", "t2", 1, force=True)
    assert processing(model, "j1") is None
    assert model.describe_job("j1")["status"] == "COMPLETED"


def test_processing_targets_follow_executions_of_continuous_jobs_and_cancels(model: JobsModel) -> None:
    model.create_thing_group("fleet")
    model.add_thing_to_thing_group("fleet", "t0")
    model.create_job("c1", [GROUP + "fleet"], DOC, target_selection="CONTINUOUS")
    model.start_next("t0")
    model.update("t0", "c1", "REJECTED")
    model.add_thing_to_thing_group("fleet", "t1")
    model.start_next("t1")
    assert processing(model, "c1") == ["t1"]
    model.remove_thing_from_thing_group("fleet", "t1")  # its execution becomes REMOVED
    assert processing(model, "c1") is None
    model.add_thing_to_thing_group("fleet", "t1")  # execution number 2
    model.start_next("t1")
    model.remove_thing_from_thing_group("fleet", "t0")
    model.add_thing_to_thing_group("fleet", "t0")  # queued after t1's second execution
    model.start_next("t0")
    assert processing(model, "c1") == ["t1", "t0"]
    model.delete_job_execution("c1", "t1", 1)  # an older execution: the latest still counts
    model.delete_job_execution("c1", "t0", 1)
    assert processing(model, "c1") == ["t1", "t0"]
    model.cancel_job("c1")  # without force, IN_PROGRESS carries on
    assert processing(model, "c1") == ["t1", "t0"]
    model.cancel_job("c1", force=True)
    assert processing(model, "c1") is None


def test_processing_targets_survive_a_restart_and_the_recount_check_sees_a_wrong_one(
    model: JobsModel, clock: ManualClock, tmp_path: Path
) -> None:
    model.create_job("j1", [thing_arn(f"t{n}") for n in range(4)], DOC)
    for thing in ("t2", "t0", "t3"):
        model.start_next(thing)
    model.update("t3", "j1", "SUCCEEDED")
    store = Store(tmp_path / "jobs.db")
    store.save(model.to_records())
    again = JobsModel(clock)
    again.load_records(store.load())
    assert processing(again, "j1") == processing(model, "j1") == ["t0", "t2"]
    again.start_next("t1")
    assert processing(again, "j1") == ["t0", "t1", "t2"]
    # What IOTJOBS_LOCAL_CHECK runs after every save: the kept list against a recount of the executions.
    again._processing["j1"].pop()
    assert again.index_errors() == ["processing targets of j1"]


# ---- CONTINUOUS jobs and thing groups ----------------------------------------------------------


def test_continuous_job_follows_its_group(model: JobsModel) -> None:
    model.create_thing_group("fleet")
    model.add_thing_to_thing_group("fleet", "t0")
    model.create_job("c1", [GROUP + "fleet"], DOC, target_selection="CONTINUOUS")
    model.create_job("s1", [GROUP + "fleet"], DOC)
    assert statuses(model, "c1") == {"t0": "QUEUED"}
    notes(model)
    model.add_thing_to_thing_group("fleet", "t1")
    assert statuses(model, "c1") == {"t0": "QUEUED", "t1": "QUEUED"}
    assert "t1" not in statuses(model, "s1")  # a SNAPSHOT job took the group as it was
    assert notes(model) == [("t1", "notify"), ("t1", "notify-next")]
    model.update("t0", "c1", "SUCCEEDED")
    assert model.describe_job("c1")["status"] == "IN_PROGRESS"  # CONTINUOUS jobs wait for new things
    model.remove_thing_from_thing_group("fleet", "t1")
    assert statuses(model, "c1")["t1"] == "REMOVED"
    assert model.history("t1", "c1")[-1]["cause"] == "removed"
    assert model.describe_job("c1")["jobProcessDetails"]["numberOfRemovedThings"] == 1
    # Added again, it gets a new execution, numbered 2.
    model.add_thing_to_thing_group("fleet", "t1")
    assert model.describe_job_execution("t1", "c1")["executionNumber"] == 2
    # A thing targeted directly stays when it leaves the group.
    model.associate_targets_with_job("c1", [thing_arn("t2")])
    model.add_thing_to_thing_group("fleet", "t2")
    model.remove_thing_from_thing_group("fleet", "t2")
    assert statuses(model, "c1")["t2"] == "QUEUED"


def test_deleting_a_thing_removes_its_pending_executions(model: JobsModel) -> None:
    model.create_job("j1", [thing_arn("t0"), thing_arn("t1")], DOC)
    model.delete_thing("t0")
    assert statuses(model, "j1") == {"t0": "REMOVED", "t1": "QUEUED"}
    with pytest.raises(ApiError):
        model.describe_thing("t0")


# ---- documents ---------------------------------------------------------------------------------


def test_document_parameters_are_substituted(model: JobsModel) -> None:
    raw = json.dumps({"url": "${aws:iot:parameter:url}", "n": "${aws:iot:parameter:n}"})
    model.create_job("j1", [thing_arn("t0")], raw, document_parameters={"url": 'https://x/"a"', "n": "3"})
    assert model.start_next("t0")["execution"]["jobDocument"] == {"url": 'https://x/"a"', "n": "3"}
    assert json.loads(model.get_job_document("j1")) == {"url": 'https://x/"a"', "n": "3"}
    assert model.get_job_document("j1", before_substitution=True) == raw
    assert model.describe_job("j1")["documentParameters"] == {"url": 'https://x/"a"', "n": "3"}


def test_document_source_from_file_and_s3_folder(model: JobsModel, clock: ManualClock, tmp_path: Path) -> None:
    documents = Documents(tmp_path / "files", clock)
    model.fetch_document = documents.fetch
    (tmp_path / "files" / "bucket").mkdir(parents=True)
    (tmp_path / "files" / "bucket" / "job.json").write_text(json.dumps({"from": "s3"}))
    (tmp_path / "local.json").write_text(json.dumps({"from": "file"}))
    model.create_job("j1", [thing_arn("t0")], document_source=f"file://{tmp_path / 'local.json'}")
    model.create_job("j2", [thing_arn("t1")], document_source="https://s3.amazonaws.com/bucket/job.json")
    assert model.start_next("t0")["execution"]["jobDocument"] == {"from": "file"}
    assert model.start_next("t1")["execution"]["jobDocument"] == {"from": "s3"}
    assert model.describe_job("j2")["documentSource"] == "https://s3.amazonaws.com/bucket/job.json"
    for source in ("https://s3.amazonaws.com/bucket/missing.json", "https://example.com/x", "file:///nonexistent"):
        with pytest.raises(ApiError) as caught:
            model.create_job("j3", [thing_arn("t0")], document_source=source)
        assert caught.value.code == "InvalidRequest"
    with pytest.raises(ApiError):
        model.create_job("j3", [thing_arn("t0")], DOC, document_source="file:///x")  # not both


def test_presigned_url_placeholder_becomes_a_url_that_expires(
    jobs_http: JobsService, iot: Any, iot_data: Any, thing_name: str, tmp_path: Path
) -> None:
    (tmp_path / "files" / "firmware").mkdir()
    (tmp_path / "files" / "firmware" / "app-1.2.bin").write_bytes(b"\x00firmware\xff")
    placeholder = "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/firmware/app-1.2.bin}"
    document = json.dumps({"operation": "download", "url": placeholder})
    iot.create_job(
        jobId="ota",
        targets=[f"arn:aws:iot:us-east-1:123456789012:thing/{thing_name}"],
        document=document,
        presignedUrlConfig={"roleArn": "arn:aws:iam::123456789012:role/ota-role", "expiresInSec": 120},
    )
    assert iot.get_job_document(jobId="ota")["document"] == document  # placeholders stay for the operator
    received = json.loads(iot_data.start_next_pending_job_execution(thingName=thing_name)["execution"]["jobDocument"])
    url = received["url"]
    assert url.startswith(jobs_http.http_url + "/presigned/firmware/app-1.2.bin?")
    # Over MQTT too: the device API renders the document the same way.
    mqtt_view = jobs_http.model.describe(thing_name, "ota")["execution"]["jobDocument"]
    assert mqtt_view["url"].startswith(jobs_http.http_url + "/presigned/")
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"\x00firmware\xff"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url.replace("signature=", "signature=0"))
    assert caught.value.code == 403
    assert isinstance(jobs_http.clock, ManualClock)
    jobs_http.clock.advance(121)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url)
    assert caught.value.code == 403


# Every form of S3 object URL that AWS accepts, each naming bucket "ota-bucket" and key "fw/job 1.json".
S3_URLS = {
    "path-global": "https://s3.amazonaws.com/ota-bucket/fw/job%201.json",
    "path-region": "https://s3.eu-west-1.amazonaws.com/ota-bucket/fw/job%201.json",
    "path-dash-region": "https://s3-eu-west-1.amazonaws.com/ota-bucket/fw/job%201.json",
    "virtual-global": "https://ota-bucket.s3.amazonaws.com/fw/job%201.json",
    "virtual-region": "https://ota-bucket.s3.eu-west-1.amazonaws.com/fw/job%201.json",
    "virtual-dotted-bucket": "https://ota.bucket.s3.us-east-2.amazonaws.com/fw/job%201.json",
}
BOTO_ROLE = {"roleArn": "arn:aws:iam::123456789012:role/ota-role", "expiresInSec": 120}


def s3_file(tmp_path: Path, url: str, content: bytes) -> Path:
    bucket = "ota.bucket" if "ota.bucket" in url else "ota-bucket"
    path = tmp_path / "files" / bucket / "fw" / "job 1.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("url", S3_URLS.values(), ids=S3_URLS.keys())
def test_document_source_in_every_s3_url_form(jobs_http: JobsService, iot: Any, iot_data: Any, thing_name: str,
                                              tmp_path: Path, url: str) -> None:
    s3_file(tmp_path, url, json.dumps({"operation": "from-s3"}).encode())
    iot.create_job(jobId="j1", targets=[f"arn:aws:iot:us-east-1:123456789012:thing/{thing_name}"], documentSource=url)
    assert json.loads(iot.get_job_document(jobId="j1")["document"]) == {"operation": "from-s3"}
    assert iot.describe_job(jobId="j1")["documentSource"] == url
    started = iot_data.start_next_pending_job_execution(thingName=thing_name)["execution"]
    assert json.loads(started["jobDocument"]) == {"operation": "from-s3"}


@pytest.mark.parametrize("url", S3_URLS.values(), ids=S3_URLS.keys())
def test_presigned_placeholder_in_every_s3_url_form(jobs_http: JobsService, iot: Any, iot_data: Any, thing_name: str,
                                                    tmp_path: Path, url: str) -> None:
    s3_file(tmp_path, url, b"\x00image\xff")
    document = json.dumps({"a": "${aws:iot:s3-presigned-url:%s}" % url, "b": "${aws:iot:s3-presigned-url-v2:%s}" % url})
    iot.create_job(jobId="j1", targets=[f"arn:aws:iot:us-east-1:123456789012:thing/{thing_name}"], document=document,
                   presignedUrlConfig=BOTO_ROLE)
    received = json.loads(iot_data.describe_job_execution(jobId="j1", thingName=thing_name,
                                                          includeJobDocument=True)["execution"]["jobDocument"])
    for signed in received.values():
        assert signed.startswith(jobs_http.http_url + "/presigned/")
        with urllib.request.urlopen(signed) as response:
            assert response.read() == b"\x00image\xff"


def test_missing_document_source_fails_the_creation_naming_the_file(jobs_http: JobsService, iot: Any, thing_name: str,
                                                                    tmp_path: Path) -> None:
    # AWS reads the document at CreateJob ("must be a UTF-8 encoded JSON document"): no object, no job.
    (tmp_path / "files" / "ota-bucket").mkdir()
    target = f"arn:aws:iot:us-east-1:123456789012:thing/{thing_name}"
    with pytest.raises(ClientError) as caught:
        iot.create_job(jobId="j1", targets=[target], documentSource=S3_URLS["virtual-region"])
    error = caught.value.response["Error"]
    assert error["Code"] == "InvalidRequestException"
    assert str(tmp_path / "files" / "ota-bucket" / "fw" / "job 1.json") in error["Message"]
    with pytest.raises(ClientError) as caught:
        iot.create_job(jobId="j1", targets=[target], documentSource="https://example.com/ota-bucket/job.json")
    assert "s3[.REGION].amazonaws.com" in caught.value.response["Error"]["Message"]
    assert iot.list_jobs()["jobs"] == []


def test_missing_presigned_object_is_a_404_naming_the_file(jobs_http: JobsService, iot: Any, iot_data: Any,
                                                           thing_name: str, tmp_path: Path) -> None:
    # Presigned URLs are made when a device asks for the document, object or not: S3 then answers 404 NoSuchKey.
    document = json.dumps({"url": "${aws:iot:s3-presigned-url:%s}" % S3_URLS["path-dash-region"],
                           "other": "${aws:iot:s3-presigned-url:https://example.com/x}"})
    iot.create_job(jobId="j1", targets=[f"arn:aws:iot:us-east-1:123456789012:thing/{thing_name}"], document=document,
                   presignedUrlConfig=BOTO_ROLE)
    received = json.loads(iot_data.start_next_pending_job_execution(thingName=thing_name)["execution"]["jobDocument"])
    assert received["other"] == "${aws:iot:s3-presigned-url:https://example.com/x}"  # names no S3 object: as written
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(received["url"])
    assert caught.value.code == 404
    body = caught.value.read().decode()
    assert body.startswith("NoSuchKey") and str(tmp_path / "files" / "ota-bucket" / "fw" / "job 1.json") in body


# ---- the store ---------------------------------------------------------------------------------


def test_store_round_trip_keeps_everything(model: JobsModel, clock: ManualClock, tmp_path: Path) -> None:
    model.create_thing_group("g")
    model.add_thing_to_thing_group("g", "t1")
    model.create_job("j1", [thing_arn(t) for t in ("t0", "t1", "t2")], DOC, rollout_config={"maximumPerMinute": 1})
    model.start_next("t0", {"a": "b"}, step_timeout_min=4)
    store = Store(tmp_path / "db" / "jobs.db")
    assert store.save(model.to_records()) > 0
    assert store.save(model.to_records()) == 0  # nothing changed, nothing written
    model.update("t0", "j1", "IN_PROGRESS", {"a": "c"})
    assert store.save(model.to_records()) == 1  # only the execution's row
    store.close()

    again = JobsModel(clock)
    again.load_records(Store(tmp_path / "db" / "jobs.db").load())
    assert again.to_records() == model.to_records()
    assert again.describe_job_execution("t0", "j1") == model.describe_job_execution("t0", "j1")
    assert again.list_things_in_thing_group("g") == ["t1"]
    clock.advance(60)
    again.tick()
    assert len(statuses(again, "j1")) == 2
    again.create_job("j2", [thing_arn("t0")], DOC)  # the creation order counter carried on
    assert again.pending("t0")[-1].seq > max(r.seq for r in again.pending("t0")[:-1])
