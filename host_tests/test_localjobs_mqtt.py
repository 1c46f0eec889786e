"""The local Jobs service end to end: a paho client plays the device against mosquitto and the service."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from localjobs import certs
from localjobs.broker import Mosquitto
from localjobs.certs import CertificateFolder
from localjobs.clock import ManualClock
from localjobs.model import thing_arn
from localjobs.mqtt_api import no_delay
from localjobs.service import JobsService

WAIT = 5.0
DOC = {"operation": "install", "url": "https://example.com/fw.bin"}
CLI = Path(sys.executable).parent / "iotjobs-local"
ANSWERS = ("accepted", "rejected")
NOTIFICATIONS = ("notify", "notify-next")


class Device:
    """A thing on MQTT: publishes requests and sorts what it hears into replies and notifications."""

    def __init__(self, broker_host: str, broker_port: int, thing: str) -> None:
        self.thing = thing
        self.base = f"$aws/things/{thing}/jobs"
        self.heard: queue.Queue[tuple[str, bytes | bytearray]] = queue.Queue()
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{thing}-device")
        subscribed = threading.Event()
        self.client.on_message = lambda c, u, m: self.heard.put((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
        self.client.on_connect = lambda c, u, f, rc, p: no_delay(c)
        self.client.connect(broker_host, broker_port)
        self.client.subscribe(self.base + "/#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, suffix: str, payload: dict[str, Any] | bytes | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload or {}).encode()
        self.client.publish(f"{self.base}/{suffix}", data, qos=1).wait_for_publish(WAIT)

    def request(
        self, suffix: str, payload: dict[str, Any] | bytes | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Publish a request, return (accepted|rejected, reply); notifications heard meanwhile are kept."""
        self.publish(suffix, payload)
        token = payload.get("clientToken") if isinstance(payload, dict) else None
        return self.reply_to(f"{self.base}/{suffix}", token)

    def reply_to(self, topic: str, token: str | None = None) -> tuple[str, dict[str, Any]]:
        while True:
            heard, body = self.next_message()
            parent, _, outcome = heard.rpartition("/")
            if parent == topic and outcome in ANSWERS and (token is None or body.get("clientToken") == token):
                return outcome, body

    def next_message(self) -> tuple[str, dict[str, Any]]:
        while True:
            topic, payload = self.heard.get(timeout=WAIT)
            kind = topic.rpartition("/")[2]
            if kind in ANSWERS:
                return topic, json.loads(payload)
            if kind in NOTIFICATIONS:
                self.notifications.append((kind, json.loads(payload)))
            # Anything else is the device's own request coming back through its `#` subscription.

    def heard_since_last_time(self) -> list[tuple[str, dict[str, Any]]]:
        """Every notification sent so far, in order, and forget them.

        A GetPendingJobExecutions round trip is the barrier: the service publishes a request's
        notifications before it answers the next request, so nothing can still be on its way.
        """
        self.request("get", {"clientToken": f"barrier-{uuid.uuid4()}"})
        taken, self.notifications = self.notifications, []
        return taken

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.heard_since_last_time()]


@pytest.fixture
def device(mosquitto: Mosquitto, thing_name: str) -> Iterator[Device]:
    d = Device(mosquitto.host, mosquitto.port, thing_name)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def service(jobs_service_manual_clock: JobsService) -> JobsService:
    return jobs_service_manual_clock


def start_job(service: JobsService, device: Device, job_id: str = "j1") -> dict[str, Any]:
    service.create_job(job_id, [thing_arn(device.thing)], DOC)
    outcome, reply = device.request("start-next")
    assert outcome == "accepted"
    device.heard_since_last_time()
    return reply


# ---- every device API ------------------------------------------------------------------------


def test_get_pending_lists_jobs_and_echoes_the_client_token(service: JobsService, device: Device) -> None:
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    service.create_job("j2", [thing_arn(device.thing)], DOC)
    outcome, reply = device.request("get", {"clientToken": "tok-1"})
    assert outcome == "accepted"
    assert reply["clientToken"] == "tok-1"
    assert reply["timestamp"] == 1_700_000_000 and isinstance(reply["timestamp"], int)
    assert reply["inProgressJobs"] == []
    assert [(j["jobId"], j["versionNumber"], j["executionNumber"]) for j in reply["queuedJobs"]] == [
        ("j1", 1, 1),
        ("j2", 1, 1),
    ]


def test_empty_payloads_are_empty_requests(service: JobsService, device: Device) -> None:
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    outcome, reply = device.request("get", b"")
    assert outcome == "accepted" and "clientToken" not in reply
    outcome, reply = device.request("$next/get", b"")
    assert outcome == "accepted" and reply["execution"]["jobId"] == "j1"
    outcome, reply = device.request("start-next", b"")
    assert outcome == "accepted" and reply["execution"]["status"] == "IN_PROGRESS"


def test_start_next_starts_the_job_and_sends_the_document_as_an_object(
    service: JobsService, device: Device
) -> None:
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    outcome, reply = device.request(
        "start-next", {"clientToken": "c", "statusDetails": {"step": "download"}, "stepTimeoutInMinutes": 5}
    )
    assert outcome == "accepted"
    execution = reply["execution"]
    assert execution["jobDocument"] == DOC
    assert (execution["status"], execution["versionNumber"], execution["statusDetails"]) == (
        "IN_PROGRESS",
        2,
        {"step": "download"},
    )
    assert execution["startedAt"] == execution["queuedAt"] == 1_700_000_000
    assert service.status(device.thing, "j1") == "IN_PROGRESS"
    assert [h["cause"] for h in service.history(device.thing, "j1")] == ["created", "start-next"]


def test_start_next_with_nothing_pending_is_accepted_without_execution(
    service: JobsService, device: Device
) -> None:
    outcome, reply = device.request("start-next", {"clientToken": "c"})
    assert outcome == "accepted" and "execution" not in reply and reply["clientToken"] == "c"


def test_describe_by_id_number_and_next(service: JobsService, device: Device) -> None:
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    outcome, reply = device.request("j1/get", {"clientToken": "d1"})
    assert outcome == "accepted" and reply["execution"]["jobDocument"] == DOC
    outcome, reply = device.request("j1/get", {"executionNumber": "1", "includeJobDocument": False})
    assert outcome == "accepted" and "jobDocument" not in reply["execution"]
    outcome, reply = device.request("$next/get", {"executionNumber": 1})
    assert outcome == "accepted" and reply["execution"]["jobId"] == "j1"
    device.request("j1/update", {"status": "SUCCEEDED"})
    outcome, reply = device.request("$next/get", {"clientToken": "d2"})
    assert outcome == "accepted" and "execution" not in reply and reply["clientToken"] == "d2"


def test_update_applies_and_answers_what_was_asked(service: JobsService, device: Device) -> None:
    start_job(service, device)
    outcome, reply = device.request(
        "j1/update",
        {
            "status": "IN_PROGRESS",
            "statusDetails": {"progress": "50"},
            "expectedVersion": "2",  # SDK v1 sends digit strings
            "includeJobExecutionState": True,
            "includeJobDocument": True,
            "clientToken": "u1",
        },
    )
    assert outcome == "accepted"
    assert reply["executionState"] == {
        "status": "IN_PROGRESS",
        "statusDetails": {"progress": "50"},
        "versionNumber": 3,
    }
    assert reply["jobDocument"] == DOC and reply["clientToken"] == "u1"
    outcome, reply = device.request("j1/update", {"status": "SUCCEEDED", "expectedVersion": 3})
    assert outcome == "accepted" and set(reply) == {"timestamp"}
    assert [h["status"] for h in service.history(device.thing, "j1")] == [
        "QUEUED",
        "IN_PROGRESS",
        "IN_PROGRESS",
        "SUCCEEDED",
    ]
    assert service.describe_job("j1")["status"] == "COMPLETED"


def test_a_burst_of_updates_is_applied_in_order(service: JobsService, device: Device) -> None:
    start_job(service, device)
    for step in range(30):
        device.publish("j1/update", {"status": "IN_PROGRESS", "statusDetails": {"step": str(step)}})
    assert service.wait_until(lambda: len(service.history(device.thing, "j1")) == 32, WAIT)
    assert [h["statusDetails"]["step"] for h in service.history(device.thing, "j1")[2:]] == [
        str(s) for s in range(30)
    ]
    assert service.history(device.thing, "j1")[-1]["versionNumber"] == 32


# ---- every error code the service produces ---------------------------------------------------


def test_version_mismatch_carries_the_execution_state(service: JobsService, device: Device) -> None:
    start_job(service, device)
    outcome, reply = device.request(
        "j1/update", {"status": "SUCCEEDED", "expectedVersion": 1, "clientToken": "v"}
    )
    assert outcome == "rejected"
    assert reply["code"] == "VersionMismatch" and reply["clientToken"] == "v" and reply["message"]
    assert reply["executionState"] == {"status": "IN_PROGRESS", "statusDetails": {}, "versionNumber": 2}


def test_updating_a_finished_execution_is_invalid_state_transition(
    service: JobsService, device: Device
) -> None:
    start_job(service, device)
    device.request("j1/update", {"status": "FAILED", "statusDetails": {"reason": "disk"}})
    outcome, reply = device.request("j1/update", {"status": "IN_PROGRESS"})
    assert (outcome, reply["code"]) == ("rejected", "InvalidStateTransition")
    assert reply["executionState"] == {
        "status": "FAILED",
        "statusDetails": {"reason": "disk"},
        "versionNumber": 3,
    }


def test_describing_a_finished_execution_is_terminal_state_reached(
    service: JobsService, device: Device
) -> None:
    start_job(service, device)
    device.request("j1/update", {"status": "SUCCEEDED"})
    outcome, reply = device.request("j1/get", {"clientToken": "t"})
    assert (outcome, reply["code"], reply["clientToken"]) == ("rejected", "TerminalStateReached", "t")
    assert "executionState" not in reply


def test_unknown_jobs_are_resource_not_found(service: JobsService, device: Device) -> None:
    for suffix, payload in (("ghost/get", {}), ("ghost/update", {"status": "IN_PROGRESS"})):
        outcome, reply = device.request(suffix, payload)
        assert (outcome, reply["code"]) == ("rejected", "ResourceNotFound")
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    outcome, reply = device.request("j1/get", {"executionNumber": 2})
    assert (outcome, reply["code"]) == ("rejected", "ResourceNotFound")


@pytest.mark.parametrize(
    "payload",
    [
        {"status": "CANCELED"},
        {"status": "QUEUED"},
        {},
        {"status": "IN_PROGRESS", "statusDetails": {"k": 1}},
        {"status": "IN_PROGRESS", "statusDetails": {f"k{i}": "v" for i in range(11)}},
        {"status": "IN_PROGRESS", "expectedVersion": "two"},
        {"status": "IN_PROGRESS", "stepTimeoutInMinutes": 0},
        {"status": "IN_PROGRESS", "includeJobDocument": "yes"},
    ],
)
def test_invalid_updates_are_invalid_request(
    service: JobsService, device: Device, payload: dict[str, Any]
) -> None:
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    outcome, reply = device.request("j1/update", {**payload, "clientToken": "bad"})
    assert (outcome, reply["code"], reply["clientToken"]) == ("rejected", "InvalidRequest", "bad")
    assert service.status(device.thing, "j1") == "QUEUED"


def test_a_json_value_that_is_not_an_object_is_invalid_request(service: JobsService, device: Device) -> None:
    outcome, reply = device.request("get", b'["clientToken"]')
    assert (outcome, reply["code"]) == ("rejected", "InvalidRequest")


def test_unparsable_payload_is_invalid_json(service: JobsService, device: Device) -> None:
    outcome, reply = device.request("get", b"{not json")
    assert (outcome, reply["code"]) == ("rejected", "InvalidJson")
    outcome, reply = device.request("start-next", b"\xff\xfe")
    assert (outcome, reply["code"]) == ("rejected", "InvalidJson")


@pytest.mark.parametrize("suffix", ["bogus", "j1/delete", "$next/update", "get/now", "j1/get/extra"])
def test_unknown_topics_are_invalid_topic(service: JobsService, device: Device, suffix: str) -> None:
    outcome, reply = device.request(suffix, {"clientToken": "x"})
    assert (outcome, reply["code"], reply["clientToken"]) == ("rejected", "InvalidTopic", "x")


def test_an_invalid_thing_name_in_the_topic_is_invalid_request(
    mosquitto: Mosquitto, service: JobsService
) -> None:
    bad = Device(mosquitto.host, mosquitto.port, "bad.thing")
    try:
        outcome, reply = bad.request("get")
        assert (outcome, reply["code"]) == ("rejected", "InvalidRequest")
    finally:
        bad.close()


def test_a_thing_the_service_does_not_know_has_nothing_pending(
    mosquitto: Mosquitto, service: JobsService
) -> None:
    stranger = Device(mosquitto.host, mosquitto.port, f"stranger-{os.getpid()}")
    try:
        outcome, reply = stranger.request("get")
        assert (outcome, reply["inProgressJobs"], reply["queuedJobs"]) == ("accepted", [], [])
    finally:
        stranger.close()


def test_the_service_does_not_answer_replies_or_notifications(service: JobsService, device: Device) -> None:
    for suffix in ("get/accepted", "j1/update/rejected", "notify", "notify-next"):
        device.publish(suffix, {"clientToken": "echo?"})
    device.heard_since_last_time()
    assert [e.topic for e in service.requests] == [f"{device.base}/get"]


# ---- the interceptor -------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["RequestThrottled", "InternalError", "InvalidStateTransition"])
def test_interceptor_forces_a_rejection(service: JobsService, device: Device, code: str) -> None:
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    calls: list[tuple[str, str, str, dict[str, Any]]] = []

    def reject(thing: str, api: str, topic: str, request: dict[str, Any], publish: Any) -> dict[str, Any]:
        calls.append((thing, api, topic, request))
        return {"code": code, "message": "try later", "executionState": {"status": "QUEUED"}}

    service.interceptor = reject
    outcome, reply = device.request("j1/update", {"status": "SUCCEEDED", "clientToken": "i"})
    assert (outcome, reply["code"], reply["message"], reply["clientToken"]) == (
        "rejected",
        code,
        "try later",
        "i",
    )
    assert reply["executionState"] == {"status": "QUEUED"}
    assert calls == [
        (device.thing, "update", f"{device.base}/j1/update", {"status": "SUCCEEDED", "clientToken": "i"})
    ]
    assert service.status(device.thing, "j1") == "QUEUED"  # not processed
    service.interceptor = None
    assert device.request("j1/update", {"status": "SUCCEEDED"})[0] == "accepted"


def test_interceptor_sees_every_api_name(service: JobsService, device: Device) -> None:
    seen: list[str] = []
    service.interceptor = lambda thing, api, topic, request, publish: seen.append(api)
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    device.request("get")
    device.request("start-next")
    device.request("$next/get")
    device.request("j1/update", {"status": "SUCCEEDED"})
    device.request("nonsense")
    assert seen == ["get_pending", "start_next", "describe", "update"]


def test_interceptor_injects_a_message_ahead_of_the_reply(service: JobsService, device: Device) -> None:
    def inject(thing: str, api: str, topic: str, request: dict[str, Any], publish: Any) -> None:
        publish(topic + "/accepted", json.dumps({"clientToken": "someone-else"}).encode())
        publish(f"$aws/things/{thing}/jobs/notify", b'{"jobs": {}, "timestamp": 1}')

    service.interceptor = inject
    device.publish("get", {"clientToken": "mine"})
    first = device.reply_to(f"{device.base}/get")
    second = device.reply_to(f"{device.base}/get")
    assert first[1]["clientToken"] == "someone-else"
    assert second[1]["clientToken"] == "mine" and "queuedJobs" in second[1]
    assert device.notifications == [("notify", {"jobs": {}, "timestamp": 1})]


def test_interceptor_may_change_state_before_the_reply(service: JobsService, device: Device) -> None:
    def create_first(thing: str, api: str, topic: str, request: dict[str, Any], publish: Any) -> None:
        if api == "get_pending" and not service.list_jobs():
            service.create_job("late", [thing_arn(thing)], DOC)

    service.interceptor = create_first
    outcome, reply = device.request("get")
    assert [j["jobId"] for j in reply["queuedJobs"]] == ["late"]
    assert [kind for kind, _ in device.notifications] == ["notify", "notify-next"]


def test_an_interceptor_that_raises_gives_internal_error(service: JobsService, device: Device) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("boom")

    service.interceptor = broken
    outcome, reply = device.request("get", {"clientToken": "ie"})
    assert (outcome, reply["code"], reply["clientToken"]) == ("rejected", "InternalError", "ie")
    service.interceptor = None
    assert device.request("get")[0] == "accepted"


# ---- notifications ---------------------------------------------------------------------------


def test_creating_jobs_notifies_the_device(service: JobsService, device: Device) -> None:
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    [(kind1, notify), (kind2, notify_next)] = device.heard_since_last_time()
    assert (kind1, kind2) == ("notify", "notify-next")
    assert [s["jobId"] for s in notify["jobs"]["QUEUED"]] == ["j1"] and "IN_PROGRESS" not in notify["jobs"]
    assert notify_next["execution"]["jobId"] == "j1" and notify_next["execution"]["jobDocument"] == DOC
    assert notify["timestamp"] == notify_next["timestamp"] == 1_700_000_000
    service.create_job("j2", [thing_arn(device.thing)], DOC)
    assert device.kinds() == ["notify"]


def test_starting_the_next_job_sends_no_notification(service: JobsService, device: Device) -> None:
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    service.create_job("j2", [thing_arn(device.thing)], DOC)
    device.heard_since_last_time()
    device.request("start-next")
    device.request("j1/update", {"status": "IN_PROGRESS", "statusDetails": {"p": "1"}})
    assert device.kinds() == []


def test_starting_a_job_behind_the_next_sends_notify_next(service: JobsService, device: Device) -> None:
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    service.create_job("j2", [thing_arn(device.thing)], DOC)
    device.heard_since_last_time()
    device.request("j2/update", {"status": "IN_PROGRESS"})
    [(kind, payload)] = device.heard_since_last_time()
    assert kind == "notify-next" and payload["execution"]["jobId"] == "j2"


def test_finishing_sends_the_list_then_the_next_and_finally_empty(
    service: JobsService, device: Device
) -> None:
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    service.create_job("j2", [thing_arn(device.thing)], DOC)
    device.heard_since_last_time()
    device.request("j1/update", {"status": "SUCCEEDED"})
    [(k1, notify), (k2, notify_next)] = device.heard_since_last_time()
    assert (k1, [s["jobId"] for s in notify["jobs"]["QUEUED"]]) == ("notify", ["j2"])
    assert (k2, notify_next["execution"]["jobId"]) == ("notify-next", "j2")
    device.request("j2/update", {"status": "REJECTED"})
    assert device.heard_since_last_time() == [
        ("notify", {"jobs": {}, "timestamp": 1_700_000_000}),
        ("notify-next", {"timestamp": 1_700_000_000}),
    ]


def test_replies_come_before_the_notifications_they_cause(service: JobsService, device: Device) -> None:
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    device.heard_since_last_time()
    device.publish("j1/update", {"status": "SUCCEEDED"})
    order: list[str] = []
    while len(order) < 3:
        topic, _ = device.heard.get(timeout=WAIT)
        if not topic.endswith("/update"):
            order.append(topic.removeprefix(device.base + "/"))
    assert order == ["j1/update/accepted", "notify", "notify-next"]


def test_cancel_notifies_and_locks_the_device_out(service: JobsService, device: Device) -> None:
    start_job(service, device)
    service.cancel_job_execution("j1", device.thing, force=True)
    assert device.kinds() == ["notify", "notify-next"]
    outcome, reply = device.request("j1/update", {"status": "SUCCEEDED"})
    assert (outcome, reply["code"], reply["executionState"]["status"]) == (
        "rejected",
        "InvalidStateTransition",
        "CANCELED",
    )


def test_cancel_and_delete_job_notify_each_thing(
    mosquitto: Mosquitto, service: JobsService, device: Device
) -> None:
    other = Device(mosquitto.host, mosquitto.port, device.thing + "-2")
    try:
        service.create_thing(other.thing)
        service.create_job("j1", [thing_arn(device.thing), thing_arn(other.thing)], DOC)
        service.create_job("j2", [thing_arn(device.thing)], DOC)
        device.heard_since_last_time()
        other.heard_since_last_time()
        service.cancel_job("j1")
        assert device.kinds() == ["notify", "notify-next"] and other.kinds() == ["notify", "notify-next"]
        service.delete_job("j2", force=True)
        assert device.heard_since_last_time() == [
            ("notify", {"jobs": {}, "timestamp": 1_700_000_000}),
            ("notify-next", {"timestamp": 1_700_000_000}),
        ]
        assert other.kinds() == []
    finally:
        other.close()


# ---- timers ----------------------------------------------------------------------------------


def test_step_timeout_with_the_manual_clock(service: JobsService, device: Device) -> None:
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    service.create_job("j2", [thing_arn(device.thing)], DOC)
    device.request("start-next", {"stepTimeoutInMinutes": "1"})
    device.heard_since_last_time()
    assert isinstance(service.clock, ManualClock)
    service.clock.advance(59)
    assert service.tick() == []
    service.clock.advance(1)
    assert service.tick() == [(device.thing, "j1")]
    [(k1, _), (k2, notify_next)] = device.heard_since_last_time()
    assert (k1, k2, notify_next["execution"]["jobId"]) == ("notify", "notify-next", "j2")
    assert notify_next["timestamp"] == 1_700_000_060
    outcome, reply = device.request("j1/update", {"status": "SUCCEEDED"})
    assert (reply["code"], reply["executionState"]["status"]) == ("InvalidStateTransition", "TIMED_OUT")


def test_real_clock_timers_fire_without_a_tick_call(
    jobs_service: JobsService, mosquitto: Mosquitto, thing_name: str
) -> None:
    device = Device(mosquitto.host, mosquitto.port, thing_name)
    try:
        jobs_service.create_job("j1", [thing_arn(thing_name)], DOC)
        device.request("start-next", {"stepTimeoutInMinutes": 1})
        run = jobs_service.execution(thing_name, "j1")
        assert run is not None and run.step_deadline is not None
        run.step_deadline = time.time()  # due now, rather than in a minute
        assert jobs_service.wait_until(lambda: jobs_service.status(thing_name, "j1") == "TIMED_OUT", 3)
        assert "notify-next" in device.kinds()
    finally:
        device.close()


# ---- the shared fixtures ---------------------------------------------------------------------


def test_service_fixtures_create_the_thing_and_create_job_helps(
    jobs_service: JobsService, thing_name: str, create_job: Callable[..., dict[str, Any]]
) -> None:
    assert jobs_service.model.things[thing_name].name == thing_name
    assert jobs_service.subscribed and not isinstance(jobs_service.clock, ManualClock)
    reply = create_job(jobs_service, "fixture-job", thing_name)
    assert reply["jobId"] == "fixture-job"
    create_job(jobs_service, "other-job", thing_name + "-new", {"operation": "x"})
    assert jobs_service.describe_job_execution(thing_name + "-new", "other-job")["status"] == "QUEUED"


# ---- waiting and reconnecting ----------------------------------------------------------------


def test_wait_until_wakes_on_a_device_update(service: JobsService, device: Device) -> None:
    service.create_job("j1", [thing_arn(device.thing)], DOC)
    device.publish("j1/update", {"status": "SUCCEEDED"})
    assert service.wait_until(lambda: service.status(device.thing, "j1") == "SUCCEEDED", WAIT)
    assert service.wait_until(lambda: False, 0.05) is False


def test_the_service_reconnects_after_a_broker_restart(thing_name: str) -> None:
    with Mosquitto() as broker, JobsService(broker.host, broker.port, clock=ManualClock()) as service:
        service.create_thing(thing_name)
        service.create_job("j1", [thing_arn(thing_name)], DOC)
        broker.kill()
        assert service.wait_until(lambda: not service.subscribed, WAIT)
        broker.start()
        assert service.wait_subscribed(WAIT)
        device = Device(broker.host, broker.port, thing_name)
        try:
            outcome, reply = device.request("get")
            assert [j["jobId"] for j in reply["queuedJobs"]] == ["j1"]
        finally:
            device.close()


def test_stop_is_prompt_while_the_broker_is_down() -> None:
    with Mosquitto() as broker:
        service = JobsService(broker.host, broker.port).start()
        broker.kill()
        assert service.wait_until(lambda: not service.subscribed, WAIT)
        began = time.monotonic()
        service.stop()
        assert time.monotonic() - began < 2


def test_start_fails_clearly_without_a_broker() -> None:
    with Mosquitto() as broker:
        port = broker.port
    with pytest.raises(OSError):
        JobsService("127.0.0.1", port).start(timeout=2)


# ---- the broker ------------------------------------------------------------------------------


def test_mosquitto_restarts_on_the_same_port() -> None:
    broker = Mosquitto()
    with broker:
        port = broker.port
        assert broker.running and port > 0
        broker.restart()
        assert broker.running and broker.port == port
        broker.kill()
        assert not broker.running
        broker.start()
        assert broker.running and broker.port == port
        assert "mosquitto version" in broker.log()
    assert not broker.running and broker.workdir is None


def test_mosquitto_reports_why_it_could_not_start(mosquitto: Mosquitto) -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        Mosquitto(port=mosquitto.port).start()


def test_mosquitto_tls_listener_requires_a_client_certificate(tls_ca: CertificateFolder) -> None:
    client_cert = certs.issue_thing(tls_ca.root, "tls-listener-client")
    tls = {
        "cafile": tls_ca.ca_pem,
        "certfile": tls_ca.server_cert,
        "keyfile": tls_ca.server_key,
        "require_certificate": True,
    }
    with Mosquitto(tls=tls) as broker:

        def connect(with_cert: bool) -> bool:
            accepted, finished = threading.Event(), threading.Event()
            client = mqtt.Client(CallbackAPIVersion.VERSION2)
            client.tls_set(
                ca_certs=str(tls_ca.ca_pem),
                certfile=str(client_cert.cert_pem) if with_cert else None,
                keyfile=str(client_cert.key_pem) if with_cert else None,
            )

            def on_connect(c: mqtt.Client, u: Any, f: Any, reason: Any, p: Any) -> None:
                if not reason.is_failure:
                    accepted.set()
                finished.set()

            client.on_connect = on_connect
            client.on_disconnect = lambda *args: finished.set()
            try:
                client.connect(broker.host, broker.port)
            except OSError:
                return False
            # Loop in this thread: a background loop would sit out paho's reconnect delay on stop.
            deadline = time.monotonic() + WAIT
            while not finished.is_set() and time.monotonic() < deadline:
                client.loop(timeout=0.05)
            client.disconnect()
            return accepted.is_set()

        assert connect(with_cert=True)
        assert not connect(with_cert=False)


# ---- the command line ------------------------------------------------------------------------


def start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    # Never the default database in the user's home: each test starts from nothing. Nor the default ports, which
    # a running service may hold: free ones.
    db = () if "--db" in args else ("--db", ":memory:")
    ports = ("--http", "127.0.0.1:0") + (() if "--broker" in args else ("--mqtt", "127.0.0.1:0"))
    process = subprocess.Popen(
        [str(CLI), "serve", *db, *ports, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    return process, line


def stop_cli(process: subprocess.Popen[str], signum: int) -> int:
    process.send_signal(signum)
    try:
        return process.wait(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serves_a_broker_and_exits_cleanly(mosquitto: Mosquitto, thing_name: str, signum: int) -> None:
    process, line = start_cli("--broker", mosquitto.address)
    try:
        assert re.fullmatch(rf"ready mqtt={re.escape(mosquitto.address)} http=127\.0\.0\.1:[0-9]+", line), line
        device = Device(mosquitto.host, mosquitto.port, thing_name)
        try:
            assert device.request("get", {"clientToken": "cli"})[1]["clientToken"] == "cli"
        finally:
            device.close()
    finally:
        code = stop_cli(process, signum)
    assert code == 0, process.stderr.read() if process.stderr else ""


def test_cli_without_a_broker_runs_its_own(thing_name: str) -> None:
    process, line = start_cli()
    try:
        assert line.startswith("ready mqtt=127.0.0.1:")
        port = int(line.split()[1].rpartition(":")[2])
        device = Device("127.0.0.1", port, thing_name)
        try:
            assert device.request("start-next")[0] == "accepted"
        finally:
            device.close()
    finally:
        code = stop_cli(process, signal.SIGTERM)
    assert code == 0
    with pytest.raises(OSError):
        Device("127.0.0.1", port, thing_name)


def test_cli_rejects_a_bad_broker_address() -> None:
    done = subprocess.run(
        [str(CLI), "serve", "--broker", "nowhere"], capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode == 2 and "HOST:PORT" in done.stderr


def test_cli_reports_an_unreachable_broker() -> None:
    with Mosquitto() as broker:
        address = broker.address
    done = subprocess.run(
        [str(CLI), "serve", "--db", ":memory:", "--http", "127.0.0.1:0", "--broker", address], capture_output=True,
        text=True, timeout=30
    )
    assert done.returncode == 1 and done.stdout == ""
    # One line: which address, and what --broker means.
    assert done.stderr.startswith("iotjobs-local: no MQTT broker answers at %s " % address), done.stderr
    assert "already running" in done.stderr and len(done.stderr.splitlines()) == 1
