"""AWS's own device SDKs run a job end to end against mosquitto and the local service (plain TCP, no TLS).

- SDK v2 (`awsiotsdk`): IotJobsClientV2 over an awscrt `mqtt.Connection` built without a TLS context,
  which awscrt allows (`mqtt_connection_builder` always adds TLS, so it is not used).
- SDK v1 (`AWSIoTPythonSDK`): AWSIoTMQTTThingJobsClient with `configureEndpoint` and no
  `configureCredentials`: its vendored paho then connects in plain TCP, no trick needed.
The jobs are created through boto3 on the service's HTTP port, as an operator would.
"""

from __future__ import annotations

import json
import queue
from typing import Any

import pytest

from localjobs.service import JobsService

ARN = "arn:aws:iot:us-east-1:123456789012:thing/"
WAIT = 10.0


def test_sdk_v2_jobs_client_runs_a_job(jobs_http: JobsService, iot: Any, thing_name: str) -> None:
    from awscrt import mqtt, mqtt_request_response
    from awsiot import ServiceStreamOptions, V2ServiceException, iotjobs

    client = mqtt.Client(None, None)
    connection = mqtt.Connection(client, jobs_http.host, jobs_http.port, f"{thing_name}-v2", keep_alive_secs=30)
    connection.connect().result(WAIT)
    try:
        options = mqtt_request_response.ClientOptions(
            max_request_response_subscriptions=4, max_streaming_subscriptions=2, operation_timeout_in_seconds=10
        )
        jobs = iotjobs.IotJobsClientV2(connection, options)
        events: queue.Queue[Any] = queue.Queue()
        statuses: queue.Queue[Any] = queue.Queue()
        stream = jobs.create_next_job_execution_changed_stream(
            iotjobs.NextJobExecutionChangedSubscriptionRequest(thing_name=thing_name),
            ServiceStreamOptions(incoming_event_listener=events.put, subscription_status_listener=statuses.put),
        )
        stream.open()
        established = mqtt_request_response.SubscriptionStatusEventType.SUBSCRIPTION_ESTABLISHED
        assert statuses.get(timeout=WAIT).type == established

        iot.create_job(jobId="v2-job", targets=[ARN + thing_name], document=json.dumps({"operation": "blink"}))
        event = events.get(timeout=WAIT)
        assert event.execution.job_id == "v2-job" and event.execution.job_document == {"operation": "blink"}

        pending = jobs.get_pending_job_executions(
            iotjobs.GetPendingJobExecutionsRequest(thing_name=thing_name)
        ).result(WAIT)
        assert [j.job_id for j in pending.queued_jobs] == ["v2-job"]
        started = jobs.start_next_pending_job_execution(
            iotjobs.StartNextPendingJobExecutionRequest(thing_name=thing_name, step_timeout_in_minutes=5)
        ).result(WAIT)
        assert started.execution.status == "IN_PROGRESS" and started.execution.version_number == 2
        described = jobs.describe_job_execution(
            iotjobs.DescribeJobExecutionRequest(thing_name=thing_name, job_id="v2-job", include_job_document=False)
        ).result(WAIT)
        assert described.execution.status == "IN_PROGRESS"
        with pytest.raises(V2ServiceException) as caught:
            jobs.update_job_execution(
                iotjobs.UpdateJobExecutionRequest(
                    thing_name=thing_name, job_id="v2-job", status="SUCCEEDED", expected_version=1
                )
            ).result(WAIT)
        assert caught.value.modeled_error.code == "VersionMismatch"
        assert caught.value.modeled_error.execution_state.version_number == 2
        updated = jobs.update_job_execution(
            iotjobs.UpdateJobExecutionRequest(
                thing_name=thing_name,
                job_id="v2-job",
                status="SUCCEEDED",
                status_details={"result": "ok"},
                expected_version=2,
                include_job_execution_state=True,
            )
        ).result(WAIT)
        assert updated.execution_state.status == "SUCCEEDED" and updated.execution_state.version_number == 3
        assert events.get(timeout=WAIT).execution is None  # nothing left: notify-next with no execution
    finally:
        connection.disconnect().result(WAIT)
    execution = iot.describe_job_execution(jobId="v2-job", thingName=thing_name)["execution"]
    assert execution["status"] == "SUCCEEDED" and execution["statusDetails"] == {"detailsMap": {"result": "ok"}}
    assert iot.describe_job(jobId="v2-job")["job"]["status"] == "COMPLETED"


def test_sdk_v1_thing_jobs_client_runs_a_job(jobs_http: JobsService, iot: Any, thing_name: str) -> None:
    from AWSIoTPythonSDK.core.jobs.thingJobManager import (
        jobExecutionStatus,
        jobExecutionTopicReplyType,
        jobExecutionTopicType,
    )
    from AWSIoTPythonSDK.MQTTLib import AWSIoTMQTTThingJobsClient

    client = AWSIoTMQTTThingJobsClient(f"{thing_name}-v1", thing_name, QoS=1)
    client.configureEndpoint(jobs_http.host, jobs_http.port)
    client.configureConnectDisconnectTimeout(10)
    client.configureMQTTOperationTimeout(5)
    assert client.connect(keepAliveIntervalSecond=30)
    replies: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    def received(_client: Any, _userdata: Any, message: Any) -> None:
        replies.put((message.topic.split("/jobs/", 1)[1], json.loads(message.payload)))

    try:
        accepted = jobExecutionTopicReplyType.JOB_ACCEPTED_REPLY_TYPE
        rejected = jobExecutionTopicReplyType.JOB_REJECTED_REPLY_TYPE
        assert client.createJobSubscription(received, jobExecutionTopicType.JOB_NOTIFY_NEXT_TOPIC)
        assert client.createJobSubscription(received, jobExecutionTopicType.JOB_START_NEXT_TOPIC, accepted)
        for reply in (accepted, rejected):
            assert client.createJobSubscription(received, jobExecutionTopicType.JOB_UPDATE_TOPIC, reply, "+")

        iot.create_job(jobId="v1-job", targets=[ARN + thing_name], document=json.dumps({"operation": "blink"}))
        topic, payload = replies.get(timeout=WAIT)
        assert topic == "notify-next" and payload["execution"]["jobId"] == "v1-job"

        assert client.sendJobsStartNext(statusDetails={"step": "1"}, stepTimeoutInMinutes=5)
        topic, payload = replies.get(timeout=WAIT)
        assert topic == "start-next/accepted" and payload["execution"]["jobDocument"] == {"operation": "blink"}
        version = payload["execution"]["versionNumber"]

        # SDK v1 sends expectedVersion and executionNumber as strings: the service takes them.
        succeeded = jobExecutionStatus.JOB_EXECUTION_SUCCEEDED
        assert client.sendJobsUpdate("v1-job", succeeded, {"result": "ok"}, expectedVersion=version - 1)
        topic, payload = replies.get(timeout=WAIT)
        assert topic == "v1-job/update/rejected" and payload["code"] == "VersionMismatch"
        assert client.sendJobsUpdate("v1-job", succeeded, {"result": "ok"}, expectedVersion=version, executionNumber=1)
        topic, payload = replies.get(timeout=WAIT)
        assert topic == "v1-job/update/accepted" and payload["clientToken"] == f"{thing_name}-v1"
        topic, payload = replies.get(timeout=WAIT)
        assert topic == "notify-next" and "execution" not in payload
    finally:
        client.disconnect()
    execution = iot.describe_job_execution(jobId="v1-job", thingName=thing_name)["execution"]
    assert execution["status"] == "SUCCEEDED" and execution["versionNumber"] == version + 1
