"""The local service's REST APIs through boto3: every management, registry and iot-jobs-data command, with errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from botocore.exceptions import ClientError
from paho.mqtt.enums import CallbackAPIVersion

from localjobs.service import JobsService

ARN = "arn:aws:iot:us-east-1:123456789012:"
DOC = json.dumps({"operation": "reboot"})


def thing_arn(name: str) -> str:
    return f"{ARN}thing/{name}"


def group_arn(name: str) -> str:
    return f"{ARN}thinggroup/{name}"


def fails(code: str, status: int, call: Callable[..., Any], /, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    response: dict[str, Any] = caught.value.response
    assert response["Error"]["Code"] == code, response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    return response


def job(iot: Any, job_id: str, *things: str, **options: Any) -> dict[str, Any]:
    reply: dict[str, Any] = iot.create_job(
        jobId=job_id, targets=[thing_arn(t) for t in things], document=options.pop("document", DOC), **options
    )
    return reply


# ---- jobs --------------------------------------------------------------------------------------


def test_create_describe_and_get_document(iot: Any, thing_name: str) -> None:
    reply = job(iot, "j1", thing_name, description="first")
    assert (reply["jobId"], reply["jobArn"], reply["description"]) == ("j1", f"{ARN}job/j1", "first")
    described = iot.describe_job(jobId="j1")["job"]
    assert described["status"] == "IN_PROGRESS" and described["targetSelection"] == "SNAPSHOT"
    assert described["targets"] == [thing_arn(thing_name)]
    assert described["jobProcessDetails"]["numberOfQueuedThings"] == 1
    assert described["createdAt"].timestamp() == 1_700_000_000
    assert iot.get_job_document(jobId="j1")["document"] == DOC


def test_create_job_errors(iot: Any, thing_name: str) -> None:
    job(iot, "j1", thing_name)
    fails("ResourceAlreadyExistsException", 409, job, iot, "j1", thing_name)
    fails("ResourceNotFoundException", 404, job, iot, "j2", "nobody")
    fails("ResourceNotFoundException", 404, iot.create_job, jobId="j2", targets=[group_arn("none")], document=DOC)
    fails("InvalidRequestException", 400, job, iot, "j2", thing_name, document="not json")
    big = json.dumps({"x": "a" * 32 * 1024})
    fails("InvalidRequestException", 400, job, iot, "j2", thing_name, document=big)
    fails("InvalidRequestException", 400, iot.create_job, jobId="j2", targets=["arn:aws:s3:::bucket"], document=DOC)
    fails("InvalidRequestException", 400, job, iot, "j2", thing_name, timeoutConfig={"inProgressTimeoutInMinutes": 0})


def test_list_jobs_filters_and_pages(iot: Any, thing_name: str) -> None:
    iot.create_thing_group(thingGroupName="fleet")
    for n in range(5):
        job(iot, f"j{n}", thing_name)
    iot.create_job(jobId="c1", targets=[group_arn("fleet")], document=DOC, targetSelection="CONTINUOUS")
    iot.cancel_job(jobId="j1")
    assert [j["jobId"] for j in iot.list_jobs()["jobs"]] == ["j0", "j1", "j2", "j3", "j4", "c1"]
    assert [j["jobId"] for j in iot.list_jobs(status="CANCELED")["jobs"]] == ["j1"]
    assert [j["jobId"] for j in iot.list_jobs(targetSelection="CONTINUOUS")["jobs"]] == ["c1"]
    assert [j["jobId"] for j in iot.list_jobs(thingGroupName="fleet")["jobs"]] == ["c1"]
    first = iot.list_jobs(maxResults=4)
    assert len(first["jobs"]) == 4 and "nextToken" in first
    rest = iot.list_jobs(maxResults=4, nextToken=first["nextToken"])
    assert [j["jobId"] for j in rest["jobs"]] == ["j4", "c1"] and "nextToken" not in rest
    pages = iot.get_paginator("list_jobs").paginate(PaginationConfig={"PageSize": 2})
    assert len([j for page in pages for j in page["jobs"]]) == 6
    fails("InvalidRequestException", 400, iot.list_jobs, status="DONE")
    fails("InvalidRequestException", 400, iot.list_jobs, nextToken="garbage")


def test_update_job(iot: Any, iot_data: Any, jobs_http: JobsService, thing_name: str) -> None:
    job(iot, "j1", thing_name)
    iot.update_job(jobId="j1", description="new", timeoutConfig={"inProgressTimeoutInMinutes": 5})
    described = iot.describe_job(jobId="j1")["job"]
    assert described["description"] == "new" and described["timeoutConfig"] == {"inProgressTimeoutInMinutes": 5}
    iot_data.start_next_pending_job_execution(thingName=thing_name)
    execution = iot.describe_job_execution(jobId="j1", thingName=thing_name)["execution"]
    assert execution["approximateSecondsBeforeTimedOut"] == 300
    fails("ResourceNotFoundException", 404, iot.update_job, jobId="nope", description="x")
    fails(
        "InvalidRequestException", 400, iot.update_job, jobId="j1", timeoutConfig={"inProgressTimeoutInMinutes": 20000}
    )


def test_cancel_job(iot: Any, iot_data: Any, thing_name: str) -> None:
    iot.create_thing(thingName="other")
    job(iot, "j1", thing_name, "other")
    iot_data.start_next_pending_job_execution(thingName=thing_name)
    reply = iot.cancel_job(jobId="j1", comment="bad build", reasonCode="BAD_BUILD")
    assert reply["jobId"] == "j1"
    described = iot.describe_job(jobId="j1")["job"]
    assert (described["status"], described["comment"], described["reasonCode"]) == (
        "CANCELED",
        "bad build",
        "BAD_BUILD",
    )
    assert not described["forceCanceled"]
    # Without force the IN_PROGRESS execution carries on; with force it is canceled too.
    assert iot.describe_job_execution(jobId="j1", thingName="other")["execution"]["status"] == "CANCELED"
    assert iot.describe_job_execution(jobId="j1", thingName=thing_name)["execution"]["status"] == "IN_PROGRESS"
    iot.cancel_job(jobId="j1", force=True)
    execution = iot.describe_job_execution(jobId="j1", thingName=thing_name)["execution"]
    assert execution["status"] == "CANCELED" and execution["forceCanceled"]
    assert iot.describe_job(jobId="j1")["job"]["forceCanceled"]
    fails("ResourceNotFoundException", 404, iot.cancel_job, jobId="nope")
    job(iot, "j2", thing_name)
    iot.cancel_job_execution(jobId="j2", thingName=thing_name)
    assert iot.describe_job(jobId="j2")["job"]["status"] == "COMPLETED"
    fails("InvalidRequestException", 400, iot.cancel_job, jobId="j2")
    fails("InvalidRequestException", 400, iot.cancel_job, jobId="j1", reasonCode="lower case")


def test_delete_job(iot: Any, thing_name: str) -> None:
    job(iot, "j1", thing_name)
    fails("InvalidStateTransitionException", 409, iot.delete_job, jobId="j1")
    iot.delete_job(jobId="j1", force=True)
    fails("ResourceNotFoundException", 404, iot.describe_job, jobId="j1")
    assert iot.list_job_executions_for_thing(thingName=thing_name)["executionSummaries"] == []
    fails("ResourceNotFoundException", 404, iot.delete_job, jobId="j1")
    job(iot, "j1", thing_name)
    iot.cancel_job(jobId="j1")
    iot.delete_job(jobId="j1")


def test_associate_targets_with_continuous_job(iot: Any, iot_data: Any, thing_name: str) -> None:
    iot.create_thing_group(thingGroupName="g1")
    iot.create_thing(thingName="late")
    iot.create_job(jobId="c1", targets=[thing_arn(thing_name)], document=DOC, targetSelection="CONTINUOUS")
    iot.add_thing_to_thing_group(thingGroupName="g1", thingName="late")
    reply = iot.associate_targets_with_job(jobId="c1", targets=[group_arn("g1")], comment="more")
    assert reply["jobId"] == "c1"
    described = iot.describe_job(jobId="c1")["job"]
    assert described["targets"] == [thing_arn(thing_name), group_arn("g1")] and described["comment"] == "more"
    assert [j["jobId"] for j in iot_data.get_pending_job_executions(thingName="late")["queuedJobs"]] == ["c1"]
    job(iot, "s1", thing_name)
    fails("InvalidRequestException", 400, iot.associate_targets_with_job, jobId="s1", targets=[group_arn("g1")])
    fails("ResourceNotFoundException", 404, iot.associate_targets_with_job, jobId="c1", targets=[group_arn("g2")])
    fails("ResourceNotFoundException", 404, iot.associate_targets_with_job, jobId="nope", targets=[group_arn("g1")])


def test_a_bare_thing_name_in_targets_is_refused_naming_it(iot: Any, thing_name: str) -> None:
    error = fails("InvalidRequestException", 400, iot.create_job, jobId="j1", targets=[thing_name], document=DOC)
    assert error["Error"]["Message"] == (
        f"Invalid target {thing_name}: targets are thing or thing group ARNs, not names "
        f"(thing {thing_name} is {thing_arn(thing_name)})"
    )
    iot.create_job(jobId="c1", targets=[thing_arn(thing_name)], document=DOC, targetSelection="CONTINUOUS")
    iot.create_thing_group(thingGroupName="g1")
    error = fails("InvalidRequestException", 400, iot.associate_targets_with_job, jobId="c1", targets=["g1"])
    assert error["Error"]["Message"].startswith("Invalid target g1: targets are thing or thing group ARNs")
    assert [j["jobId"] for j in iot.list_jobs()["jobs"]] == ["c1"]
    assert iot.describe_job(jobId="c1")["job"]["targets"] == [thing_arn(thing_name)]


def test_processing_targets_over_http(iot: Any, iot_data: Any, thing_name: str) -> None:
    iot.create_thing(thingName="t2")
    job(iot, "j1", thing_name, "t2")
    assert "processingTargets" not in iot.describe_job(jobId="j1")["job"]["jobProcessDetails"]
    iot_data.start_next_pending_job_execution(thingName="t2")
    iot_data.start_next_pending_job_execution(thingName=thing_name)
    details = iot.describe_job(jobId="j1")["job"]["jobProcessDetails"]
    assert details["processingTargets"] == [thing_arn(thing_name), thing_arn("t2")]
    assert (details["numberOfInProgressThings"], details["numberOfQueuedThings"]) == (2, 0)
    iot_data.update_job_execution(thingName="t2", jobId="j1", status="SUCCEEDED")
    assert iot.describe_job(jobId="j1")["job"]["jobProcessDetails"]["processingTargets"] == [thing_arn(thing_name)]


EXECUTION_STATUSES = "QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED, CANCELED"


@pytest.mark.parametrize(
    ("client", "call", "args", "where", "values"),
    [
        ("iot", "list_jobs", {"status": "SUCCEEDED"}, "status",
         "IN_PROGRESS, CANCELED, COMPLETED, DELETION_IN_PROGRESS, SCHEDULED"),
        ("iot", "list_jobs", {"targetSelection": "ONCE"}, "targetSelection", "CONTINUOUS, SNAPSHOT"),
        ("iot", "create_job", {"jobId": "j2", "targets": "THING", "document": DOC, "targetSelection": "ONCE"},
         "targetSelection", "CONTINUOUS, SNAPSHOT"),
        ("iot", "list_job_executions_for_job", {"jobId": "j1", "status": "DONE"}, "status", EXECUTION_STATUSES),
        ("iot", "list_job_executions_for_thing", {"thingName": "THING", "status": "DONE"}, "status",
         EXECUTION_STATUSES),
        ("iot", "update_job", {"jobId": "j1", "abortConfig": {"criteriaList": [
            {"action": "CANCEL", "failureType": "SOME", "minNumberOfExecutedThings": 1, "thresholdPercentage": 5}]}},
         "abortConfig.criteriaList.1.member.failureType", "FAILED, REJECTED, TIMED_OUT, ALL"),
        ("iot-jobs-data", "update_job_execution", {"thingName": "THING", "jobId": "j1", "status": "DONE"}, "status",
         EXECUTION_STATUSES),
    ],
)
def test_an_unknown_enum_value_lists_the_valid_ones(
    iot: Any, iot_data: Any, thing_name: str, client: str, call: str, args: dict[str, Any], where: str, values: str
) -> None:
    job(iot, "j1", thing_name)
    things = {"thingName": thing_name, "targets": [thing_arn(thing_name)]}
    args = {key: things[key] if value == "THING" else value for key, value in args.items()}
    member = where.rsplit(".", 1)[-1]
    bad = args.get(member) or args["abortConfig"]["criteriaList"][0][member]
    error = fails("InvalidRequestException", 400, getattr(iot if client == "iot" else iot_data, call), **args)
    assert error["Error"]["Message"] == (
        f"1 validation error detected: Value '{bad}' at '{where}' failed to satisfy constraint: "
        f"Member must satisfy enum value set: [{values}]"
    )
    assert [j["jobId"] for j in iot.list_jobs()["jobs"]] == ["j1"]


def test_list_job_executions(iot: Any, iot_data: Any, thing_name: str) -> None:
    iot.create_thing(thingName="t2")
    job(iot, "j1", thing_name, "t2")
    job(iot, "j2", thing_name)
    iot_data.start_next_pending_job_execution(thingName=thing_name)
    for_job = iot.list_job_executions_for_job(jobId="j1")["executionSummaries"]
    assert [(e["thingArn"], e["jobExecutionSummary"]["status"]) for e in for_job] == [
        (thing_arn(thing_name), "IN_PROGRESS"),
        (thing_arn("t2"), "QUEUED"),
    ]
    queued = iot.list_job_executions_for_job(jobId="j1", status="QUEUED")["executionSummaries"]
    assert [e["thingArn"] for e in queued] == [thing_arn("t2")]
    page = iot.list_job_executions_for_job(jobId="j1", maxResults=1)
    assert len(page["executionSummaries"]) == 1 and page["nextToken"]
    for_thing = iot.list_job_executions_for_thing(thingName=thing_name)["executionSummaries"]
    assert [(e["jobId"], e["jobExecutionSummary"]["executionNumber"]) for e in for_thing] == [("j1", 1), ("j2", 1)]
    assert [
        e["jobId"]
        for e in iot.list_job_executions_for_thing(thingName=thing_name, status="QUEUED")["executionSummaries"]
    ] == ["j2"]
    page = iot.list_job_executions_for_thing(thingName=thing_name, maxResults=1)
    nxt = iot.list_job_executions_for_thing(thingName=thing_name, maxResults=1, nextToken=page["nextToken"])
    assert [e["jobId"] for e in nxt["executionSummaries"]] == ["j2"] and "nextToken" not in nxt
    fails("ResourceNotFoundException", 404, iot.list_job_executions_for_job, jobId="nope")
    fails("InvalidRequestException", 400, iot.list_job_executions_for_thing, thingName=thing_name, status="DONE")
    fails("InvalidRequestException", 400, iot.list_job_executions_for_job, jobId="j1", maxResults=251)


def test_describe_job_execution(iot: Any, iot_data: Any, thing_name: str) -> None:
    job(iot, "j1", thing_name)
    iot_data.start_next_pending_job_execution(thingName=thing_name, statusDetails={"step": "1"})
    execution = iot.describe_job_execution(jobId="j1", thingName=thing_name, executionNumber=1)["execution"]
    assert execution["statusDetails"] == {"detailsMap": {"step": "1"}}
    assert (execution["status"], execution["versionNumber"], execution["executionNumber"]) == ("IN_PROGRESS", 2, 1)
    assert execution["thingArn"] == thing_arn(thing_name) and execution["forceCanceled"] is False
    fails(
        "ResourceNotFoundException",
        404,
        iot.describe_job_execution,
        jobId="j1",
        thingName=thing_name,
        executionNumber=2,
    )
    fails("ResourceNotFoundException", 404, iot.describe_job_execution, jobId="j9", thingName=thing_name)


def test_cancel_job_execution(iot: Any, iot_data: Any, thing_name: str) -> None:
    job(iot, "j1", thing_name)
    iot_data.start_next_pending_job_execution(thingName=thing_name)
    reply = fails("InvalidStateTransitionException", 409, iot.cancel_job_execution, jobId="j1", thingName=thing_name)
    assert "executionState" not in reply["Error"] or reply["Error"]["executionState"]["status"] == "IN_PROGRESS"
    fails(
        "VersionConflictException", 409,
        iot.cancel_job_execution, jobId="j1", thingName=thing_name, force=True, expectedVersion=7,
    )  # fmt: skip
    fails(
        "InvalidRequestException", 400,
        iot.cancel_job_execution, jobId="j1", thingName=thing_name, force=True, statusDetails={"bad key!": "x"},
    )  # fmt: skip
    iot.cancel_job_execution(
        jobId="j1", thingName=thing_name, force=True, expectedVersion=2, statusDetails={"by": "op"}
    )
    execution = iot.describe_job_execution(jobId="j1", thingName=thing_name)["execution"]
    assert (execution["status"], execution["statusDetails"]["detailsMap"]) == ("CANCELED", {"by": "op"})
    fails("InvalidStateTransitionException", 409, iot.cancel_job_execution, jobId="j1", thingName=thing_name)
    fails("ResourceNotFoundException", 404, iot.cancel_job_execution, jobId="j9", thingName=thing_name)


def test_delete_job_execution(iot: Any, iot_data: Any, thing_name: str) -> None:
    job(iot, "j1", thing_name)
    args = {"jobId": "j1", "thingName": thing_name, "executionNumber": 1}
    fails("InvalidStateTransitionException", 409, iot.delete_job_execution, **args)
    iot.delete_job_execution(force=True, **args)
    fails("ResourceNotFoundException", 404, iot.delete_job_execution, **args)
    assert iot.list_job_executions_for_job(jobId="j1")["executionSummaries"] == []


# ---- registry ----------------------------------------------------------------------------------


def test_things(iot: Any, thing_name: str) -> None:
    created = iot.create_thing(thingName="t2", attributePayload={"attributes": {"model": "esp32"}})
    assert created["thingArn"] == thing_arn("t2")
    assert iot.create_thing(thingName="t2")["thingId"] == created["thingId"]  # idempotent
    fails("ResourceAlreadyExistsException", 409, iot.create_thing, thingName="t2",
          attributePayload={"attributes": {"model": "other"}})  # fmt: skip
    described = iot.describe_thing(thingName="t2")
    assert (described["thingName"], described["attributes"], described["version"]) == ("t2", {"model": "esp32"}, 1)
    assert [t["thingName"] for t in iot.list_things()["things"]] == [thing_name, "t2"]
    assert [t["thingName"] for t in iot.list_things(attributeName="model", attributeValue="esp32")["things"]] == ["t2"]
    assert len(iot.list_things(maxResults=1)["things"]) == 1
    fails("InvalidRequestException", 400, iot.create_thing, thingName="bad name")
    fails("VersionConflictException", 409, iot.delete_thing, thingName="t2", expectedVersion=9)
    iot.delete_thing(thingName="t2")
    fails("ResourceNotFoundException", 404, iot.describe_thing, thingName="t2")


def test_thing_groups(iot: Any, thing_name: str) -> None:
    reply = iot.create_thing_group(thingGroupName="g1", thingGroupProperties={"thingGroupDescription": "lab"})
    assert reply["thingGroupArn"] == group_arn("g1")
    fails("ResourceAlreadyExistsException", 409, iot.create_thing_group, thingGroupName="g1",
          thingGroupProperties={"thingGroupDescription": "other"})  # fmt: skip
    iot.add_thing_to_thing_group(thingGroupName="g1", thingName=thing_name)
    iot.add_thing_to_thing_group(thingGroupArn=group_arn("g1"), thingArn=thing_arn(thing_name))
    assert iot.list_things_in_thing_group(thingGroupName="g1")["things"] == [thing_name]
    iot.remove_thing_from_thing_group(thingGroupArn=group_arn("g1"), thingName=thing_name)
    assert iot.list_things_in_thing_group(thingGroupName="g1")["things"] == []
    fails("ResourceNotFoundException", 404, iot.add_thing_to_thing_group, thingGroupName="g2", thingName=thing_name)
    fails("ResourceNotFoundException", 404, iot.add_thing_to_thing_group, thingGroupName="g1", thingName="nobody")
    iot.delete_thing_group(thingGroupName="g1")
    fails("ResourceNotFoundException", 404, iot.describe_thing_group, thingGroupName="g1")


def test_describe_endpoint(iot: Any, jobs_http: JobsService) -> None:
    assert iot.describe_endpoint(endpointType="iot:Jobs")["endpointAddress"] == jobs_http.http_url[len("http://") :]
    assert iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"] == f"{jobs_http.host}:{jobs_http.port}"
    fails("InvalidRequestException", 400, iot.describe_endpoint, endpointType="iot:CredentialProvider")


def test_unknown_route_is_a_rest_json_error(jobs_http: JobsService) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(jobs_http.http_url + "/nowhere")
    assert caught.value.code == 404 and caught.value.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert "message" in json.loads(caught.value.read())


# ---- iot-jobs-data -----------------------------------------------------------------------------


def test_device_api_over_https(iot: Any, iot_data: Any, thing_name: str) -> None:
    job(iot, "j1", thing_name)
    job(iot, "j2", thing_name)
    pending = iot_data.get_pending_job_executions(thingName=thing_name)
    assert [j["jobId"] for j in pending["queuedJobs"]] == ["j1", "j2"] and pending["inProgressJobs"] == []
    started = iot_data.start_next_pending_job_execution(thingName=thing_name, stepTimeoutInMinutes=10)["execution"]
    assert (started["jobId"], started["status"], started["versionNumber"]) == ("j1", "IN_PROGRESS", 2)
    assert json.loads(started["jobDocument"]) == json.loads(DOC)  # a string in iot-jobs-data
    nxt = iot_data.describe_job_execution(thingName=thing_name, jobId="$next", includeJobDocument=False)["execution"]
    assert nxt["jobId"] == "j1" and "jobDocument" not in nxt and nxt["approximateSecondsBeforeTimedOut"] == 600
    reply = iot_data.update_job_execution(
        thingName=thing_name, jobId="j1", status="IN_PROGRESS", statusDetails={"progress": "50"},
        expectedVersion=2, includeJobExecutionState=True, includeJobDocument=True,
    )  # fmt: skip
    assert reply["executionState"] == {"status": "IN_PROGRESS", "statusDetails": {"progress": "50"}, "versionNumber": 3}
    assert json.loads(reply["jobDocument"]) == json.loads(DOC)
    error = fails(
        "InvalidStateTransitionException", 409,
        iot_data.update_job_execution, thingName=thing_name, jobId="j1", status="SUCCEEDED", expectedVersion=1,
    )  # fmt: skip
    assert "version" in error["Error"]["Message"]
    iot_data.update_job_execution(thingName=thing_name, jobId="j1", status="SUCCEEDED")
    fails("TerminalStateException", 410, iot_data.describe_job_execution, thingName=thing_name, jobId="j1")
    fails(
        "InvalidStateTransitionException", 409,
        iot_data.update_job_execution, thingName=thing_name, jobId="j1", status="FAILED",
    )  # fmt: skip
    fails(
        "InvalidRequestException", 400,
        iot_data.update_job_execution, thingName=thing_name, jobId="j2", status="CANCELED",
    )  # fmt: skip
    fails(
        "InvalidRequestException", 400,
        iot_data.update_job_execution, thingName=thing_name, jobId="j2", status="IN_PROGRESS",
        statusDetails={"k": "\u0007"},
    )  # fmt: skip
    fails("ResourceNotFoundException", 404, iot_data.describe_job_execution, thingName=thing_name, jobId="j9")
    iot_data.update_job_execution(thingName=thing_name, jobId="j2", status="REJECTED")
    assert iot_data.start_next_pending_job_execution(thingName=thing_name).get("execution") is None
    fails("ResourceNotFoundException", 404, iot_data.describe_job_execution, thingName=thing_name, jobId="$next")


def test_http_changes_notify_devices_over_mqtt(
    iot: Any, iot_data: Any, jobs_http: JobsService, thing_name: str
) -> None:
    """A job created over HTTP reaches a device subscribed over MQTT, as with AWS."""
    import queue

    received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{thing_name}-dev")
    device.on_message = lambda c, u, m: received.put((m.topic.rsplit("/", 1)[1], json.loads(m.payload)))
    subscribed = __import__("threading").Event()
    device.on_subscribe = lambda *a: subscribed.set()
    device.connect(jobs_http.host, jobs_http.port)
    device.loop_start()
    try:
        device.subscribe(f"$aws/things/{thing_name}/jobs/notify-next", qos=1)
        assert subscribed.wait(5)
        job(iot, "j1", thing_name)
        kind, payload = received.get(timeout=5)
        assert kind == "notify-next" and payload["execution"]["jobId"] == "j1"
        iot_data.start_next_pending_job_execution(thingName=thing_name)
        iot_data.update_job_execution(thingName=thing_name, jobId="j1", status="SUCCEEDED")
        kind, payload = received.get(timeout=5)
        assert kind == "notify-next" and "execution" not in payload
    finally:
        device.disconnect()
        device.loop_stop()


def test_aws_cli_readme_example_through_botocore(jobs_http: JobsService, thing_name: str) -> None:
    """README: `aws iot create-job --endpoint-url http://127.0.0.1:PORT --job-id ... --targets ... --document ...`.

    The aws CLI turns that into this botocore call (same service model, same serializer).
    """
    import botocore.session

    session = botocore.session.get_session()
    client = session.create_client("iot", endpoint_url=jobs_http.http_url, region_name="us-east-1",
                                   aws_access_key_id="x", aws_secret_access_key="y")  # fmt: skip
    client.create_thing(thingName="my-thing")
    reply = client.create_job(jobId="greet-1", targets=[thing_arn("my-thing")], document='{"operation":"greet"}')
    assert reply["jobArn"] == f"{ARN}job/greet-1"
    assert client.describe_job_execution(jobId="greet-1", thingName="my-thing")["execution"]["status"] == "QUEUED"
