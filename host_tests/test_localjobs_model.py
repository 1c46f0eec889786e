"""The local Jobs model on its own: every device and management rule, the topic parser, timers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from localjobs.clock import Clock, ManualClock
from localjobs.model import ApiError, JobsModel, thing_arn
from localjobs.mqtt_api import (
    INVALID_TOPIC,
    Route,
    boolean_field,
    call_model,
    integer_field,
    parse_payload,
    parse_topic,
)

T0 = 1_700_000_000
DOC = {"operation": "install", "version": "1.2"}
THING_ARN = "arn:aws:iot:us-east-1:123456789012:thing/"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def model(clock: ManualClock) -> JobsModel:
    m = JobsModel(clock)
    for name in ("t1", "t2"):
        m.create_thing(name)
    return m


def add_jobs(model: JobsModel, *job_ids: str, thing: str = "t1", **options: Any) -> None:
    for job_id in job_ids:
        model.create_job(job_id, [thing_arn(thing)], DOC, **options)
    model.take_notifications()


def notes(model: JobsModel) -> list[tuple[str, str, dict[str, Any]]]:
    return [(n.thing, n.kind, n.payload) for n in model.take_notifications()]


def rejects(code: str, fn: Any, *args: Any, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        fn(*args, **kwargs)
    assert caught.value.code == code, caught.value
    return caught.value


# ---- clock -----------------------------------------------------------------------------------


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock()
    assert clock.now() == T0
    assert clock.advance(90) == T0 + 90
    assert clock.now() == T0 + 90
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_real_clock_is_wall_time() -> None:
    assert abs(Clock().now() - time.time()) < 5


# ---- GetPendingJobExecutions -----------------------------------------------------------------


def test_get_pending_is_empty_for_a_thing_without_jobs(model: JobsModel) -> None:
    assert model.get_pending("t1") == {"inProgressJobs": [], "queuedJobs": []}
    assert model.get_pending("never-created") == {"inProgressJobs": [], "queuedJobs": []}


def test_get_pending_lists_summaries_in_creation_order(model: JobsModel, clock: ManualClock) -> None:
    add_jobs(model, "j1")
    clock.advance(5)
    add_jobs(model, "j2", "j3")
    clock.advance(5)
    model.update("t1", "j2", "IN_PROGRESS")
    pending = model.get_pending("t1")
    assert pending["inProgressJobs"] == [
        {
            "jobId": "j2",
            "queuedAt": T0 + 5,
            "startedAt": T0 + 10,
            "lastUpdatedAt": T0 + 10,
            "versionNumber": 2,
            "executionNumber": 1,
        }
    ]
    assert pending["queuedJobs"] == [
        {"jobId": "j1", "queuedAt": T0, "lastUpdatedAt": T0, "versionNumber": 1, "executionNumber": 1},
        {
            "jobId": "j3",
            "queuedAt": T0 + 5,
            "lastUpdatedAt": T0 + 5,
            "versionNumber": 1,
            "executionNumber": 1,
        },
    ]


def test_terminal_executions_leave_the_pending_list(model: JobsModel) -> None:
    add_jobs(model, "j1", "j2")
    model.update("t1", "j1", "SUCCEEDED")
    assert [j["jobId"] for j in model.get_pending("t1")["queuedJobs"]] == ["j2"]


# ---- StartNextPendingJobExecution ------------------------------------------------------------


def test_start_next_starts_the_oldest_queued_execution(model: JobsModel, clock: ManualClock) -> None:
    add_jobs(model, "j1", "j2")
    clock.advance(3)
    execution = model.start_next("t1", status_details={"step": "download"})["execution"]
    assert execution == {
        "jobId": "j1",
        "thingName": "t1",
        "jobDocument": DOC,
        "status": "IN_PROGRESS",
        "statusDetails": {"step": "download"},
        "queuedAt": T0,
        "startedAt": T0 + 3,
        "lastUpdatedAt": T0 + 3,
        "versionNumber": 2,
        "executionNumber": 1,
    }


def test_start_next_returns_in_progress_first_and_leaves_it_unchanged(model: JobsModel) -> None:
    add_jobs(model, "j1", "j2")
    model.update("t1", "j2", "IN_PROGRESS", status_details={"p": "1"})
    execution = model.start_next("t1", status_details={"p": "ignored"})["execution"]
    assert (execution["jobId"], execution["statusDetails"], execution["versionNumber"]) == (
        "j2",
        {"p": "1"},
        2,
    )
    assert model.get_pending("t1")["queuedJobs"][0]["jobId"] == "j1"


def test_start_next_without_details_keeps_the_existing_ones(model: JobsModel) -> None:
    add_jobs(model, "j1")
    assert model.start_next("t1")["execution"]["statusDetails"] == {}


def test_start_next_with_nothing_pending_has_no_execution(model: JobsModel) -> None:
    assert model.start_next("t1") == {}
    add_jobs(model, "j1")
    model.update("t1", "j1", "FAILED")
    assert model.start_next("t1") == {}


# ---- DescribeJobExecution --------------------------------------------------------------------


def test_describe_by_job_id_includes_the_document_by_default(model: JobsModel) -> None:
    add_jobs(model, "j1")
    execution = model.describe("t1", "j1")["execution"]
    assert execution["jobDocument"] == DOC and execution["status"] == "QUEUED"
    assert "jobDocument" not in model.describe("t1", "j1", include_document=False)["execution"]
    assert model.describe("t1", "j1", execution_number=1)["execution"]["executionNumber"] == 1


def test_describe_next_follows_the_pending_order(model: JobsModel) -> None:
    assert model.describe("t1", "$next") == {}
    add_jobs(model, "j1", "j2")
    assert model.describe("t1", "$next")["execution"]["jobId"] == "j1"
    model.update("t1", "j2", "IN_PROGRESS")
    assert model.describe("t1", "$next", include_document=False)["execution"]["jobId"] == "j2"


def test_describe_unknown_job_or_execution_is_resource_not_found(model: JobsModel) -> None:
    add_jobs(model, "j1")
    rejects("ResourceNotFound", model.describe, "t1", "nope")
    rejects("ResourceNotFound", model.describe, "t2", "j1")
    rejects("ResourceNotFound", model.describe, "t1", "j1", execution_number=2)


def test_describe_terminal_execution_is_terminal_state_reached(model: JobsModel) -> None:
    add_jobs(model, "j1")
    model.update("t1", "j1", "SUCCEEDED")
    error = rejects("TerminalStateReached", model.describe, "t1", "j1")
    assert error.execution_state is None


# ---- UpdateJobExecution ----------------------------------------------------------------------


@pytest.mark.parametrize("status", ["IN_PROGRESS", "FAILED", "SUCCEEDED", "REJECTED"])
def test_device_may_set_any_device_status_from_queued(model: JobsModel, status: str) -> None:
    add_jobs(model, "j1")
    assert model.update("t1", "j1", status, include_state=True)["executionState"]["status"] == status


@pytest.mark.parametrize("status", ["IN_PROGRESS", "FAILED", "SUCCEEDED", "REJECTED"])
def test_device_may_set_any_device_status_from_in_progress(model: JobsModel, status: str) -> None:
    add_jobs(model, "j1")
    model.start_next("t1")
    state = model.update("t1", "j1", status, include_state=True)["executionState"]
    assert (state["status"], state["versionNumber"]) == (status, 3)


@pytest.mark.parametrize("status", ["QUEUED", "CANCELED", "TIMED_OUT", "REMOVED", "DONE", "", None, 3, ["X"]])
def test_device_may_not_set_other_statuses(model: JobsModel, status: Any) -> None:
    add_jobs(model, "j1")
    rejects("InvalidRequest", model.update, "t1", "j1", status)
    assert model.describe("t1", "j1")["execution"]["versionNumber"] == 1


@pytest.mark.parametrize("terminal", ["SUCCEEDED", "FAILED", "REJECTED", "CANCELED", "TIMED_OUT", "REMOVED"])
def test_update_after_a_terminal_status_is_invalid_state_transition(model: JobsModel, terminal: str) -> None:
    add_jobs(model, "j1")
    model.update("t1", "j1", "IN_PROGRESS", status_details={"k": "v"})
    run = model.execution("t1", "j1")
    assert run is not None
    run.status = terminal  # every terminal status, however it was reached
    error = rejects("InvalidStateTransition", model.update, "t1", "j1", "IN_PROGRESS")
    assert error.execution_state == {"status": terminal, "statusDetails": {"k": "v"}, "versionNumber": 2}
    assert error.payload()["executionState"] == error.execution_state


def test_version_mismatch_carries_the_current_state(model: JobsModel) -> None:
    add_jobs(model, "j1")
    model.update("t1", "j1", "IN_PROGRESS", status_details={"p": "1"})
    error = rejects("VersionMismatch", model.update, "t1", "j1", "SUCCEEDED", expected_version=1)
    assert error.execution_state == {"status": "IN_PROGRESS", "statusDetails": {"p": "1"}, "versionNumber": 2}
    assert (
        model.update("t1", "j1", "SUCCEEDED", expected_version=2, include_state=True)["executionState"][
            "versionNumber"
        ]
        == 3
    )


def test_every_applied_update_increments_the_version(model: JobsModel) -> None:
    add_jobs(model, "j1")
    versions = [
        model.update("t1", "j1", "IN_PROGRESS", include_state=True)["executionState"]["versionNumber"]
        for _ in range(4)
    ]
    assert versions == [2, 3, 4, 5]


def test_status_details_are_replaced_when_given_and_kept_when_absent(model: JobsModel) -> None:
    add_jobs(model, "j1")
    model.update("t1", "j1", "IN_PROGRESS", status_details={"a": "1", "b": "2"})
    assert model.update("t1", "j1", "IN_PROGRESS", include_state=True)["executionState"]["statusDetails"] == {
        "a": "1",
        "b": "2",
    }
    state = model.update("t1", "j1", "IN_PROGRESS", status_details={"c": "3"}, include_state=True)
    assert state["executionState"]["statusDetails"] == {"c": "3"}


def test_update_reply_carries_state_and_document_only_when_asked(model: JobsModel) -> None:
    add_jobs(model, "j1")
    assert model.update("t1", "j1", "IN_PROGRESS") == {}
    reply = model.update("t1", "j1", "IN_PROGRESS", include_state=True, include_document=True)
    assert reply == {
        "executionState": {"status": "IN_PROGRESS", "statusDetails": {}, "versionNumber": 3},
        "jobDocument": DOC,
    }


def test_update_of_unknown_job_or_execution_is_resource_not_found(model: JobsModel) -> None:
    add_jobs(model, "j1")
    rejects("ResourceNotFound", model.update, "t1", "nope", "IN_PROGRESS")
    rejects("ResourceNotFound", model.update, "t1", "j1", "IN_PROGRESS", execution_number=7)
    assert model.update("t1", "j1", "IN_PROGRESS", execution_number=1, include_state=True)


LONG_VALUE = "v" * 1024


@pytest.mark.parametrize(
    "details",
    [
        {f"k{i}": "v" for i in range(10)},
        {"k" * 128: "v"},
        {"a:b_c-D9": LONG_VALUE},
        {"msg": "température élevée ✓ 中文"},
        {},
    ],
)
def test_valid_status_details_are_accepted(model: JobsModel, details: dict[str, str]) -> None:
    add_jobs(model, "j1")
    state = model.update("t1", "j1", "IN_PROGRESS", status_details=details, include_state=True)
    assert state["executionState"]["statusDetails"] == details


@pytest.mark.parametrize(
    "details",
    [
        {f"k{i}": "v" for i in range(11)},
        {"": "v"},
        {"k" * 129: "v"},
        {"bad key": "v"},
        {"bad.key": "v"},
        {"k": ""},
        {"k": "v" * 1025},
        {"k": 5},
        {"k": None},
        {"k": {"nested": "x"}},
        {"k": "line\nbreak"},
        {"k": "nul\x00"},
        {"k": "zero\u200bwidth"},
        ["k", "v"],
        "k=v",
    ],
)
def test_invalid_status_details_are_invalid_request(model: JobsModel, details: Any) -> None:
    add_jobs(model, "j1")
    rejects("InvalidRequest", model.update, "t1", "j1", "IN_PROGRESS", status_details=details)
    rejects("InvalidRequest", model.start_next, "t1", status_details=details)
    assert model.describe("t1", "j1")["execution"]["versionNumber"] == 1


@pytest.mark.parametrize("minutes", [0, -2, 10081, True, 1.5])
def test_invalid_step_timeouts_are_invalid_request(model: JobsModel, minutes: Any) -> None:
    add_jobs(model, "j1")
    rejects("InvalidRequest", model.start_next, "t1", step_timeout_min=minutes)
    rejects("InvalidRequest", model.update, "t1", "j1", "IN_PROGRESS", step_timeout_min=minutes)


@pytest.mark.parametrize("minutes", [1, 10080, -1])
def test_valid_step_timeouts_are_accepted(model: JobsModel, minutes: int) -> None:
    add_jobs(model, "j1")
    assert model.start_next("t1", step_timeout_min=minutes)["execution"]["status"] == "IN_PROGRESS"


@pytest.mark.parametrize("thing", ["", "t" * 129, "with space", "a/b", "dot.ted", "+", "#"])
def test_invalid_thing_names_are_invalid_request(model: JobsModel, thing: str) -> None:
    rejects("InvalidRequest", model.get_pending, thing)
    rejects("InvalidRequest", model.start_next, thing)
    rejects("InvalidRequest", model.describe, thing, "$next")
    rejects("InvalidRequest", model.create_thing, thing)


@pytest.mark.parametrize("job_id", ["", "j" * 65, "job.1", "job:1", "$next", "a b"])
def test_invalid_job_ids_are_invalid_request(model: JobsModel, job_id: str) -> None:
    rejects("InvalidRequest", model.update, "t1", job_id, "IN_PROGRESS")
    rejects("InvalidRequest", model.create_job, job_id, [thing_arn("t1")], DOC)
    if job_id != "$next":
        rejects("InvalidRequest", model.describe, "t1", job_id)


def test_longest_names_are_valid(model: JobsModel) -> None:
    thing, job_id = "T:_-" * 32, "J_-" * 21 + "J"
    model.create_thing(thing)
    model.create_job(job_id, [thing_arn(thing)], DOC)
    assert model.describe(thing, job_id)["execution"]["executionNumber"] == 1


def test_numbers_start_at_one_for_each_thing_and_job(model: JobsModel) -> None:
    model.create_job("j1", [thing_arn("t1"), thing_arn("t2")], DOC)
    model.create_job("j2", [thing_arn("t1")], DOC)
    for thing, job_id in (("t1", "j1"), ("t2", "j1"), ("t1", "j2")):
        execution = model.describe(thing, job_id)["execution"]
        assert (execution["executionNumber"], execution["versionNumber"]) == (1, 1)


# ---- notifications ---------------------------------------------------------------------------


def test_a_new_job_sends_notify_and_notify_next_to_an_idle_thing(model: JobsModel) -> None:
    model.create_job("j1", [thing_arn("t1")], DOC)
    assert notes(model) == [
        ("t1", "notify", {"jobs": {"QUEUED": [model.get_pending("t1")["queuedJobs"][0]]}}),
        ("t1", "notify-next", {"execution": model.describe("t1", "$next")["execution"]}),
    ]
    assert model.take_notifications() == []


def test_a_second_job_changes_the_list_but_not_the_next(model: JobsModel) -> None:
    add_jobs(model, "j1")
    model.create_job("j2", [thing_arn("t1")], DOC)
    [(thing, kind, payload)] = notes(model)
    assert (thing, kind) == ("t1", "notify")
    assert [s["jobId"] for s in payload["jobs"]["QUEUED"]] == ["j1", "j2"]
    assert "IN_PROGRESS" not in payload["jobs"]


def test_notify_topics_are_per_thing(model: JobsModel) -> None:
    model.create_job("j1", [thing_arn("t1"), thing_arn("t2")], DOC)
    assert [n.topic for n in model.take_notifications()] == [
        "$aws/things/t1/jobs/notify",
        "$aws/things/t1/jobs/notify-next",
        "$aws/things/t2/jobs/notify",
        "$aws/things/t2/jobs/notify-next",
    ]


def test_starting_the_next_job_sends_nothing(model: JobsModel) -> None:
    add_jobs(model, "j1", "j2")
    model.start_next("t1")
    model.update("t1", "j1", "IN_PROGRESS", status_details={"progress": "50"})
    assert notes(model) == []


def test_starting_a_job_behind_the_next_one_sends_notify_next(model: JobsModel) -> None:
    add_jobs(model, "j1", "j2")
    model.update("t1", "j2", "IN_PROGRESS")
    [(thing, kind, payload)] = notes(model)
    assert (thing, kind) == ("t1", "notify-next")
    assert payload["execution"]["jobId"] == "j2" and payload["execution"]["jobDocument"] == DOC


def test_finishing_jobs_sends_notify_and_the_new_next(model: JobsModel) -> None:
    add_jobs(model, "j1", "j2")
    model.start_next("t1")
    model.update("t1", "j1", "SUCCEEDED")
    [notify, notify_next] = notes(model)
    assert notify[1] == "notify" and [s["jobId"] for s in notify[2]["jobs"]["QUEUED"]] == ["j2"]
    assert notify_next[1] == "notify-next" and notify_next[2]["execution"]["jobId"] == "j2"
    model.update("t1", "j2", "REJECTED")
    assert notes(model) == [("t1", "notify", {"jobs": {}}), ("t1", "notify-next", {})]


def test_notify_lists_both_statuses_with_in_progress_summaries(model: JobsModel) -> None:
    add_jobs(model, "j1", "j2")
    model.start_next("t1")
    model.create_job("j3", [thing_arn("t1")], DOC)
    [(_, kind, payload)] = notes(model)
    assert kind == "notify"
    assert [s["jobId"] for s in payload["jobs"]["IN_PROGRESS"]] == ["j1"]
    assert "startedAt" in payload["jobs"]["IN_PROGRESS"][0]
    assert [s["jobId"] for s in payload["jobs"]["QUEUED"]] == ["j2", "j3"]


def test_rejected_requests_send_nothing(model: JobsModel) -> None:
    add_jobs(model, "j1")
    rejects("VersionMismatch", model.update, "t1", "j1", "SUCCEEDED", expected_version=9)
    rejects("InvalidRequest", model.update, "t1", "j1", "DONE")
    assert notes(model) == []


# ---- management ------------------------------------------------------------------------------


def test_create_job_takes_each_thing_arn_once(model: JobsModel) -> None:
    reply = model.create_job("j1", [thing_arn("t1"), THING_ARN + "t2", thing_arn("t1")], DOC, description="two things")
    assert reply == {
        "jobArn": "arn:aws:iot:us-east-1:123456789012:job/j1",
        "jobId": "j1",
        "description": "two things",
    }
    job = model.describe_job("j1")
    assert job["targets"] == [THING_ARN + "t1", THING_ARN + "t2"]
    assert job["status"] == "IN_PROGRESS" and job["targetSelection"] == "SNAPSHOT"
    assert job["jobProcessDetails"]["numberOfQueuedThings"] == 2


@pytest.mark.parametrize(
    ("target", "hint"),
    [
        ("t1", "thing t1 is arn:aws:iot:us-east-1:123456789012:thing/t1"),
        ("ghost", "thing ghost is arn:aws:iot:us-east-1:123456789012:thing/ghost"),
        ("thinggroup/g", "not names"),
        ("arn:aws:s3:::bucket", "arn:aws:iot:us-east-1:123456789012:thinggroup/NAME"),
        ("arn:aws:iot:eu-west-1:123456789012:thing/t1", "arn:aws:iot:us-east-1:123456789012:thing/NAME"),
    ],
)
def test_targets_are_arns_and_a_name_is_refused_by_name(model: JobsModel, target: str, hint: str) -> None:
    model.create_job("c1", [thing_arn("t2")], DOC, target_selection="CONTINUOUS")
    notes(model)
    for call, args in ((model.create_job, ("j1", [thing_arn("t2"), target], DOC)),
                       (model.associate_targets_with_job, ("c1", [target]))):
        error = rejects("InvalidRequest", call, *args)
        assert error.message.startswith(f"Invalid target {target}: ") and hint in error.message
    assert list(model.jobs) == ["c1"] and model.describe_job("c1")["targets"] == [thing_arn("t2")]
    assert model.get_pending("t1") == {"inProgressJobs": [], "queuedJobs": []} and notes(model) == []


def test_create_job_keeps_the_document_text(model: JobsModel) -> None:
    text = '{"operation": "x",  "n": 1}'
    model.create_job("j1", [thing_arn("t1")], text)
    assert model.get_job_document("j1") == text
    assert model.describe("t1", "j1")["execution"]["jobDocument"] == {"operation": "x", "n": 1}


@pytest.mark.parametrize(
    ("targets", "document", "options", "code"),
    [
        ([THING_ARN + "ghost"], DOC, {}, "ResourceNotFound"),
        (["arn:aws:iot:us-east-1:123456789012:thinggroup/g"], DOC, {}, "ResourceNotFound"),
        ([], DOC, {}, "InvalidRequest"),
        ("t1", DOC, {}, "InvalidRequest"),
        ([THING_ARN + "t1"], "not json", {}, "InvalidRequest"),
        ([THING_ARN + "t1"], "[1, 2]", {}, "InvalidRequest"),
        ([THING_ARN + "t1"], {"blob": "x" * 33_000}, {}, "InvalidRequest"),
        ([THING_ARN + "t1"], DOC, {"target_selection": "SOMETIMES"}, "InvalidRequest"),
        ([THING_ARN + "t1"], DOC, {"timeout_config": {"inProgressTimeoutInMinutes": 0}}, "InvalidRequest"),
        ([THING_ARN + "t1"], DOC, {"timeout_config": {"inProgressTimeoutInMinutes": 10081}}, "InvalidRequest"),
    ],
)
def test_create_job_validates(model: JobsModel, targets: Any, document: Any, options: Any, code: str) -> None:
    rejects(code, model.create_job, "j1", targets, document, **options)
    assert model.jobs == {} and notes(model) == []


def test_job_ids_are_unique(model: JobsModel) -> None:
    add_jobs(model, "j1")
    rejects("ResourceAlreadyExists", model.create_job, "j1", [thing_arn("t2")], DOC)


def test_create_thing_is_idempotent(model: JobsModel) -> None:
    first = model.create_thing("t3")
    assert model.create_thing("t3") == first
    assert first["thingArn"] == THING_ARN + "t3"


def test_snapshot_job_completes_when_every_execution_is_terminal(
    model: JobsModel, clock: ManualClock
) -> None:
    model.create_job("j1", [thing_arn("t1"), thing_arn("t2")], DOC)
    model.update("t1", "j1", "SUCCEEDED")
    assert model.describe_job("j1")["status"] == "IN_PROGRESS"
    clock.advance(7)
    model.update("t2", "j1", "FAILED")
    job = model.describe_job("j1")
    assert (job["status"], job["completedAt"]) == ("COMPLETED", T0 + 7)
    assert job["jobProcessDetails"]["numberOfSucceededThings"] == 1
    assert job["jobProcessDetails"]["numberOfFailedThings"] == 1


def test_continuous_job_stays_in_progress(model: JobsModel) -> None:
    model.create_job("j1", [thing_arn("t1")], DOC, target_selection="CONTINUOUS")
    model.update("t1", "j1", "SUCCEEDED")
    assert model.describe_job("j1")["status"] == "IN_PROGRESS"


def test_describe_job_execution_shows_any_status(model: JobsModel, clock: ManualClock) -> None:
    add_jobs(model, "j1")
    model.start_next("t1", status_details={"s": "1"}, step_timeout_min=2)
    clock.advance(30)
    execution = model.describe_job_execution("t1", "j1")
    assert execution["approximateSecondsBeforeTimedOut"] == 90
    model.update("t1", "j1", "SUCCEEDED")
    execution = model.describe_job_execution("t1", "j1")
    assert execution == {
        "jobId": "j1",
        "status": "SUCCEEDED",
        "forceCanceled": False,
        "statusDetails": {"s": "1"},
        "thingArn": THING_ARN + "t1",
        "queuedAt": T0,
        "startedAt": T0,
        "lastUpdatedAt": T0 + 30,
        "executionNumber": 1,
        "versionNumber": 3,
    }
    rejects("ResourceNotFound", model.describe_job_execution, "t2", "j1")


def test_list_executions_by_thing_and_by_job(model: JobsModel) -> None:
    model.create_job("j1", [thing_arn("t1"), thing_arn("t2")], DOC)
    model.create_job("j2", [thing_arn("t1")], DOC)
    model.update("t1", "j2", "IN_PROGRESS")
    assert [e["jobId"] for e in model.list_job_executions_for_thing("t1")] == ["j1", "j2"]
    in_progress = model.list_job_executions_for_thing("t1", status="IN_PROGRESS")
    assert [(e["jobId"], e["jobExecutionSummary"]["status"]) for e in in_progress] == [("j2", "IN_PROGRESS")]
    assert [e["thingArn"] for e in model.list_job_executions_for_job("j1")] == [
        THING_ARN + "t1",
        THING_ARN + "t2",
    ]
    assert model.list_job_executions_for_thing("nobody") == []
    rejects("InvalidRequest", model.list_job_executions_for_thing, "t1", status="DONE")
    rejects("ResourceNotFound", model.list_job_executions_for_job, "nope")


def test_list_jobs_filters_by_status(model: JobsModel) -> None:
    add_jobs(model, "j1", "j2")
    model.cancel_job("j2")
    assert [j["jobId"] for j in model.list_jobs()] == ["j1", "j2"]
    assert [j["jobId"] for j in model.list_jobs(status="CANCELED")] == ["j2"]


# ---- unknown enum values and members are refused with the values that would do ---------------------

JOB_STATUSES = "IN_PROGRESS, CANCELED, COMPLETED, DELETION_IN_PROGRESS, SCHEDULED"
EXECUTION_STATUSES = "QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED, CANCELED"


def enum_error(value: str, where: str, values: str) -> str:
    return (
        f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy constraint: "
        f"Member must satisfy enum value set: [{values}]"
    )


def criterion(**changes: Any) -> dict[str, Any]:
    return {"action": "CANCEL", "failureType": "FAILED", "minNumberOfExecutedThings": 1, "thresholdPercentage": 50,
            **changes}


@pytest.mark.parametrize(
    ("method", "args", "options", "message"),
    [
        ("list_jobs", (), {"status": "SUCCEEDED"}, enum_error("SUCCEEDED", "status", JOB_STATUSES)),
        ("list_jobs", (), {"target_selection": "ONCE"}, enum_error("ONCE", "targetSelection", "CONTINUOUS, SNAPSHOT")),
        ("create_job", ("j2", [THING_ARN + "t1"], DOC), {"target_selection": "ONCE"},
         enum_error("ONCE", "targetSelection", "CONTINUOUS, SNAPSHOT")),
        ("list_job_executions_for_job", ("j1",), {"status": "DONE"}, enum_error("DONE", "status", EXECUTION_STATUSES)),
        ("list_job_executions_for_thing", ("t1",), {"status": "done"},
         enum_error("done", "status", EXECUTION_STATUSES)),
        ("update", ("t1", "j1", "DONE"), {}, enum_error("DONE", "status", EXECUTION_STATUSES)),
        ("update", ("t1", "j1", "QUEUED"), {},
         "status must be one of IN_PROGRESS, FAILED, SUCCEEDED, REJECTED, not 'QUEUED'"),
        ("create_job", ("j2", [THING_ARN + "t1"], DOC), {"abort_config": {"criteriaList": [criterion(action="STOP")]}},
         enum_error("STOP", "abortConfig.criteriaList.1.member.action", "CANCEL")),
        ("update_job", ("j1",), {"abort_config": {"criteriaList": [criterion(), criterion(failureType="BAD")]}},
         enum_error("BAD", "abortConfig.criteriaList.2.member.failureType", "FAILED, REJECTED, TIMED_OUT, ALL")),
        ("create_job", ("j2", [THING_ARN + "t1"], DOC), {"abort_config": {"criteriaList": [criterion(action=None)]}},
         "1 validation error detected: Value null at 'abortConfig.criteriaList.1.member.action' failed to satisfy "
         "constraint: Member must satisfy enum value set: [CANCEL]"),
        ("create_job", ("j2", [THING_ARN + "t1"], DOC), {"abort_config": {"criteriaList": [criterion(failed=1)]}},
         'Unknown parameter in abortConfig.criteriaList[0]: "failed", must be one of: '
         "failureType, action, thresholdPercentage, minNumberOfExecutedThings"),
        ("create_job", ("j2", [THING_ARN + "t1"], DOC), {"rollout_config": {"maxPerMinute": 5}},
         'Unknown parameter in jobExecutionsRolloutConfig: "maxPerMinute", must be one of: '
         "maximumPerMinute, exponentialRate"),
        ("update_job", ("j1",),
         {"rollout_config": {"exponentialRate": {"baseRatePerMinute": 1, "incrementFactor": 2,
                                                 "rateIncreaseCriteria": {"numberOfFailedThings": 2}}}},
         'Unknown parameter in jobExecutionsRolloutConfig.exponentialRate.rateIncreaseCriteria: '
         '"numberOfFailedThings", must be one of: numberOfNotifiedThings, numberOfSucceededThings'),
        ("create_job", ("j2", [THING_ARN + "t1"], DOC),
         {"rollout_config": {"exponentialRate": {"baseRatePerMinute": 1, "incrementFactor": 2, "rate": 3,
                                                 "rateIncreaseCriteria": {"numberOfNotifiedThings": 2}}}},
         'Unknown parameter in jobExecutionsRolloutConfig.exponentialRate: "rate", must be one of: '
         "baseRatePerMinute, incrementFactor, rateIncreaseCriteria"),
        ("create_job", ("j2", [THING_ARN + "t1"], DOC), {"timeout_config": {"inProgressTimeoutMinutes": 5}},
         'Unknown parameter in timeoutConfig: "inProgressTimeoutMinutes", must be one of: inProgressTimeoutInMinutes'),
        ("update_job", ("j1",), {"presigned_url_config": {"expiresIn": 60}},
         'Unknown parameter in presignedUrlConfig: "expiresIn", must be one of: roleArn, expiresInSec'),
    ],
)
def test_an_unknown_value_or_member_is_refused_with_the_valid_ones(
    model: JobsModel, method: str, args: tuple[Any, ...], options: dict[str, Any], message: str
) -> None:
    add_jobs(model, "j1")
    before = model.to_records()
    error = rejects("InvalidRequest", getattr(model, method), *args, **options)
    assert error.message == message
    assert model.to_records() == before and notes(model) == []


def test_every_enum_value_aws_takes_is_a_valid_filter(model: JobsModel) -> None:
    add_jobs(model, "j1")
    for status in JOB_STATUSES.split(", "):
        assert [j["jobId"] for j in model.list_jobs(status=status)] == (["j1"] if status == "IN_PROGRESS" else [])
    for status in EXECUTION_STATUSES.split(", "):
        assert len(model.list_job_executions_for_job("j1", status=status)) == (status == "QUEUED")


def test_the_enums_listed_are_those_of_aws_own_models() -> None:
    from botocore.loaders import Loader

    shapes = Loader().load_service_model("iot", "service-2")["shapes"]
    assert JOB_STATUSES.split(", ") == shapes["JobStatus"]["enum"]
    assert EXECUTION_STATUSES.split(", ") == shapes["JobExecutionStatus"]["enum"]
    assert ["CONTINUOUS", "SNAPSHOT"] == shapes["TargetSelection"]["enum"]
    assert ["CANCEL"] == shapes["AbortAction"]["enum"]
    assert ["FAILED", "REJECTED", "TIMED_OUT", "ALL"] == shapes["JobExecutionFailureType"]["enum"]
    device = Loader().load_service_model("iot-jobs-data", "service-2")["shapes"]
    assert EXECUTION_STATUSES.split(", ") == device["JobExecutionStatus"]["enum"]
    members = {name: list(shapes[name]["members"]) for name in (
        "JobExecutionsRolloutConfig", "ExponentialRolloutRate", "RateIncreaseCriteria", "AbortConfig",
        "AbortCriteria", "TimeoutConfig", "PresignedUrlConfig")}
    assert members == {
        "JobExecutionsRolloutConfig": ["maximumPerMinute", "exponentialRate"],
        "ExponentialRolloutRate": ["baseRatePerMinute", "incrementFactor", "rateIncreaseCriteria"],
        "RateIncreaseCriteria": ["numberOfNotifiedThings", "numberOfSucceededThings"],
        "AbortConfig": ["criteriaList"],
        "AbortCriteria": ["failureType", "action", "thresholdPercentage", "minNumberOfExecutedThings"],
        "TimeoutConfig": ["inProgressTimeoutInMinutes"],
        "PresignedUrlConfig": ["roleArn", "expiresInSec"],
    }


def test_cancel_job_cancels_queued_and_leaves_in_progress(model: JobsModel) -> None:
    model.create_job("j1", [thing_arn("t1"), thing_arn("t2")], DOC)
    model.start_next("t1")
    notes(model)
    reply = model.cancel_job("j1", comment="bad build", reason_code="BAD_BUILD")
    assert reply == {"jobArn": "arn:aws:iot:us-east-1:123456789012:job/j1", "jobId": "j1"}
    assert model.describe_job_execution("t2", "j1")["status"] == "CANCELED"
    assert model.describe_job_execution("t1", "j1")["status"] == "IN_PROGRESS"
    assert notes(model) == [("t2", "notify", {"jobs": {}}), ("t2", "notify-next", {})]
    job = model.describe_job("j1")
    assert (job["status"], job["comment"], job["reasonCode"], job["forceCanceled"]) == (
        "CANCELED",
        "bad build",
        "BAD_BUILD",
        False,
    )
    # The device that was already working may still finish.
    assert (
        model.update("t1", "j1", "SUCCEEDED", include_state=True)["executionState"]["status"] == "SUCCEEDED"
    )
    assert model.describe_job("j1")["status"] == "CANCELED"


def test_force_cancel_job_cancels_in_progress_too(model: JobsModel) -> None:
    add_jobs(model, "j1")
    model.start_next("t1")
    model.cancel_job("j1", force=True)
    execution = model.describe_job_execution("t1", "j1")
    assert (execution["status"], execution["forceCanceled"]) == ("CANCELED", True)
    assert notes(model) == [("t1", "notify", {"jobs": {}}), ("t1", "notify-next", {})]
    error = rejects("InvalidStateTransition", model.update, "t1", "j1", "SUCCEEDED")
    assert error.execution_state is not None and error.execution_state["status"] == "CANCELED"


def test_cancel_completed_job_is_invalid(model: JobsModel) -> None:
    add_jobs(model, "j1")
    model.update("t1", "j1", "SUCCEEDED")
    rejects("InvalidRequest", model.cancel_job, "j1")
    rejects("ResourceNotFound", model.cancel_job, "nope")


def test_cancel_job_execution_rules(model: JobsModel) -> None:
    add_jobs(model, "j1", "j2", "j3")
    model.cancel_job_execution("j2", "t1")
    assert notes(model) == [
        (
            "t1",
            "notify",
            {
                "jobs": {
                    "QUEUED": [
                        model.get_pending("t1")["queuedJobs"][0],
                        model.get_pending("t1")["queuedJobs"][1],
                    ]
                }
            },
        ),
    ]
    model.start_next("t1")
    error = rejects("InvalidStateTransition", model.cancel_job_execution, "j1", "t1")
    assert error.execution_state is not None and error.execution_state["status"] == "IN_PROGRESS"
    rejects("VersionMismatch", model.cancel_job_execution, "j1", "t1", force=True, expected_version=1)
    model.cancel_job_execution("j1", "t1", force=True, status_details={"why": "operator"})
    assert model.describe_job_execution("t1", "j1")["statusDetails"] == {"why": "operator"}
    rejects("InvalidStateTransition", model.cancel_job_execution, "j1", "t1", force=True)
    rejects("ResourceNotFound", model.cancel_job_execution, "j1", "t2")
    assert model.describe("t1", "$next")["execution"]["jobId"] == "j3"


def test_delete_job_needs_force_while_in_progress(model: JobsModel) -> None:
    add_jobs(model, "j1", "j2")
    rejects("InvalidStateTransition", model.delete_job, "j1")
    model.delete_job("j1", force=True)
    assert notes(model) == [
        ("t1", "notify", {"jobs": {"QUEUED": model.get_pending("t1")["queuedJobs"]}}),
        ("t1", "notify-next", {"execution": model.describe("t1", "$next")["execution"]}),
    ]
    rejects("ResourceNotFound", model.describe, "t1", "j1")
    rejects("ResourceNotFound", model.describe_job, "j1")
    # A deleted job's id may be used again, and numbering starts over.
    model.create_job("j1", [thing_arn("t1")], DOC)
    assert model.describe("t1", "j1")["execution"]["executionNumber"] == 1


def test_finished_and_canceled_jobs_delete_without_force(model: JobsModel) -> None:
    add_jobs(model, "j1", "j2")
    model.update("t1", "j1", "SUCCEEDED")
    model.cancel_job("j2")
    model.delete_job("j1")
    model.delete_job("j2")
    assert model.jobs == {} and model.get_pending("t1") == {"inProgressJobs": [], "queuedJobs": []}


def test_delete_job_execution(model: JobsModel) -> None:
    model.create_job("j1", [thing_arn("t1"), thing_arn("t2")], DOC)
    rejects("InvalidStateTransition", model.delete_job_execution, "j1", "t1", 1)
    model.update("t1", "j1", "SUCCEEDED")
    model.delete_job_execution("j1", "t1", 1)
    rejects("ResourceNotFound", model.describe_job_execution, "t1", "j1")
    notes(model)
    model.delete_job_execution("j1", "t2", 1, force=True)
    assert notes(model) == [("t2", "notify", {"jobs": {}}), ("t2", "notify-next", {})]
    assert model.describe_job("j1")["status"] == "COMPLETED"


# ---- timers ----------------------------------------------------------------------------------


def test_step_timer_times_the_execution_out(model: JobsModel, clock: ManualClock) -> None:
    add_jobs(model, "j1", "j2")
    model.start_next("t1", step_timeout_min=2)
    clock.advance(119)
    assert model.tick() == []
    clock.advance(1)
    assert model.tick() == [("t1", "j1")]
    state = model.describe_job_execution("t1", "j1")
    assert (state["status"], state["versionNumber"]) == ("TIMED_OUT", 3)
    [notify, notify_next] = notes(model)
    assert notify == ("t1", "notify", {"jobs": {"QUEUED": model.get_pending("t1")["queuedJobs"]}})
    assert notify_next[2]["execution"]["jobId"] == "j2"
    error = rejects("InvalidStateTransition", model.update, "t1", "j1", "SUCCEEDED")
    assert error.execution_state is not None and error.execution_state["status"] == "TIMED_OUT"
    assert model.describe_job("j1")["jobProcessDetails"]["numberOfTimedOutThings"] == 1


def test_step_timer_is_renewed_by_an_update_and_kept_without_one(
    model: JobsModel, clock: ManualClock
) -> None:
    add_jobs(model, "j1")
    model.start_next("t1", step_timeout_min=2)
    clock.advance(100)
    model.update("t1", "j1", "IN_PROGRESS", step_timeout_min=2)
    clock.advance(100)
    model.update("t1", "j1", "IN_PROGRESS", status_details={"p": "1"})  # no new timeout: the old one stands
    assert model.tick() == []
    clock.advance(20)
    assert model.tick() == [("t1", "j1")]


def test_step_timer_is_cancelled_by_minus_one(model: JobsModel, clock: ManualClock) -> None:
    add_jobs(model, "j1")
    model.update("t1", "j1", "IN_PROGRESS", step_timeout_min=1)
    model.update("t1", "j1", "IN_PROGRESS", step_timeout_min=-1)
    clock.advance(7 * 24 * 3600)
    assert model.tick() == []
    assert model.next_deadline() is None


def test_terminal_status_stops_the_timers(model: JobsModel, clock: ManualClock) -> None:
    add_jobs(model, "j1", timeout_config={"inProgressTimeoutInMinutes": 1})
    model.start_next("t1", step_timeout_min=1)
    model.update("t1", "j1", "SUCCEEDED")
    clock.advance(3600)
    assert model.tick() == [] and model.describe_job_execution("t1", "j1")["status"] == "SUCCEEDED"


def test_in_progress_timer_starts_with_in_progress_and_is_not_renewed(
    model: JobsModel, clock: ManualClock
) -> None:
    add_jobs(model, "j1", timeout_config={"inProgressTimeoutInMinutes": 5})
    clock.advance(3600)
    assert model.tick() == []  # still QUEUED: the timer has not started
    model.start_next("t1")
    assert model.next_deadline() == T0 + 3600 + 300
    clock.advance(240)
    model.update("t1", "j1", "IN_PROGRESS", step_timeout_min=10)
    clock.advance(60)
    assert model.tick() == [("t1", "j1")]
    assert model.describe_job("j1")["timeoutConfig"] == {"inProgressTimeoutInMinutes": 5}


def test_timeouts_of_several_things_fire_in_one_tick(model: JobsModel, clock: ManualClock) -> None:
    model.create_job("j1", [thing_arn("t1"), thing_arn("t2")], DOC)
    model.start_next("t1", step_timeout_min=1)
    model.start_next("t2", step_timeout_min=1)
    notes(model)
    clock.advance(60)
    assert sorted(model.tick()) == [("t1", "j1"), ("t2", "j1")]
    assert model.describe_job("j1")["status"] == "COMPLETED"
    assert [(thing, kind) for thing, kind, _ in notes(model)] == [
        ("t1", "notify"),
        ("t1", "notify-next"),
        ("t2", "notify"),
        ("t2", "notify-next"),
    ]


# ---- history ---------------------------------------------------------------------------------


def test_history_records_every_applied_change(model: JobsModel, clock: ManualClock) -> None:
    add_jobs(model, "j1")
    model.start_next("t1", status_details={"step": "1"}, step_timeout_min=1)
    clock.advance(10)
    model.update("t1", "j1", "IN_PROGRESS", status_details={"step": "2"})
    rejects("VersionMismatch", model.update, "t1", "j1", "SUCCEEDED", expected_version=1)
    clock.advance(60)
    model.tick()
    assert model.history("t1", "j1") == [
        {"status": "QUEUED", "statusDetails": {}, "versionNumber": 1, "time": T0, "cause": "created"},
        {
            "status": "IN_PROGRESS",
            "statusDetails": {"step": "1"},
            "versionNumber": 2,
            "time": T0,
            "cause": "start-next",
        },
        {
            "status": "IN_PROGRESS",
            "statusDetails": {"step": "2"},
            "versionNumber": 3,
            "time": T0 + 10,
            "cause": "update",
        },
        {
            "status": "TIMED_OUT",
            "statusDetails": {"step": "2"},
            "versionNumber": 4,
            "time": T0 + 70,
            "cause": "timed-out",
        },
    ]
    assert model.history("t1", "nope") == []


# ---- the MQTT request layer, without a broker --------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "route"),
    [
        ("$aws/things/t1/jobs/get", Route("t1", "get_pending")),
        ("$aws/things/t1/jobs/start-next", Route("t1", "start_next")),
        ("$aws/things/t1/jobs/j1/get", Route("t1", "describe", "j1")),
        ("$aws/things/t1/jobs/$next/get", Route("t1", "describe", "$next")),
        ("$aws/things/t1/jobs/j1/update", Route("t1", "update", "j1")),
        ("$aws/things/a:b_c-d/jobs/get", Route("a:b_c-d", "get_pending")),
        ("$aws/things/t1/jobs/get/accepted", None),
        ("$aws/things/t1/jobs/j1/update/rejected", None),
        ("$aws/things/t1/jobs/bogus/rejected", None),
        ("$aws/things/t1/jobs/notify", None),
        ("$aws/things/t1/jobs/notify-next", None),
        ("$aws/things/t1/shadow/get", None),
        ("$aws/things//jobs/get", None),
        ("things/t1/jobs/get", None),
        ("$aws/things/t1/jobs", Route("t1", INVALID_TOPIC)),
        ("$aws/things/t1/jobs/", Route("t1", INVALID_TOPIC)),
        ("$aws/things/t1/jobs/bogus", Route("t1", INVALID_TOPIC)),
        ("$aws/things/t1/jobs/j1/delete", Route("t1", INVALID_TOPIC)),
        ("$aws/things/t1/jobs/$next/update", Route("t1", INVALID_TOPIC)),
        ("$aws/things/t1/jobs//get", Route("t1", INVALID_TOPIC)),
        ("$aws/things/t1/jobs/j1/get/extra", Route("t1", INVALID_TOPIC)),
        ("$aws/things/t1/jobs/start-next/x", Route("t1", INVALID_TOPIC)),
    ],
)
def test_parse_topic(topic: str, route: Route | None) -> None:
    assert parse_topic(topic) == route


def test_parse_payload() -> None:
    assert parse_payload(b"") == {}
    assert parse_payload(b'{"clientToken": "x"}') == {"clientToken": "x"}
    with pytest.raises(ApiError, match="InvalidJson"):
        parse_payload(b"{not json")
    with pytest.raises(ApiError, match="InvalidJson"):
        parse_payload(b'{"a": "\xff"}')
    with pytest.raises(ApiError, match="InvalidRequest"):
        parse_payload(b"[1, 2]")


@pytest.mark.parametrize(("value", "expected"), [(3, 3), ("3", 3), ("-1", -1), (4.0, 4), (None, None)])
def test_integer_fields_accept_numbers_and_digit_strings(value: Any, expected: int | None) -> None:
    assert integer_field({"n": value}, "n") == expected


@pytest.mark.parametrize("value", ["three", "3.5", "", 3.5, True, [3], {"n": 3}])
def test_integer_fields_reject_anything_else(value: Any) -> None:
    with pytest.raises(ApiError, match="InvalidRequest"):
        integer_field({"n": value}, "n")


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), (False, False), ("false", False), (None, True)]
)
def test_boolean_fields(value: Any, expected: bool) -> None:
    assert boolean_field({"b": value}, "b", True) is expected


def test_boolean_fields_reject_anything_else() -> None:
    with pytest.raises(ApiError, match="InvalidRequest"):
        boolean_field({"b": 1}, "b", True)


def test_call_model_translates_requests(model: JobsModel) -> None:
    add_jobs(model, "j1")
    request = {
        "status": "IN_PROGRESS",
        "expectedVersion": "1",
        "executionNumber": "1",
        "includeJobExecutionState": True,
        "stepTimeoutInMinutes": "5",
    }
    reply = call_model(model, Route("t1", "update", "j1"), request)
    assert reply["executionState"]["versionNumber"] == 2
    assert model.next_deadline() == T0 + 300
    rejects("InvalidRequest", call_model, model, Route("t1", "update", "j1"), {})
    described = call_model(model, Route("t1", "describe", "j1"), {"includeJobDocument": False})
    assert "jobDocument" not in described["execution"]
