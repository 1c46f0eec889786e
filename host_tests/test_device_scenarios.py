"""The device client end to end, on the MicroPython unix port and on CPython: mosquitto + the local Jobs service."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from typing import Any

import paho.mqtt.client as paho
import pytest

from device import PORTABLE, RUNTIMES, Run, run, start
from localjobs.model import thing_arn

SCENARIOS = PORTABLE / "scenarios.py"
DOC = {"operation": "greet", "steps": 2}


def scenario(runtime: str, name: str, broker: Any, thing: str, *args: str, heapsize: str | None = None) -> Run:
    done = run(runtime, SCENARIOS, name, broker.host, str(broker.port), thing, *args, heapsize=heapsize)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_full_lifecycle(runtime, mosquitto, jobs_service, thing_name):
    jobs_service.create_job("job-life", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "lifecycle", mosquitto, thing_name)

    pending = done["pending"]
    assert [j["jobId"] for j in pending["queuedJobs"]] == ["job-life"]
    assert pending["inProgressJobs"] == []
    started = done["started"]
    assert started["jobId"] == "job-life" and started["status"] == "IN_PROGRESS"
    assert started["jobDocument"] == DOC
    assert started["statusDetails"] == {"step": "starting"}
    assert done["progress"]["executionState"]["status"] == "IN_PROGRESS"
    assert done["progress"]["executionState"]["versionNumber"] == started["versionNumber"] + 1
    assert done["done"]["executionState"]["status"] == "SUCCEEDED"
    assert done["done"]["executionState"]["statusDetails"] == {"result": "ok"}
    assert done["next"] is None
    # Subscribed to responses only: the device never hears its own requests, nothing was dropped.
    assert done["dropped"] == 0

    execution = jobs_service.describe_job_execution(thing_name, "job-life")
    assert execution["status"] == "SUCCEEDED"
    statuses = [h["status"] for h in jobs_service.history(thing_name, "job-life")]
    assert statuses[-3:] == ["IN_PROGRESS", "IN_PROGRESS", "SUCCEEDED"]


@pytest.mark.parametrize("status", ["FAILED", "REJECTED"])
def test_failed_and_rejected(runtime, mosquitto, jobs_service, thing_name, status):
    jobs_service.create_job("job-end", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "finish", mosquitto, thing_name, status)
    assert done["finished"]["executionState"]["status"] == status
    assert jobs_service.describe_job_execution(thing_name, "job-end")["status"] == status
    assert jobs_service.describe_job_execution(thing_name, "job-end")["statusDetails"] == {
        "reason": "chosen by the handler"
    }


def test_an_update_that_finds_no_memory_is_sent_later_once_and_keeps_the_link(runtime, mosquitto, jobs_service,
                                                                             thing_name):
    jobs_service.create_job("job-mem", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "publish_out_of_memory", mosquitto, thing_name, "timeout_ms=500")
    assert done["refused"] == 1
    assert done["first_call"] in ("answered", "timeout")
    assert done["outbox"] == 0
    # Nothing was on the wire: not a lost link, so no reconnect storm while memory is short.
    assert done["link_losses"] == 0
    assert "request not sent" in done["errors"]
    statuses = [h["status"] for h in jobs_service.history(thing_name, "job-mem")]
    assert statuses == ["QUEUED", "IN_PROGRESS", "SUCCEEDED"]
    assert jobs_service.describe_job_execution(thing_name, "job-mem")["statusDetails"] == {"result": "ok"}


def test_queued_jobs_start_in_order(runtime, mosquitto, jobs_service, thing_name):
    for job_id in ("job-b", "job-a", "job-c"):
        jobs_service.create_job(job_id, [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "in_order", mosquitto, thing_name)
    assert done["started"] == ["job-b", "job-a", "job-c"]


def test_nothing_pending(runtime, mosquitto, jobs_service, thing_name):
    done = scenario(runtime, "nothing_pending", mosquitto, thing_name)
    assert done["describe_next"] is None
    assert done["start_next"] is None
    assert done["pending"]["inProgressJobs"] == [] and done["pending"]["queuedJobs"] == []


def test_describe_by_id_and_number(runtime, mosquitto, jobs_service, thing_name):
    jobs_service.create_job("job-desc", [thing_arn(thing_name)], DOC)
    number = jobs_service.describe_job_execution(thing_name, "job-desc")["executionNumber"]
    done = scenario(runtime, "describe", mosquitto, thing_name, "job-desc", str(number))
    assert done["full"]["jobDocument"] == DOC and done["full"]["status"] == "QUEUED"
    assert "jobDocument" not in done["without_document"]
    assert done["by_number"]["executionNumber"] == number
    assert done["unknown"]["code"] == "ResourceNotFound"


def test_version_mismatch_carries_state(runtime, mosquitto, jobs_service, thing_name):
    jobs_service.create_job("job-vm", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "version_mismatch", mosquitto, thing_name)
    mismatch = done["mismatch"]
    assert mismatch["code"] == "VersionMismatch"
    assert mismatch["execution_state"]["status"] == "IN_PROGRESS"
    current = jobs_service.describe_job_execution(thing_name, "job-vm")
    assert done["retry"]["executionState"]["versionNumber"] == current["versionNumber"]
    assert current["statusDetails"] == {"p": "2"}


def test_invalid_transition_after_terminal(runtime, mosquitto, jobs_service, thing_name):
    jobs_service.create_job("job-term", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "invalid_transition", mosquitto, thing_name)
    assert done["transition"]["code"] == "InvalidStateTransition"
    assert done["transition"]["execution_state"]["status"] == "SUCCEEDED"
    assert jobs_service.describe_job_execution(thing_name, "job-term")["status"] == "SUCCEEDED"


def test_describe_of_a_finished_execution_is_terminal_state_reached(runtime, mosquitto, jobs_service, thing_name):
    jobs_service.create_job("job-done", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "terminal", mosquitto, thing_name)
    assert done["terminal"]["code"] == "TerminalStateReached" and "SUCCEEDED" in done["terminal"]["message"]
    assert done["terminal"]["execution_state"] is None


@pytest.mark.parametrize("status, details, expected, code", [
    ("IN_PROGRESS", "-", "99", "VersionMismatch"),
    ("IN_PROGRESS", '{"pct": "50"}', "99", "VersionMismatch"),
    ("IN_PROGRESS", '{"pct": "70"}', "99", "VersionMismatch"),
    ("SUCCEEDED", '{"pct": "50"}', "-", "InvalidStateTransition"),
    ("SUCCEEDED", "-", "99", "InvalidStateTransition"),
], ids=["no-details", "same-details", "other-details", "terminal-again", "terminal-explicit-version"])
def test_refused_update_sent_once_raises_whatever_the_state(runtime, mosquitto, jobs_service, thing_name, status,
                                                           details, expected, code):
    # The execution stands at version 3 with the status asked for: only an earlier copy of this very request
    # could have put it there, and there was none.
    jobs_service.create_job("job-refused", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "refused_update", mosquitto, thing_name, status, details, expected)
    refused = done["refused"]
    assert refused["code"] == code, refused
    assert refused["execution_state"] == {"status": status, "statusDetails": {"pct": "50"}, "versionNumber": 3}
    assert done["resent"] == 0
    history = jobs_service.history(thing_name, "job-refused")
    assert [(h["status"], h["statusDetails"]) for h in history] == [
        ("QUEUED", {}), ("IN_PROGRESS", {}), (status, {"pct": "50"})]


def test_notifications_dispatched_while_a_call_waits(runtime, mosquitto, jobs_service, thing_name):
    created: list[str] = []

    def create_before_reply(thing, api, topic, request, publish):
        if api == "get_pending" and not created:
            created.append(thing)
            jobs_service.create_job("job-late", [thing_arn(thing)], DOC)
        return None

    jobs_service.interceptor = create_before_reply
    done = scenario(runtime, "notify_during_call", mosquitto, thing_name)
    events = done["events_before_return"]
    assert [kind for kind, _ in events] == ["notify", "notify-next"]
    assert [j["jobId"] for j in events[0][1]["jobs"]["QUEUED"]] == ["job-late"]
    assert events[1][1]["execution"]["jobId"] == "job-late"
    assert [j["jobId"] for j in done["pending"]["queuedJobs"]] == ["job-late"]


def test_poll_dispatches_notifications_in_order(runtime, mosquitto, jobs_service, thing_name):
    device = start(runtime, SCENARIOS, "poll_notifications", mosquitto.host, str(mosquitto.port), thing_name,
                   "10000")
    try:
        assert device.stdout is not None
        assert device.stdout.readline().strip() == "READY"
        jobs_service.create_job("job-polled", [thing_arn(thing_name)], DOC)
        out, err = device.communicate(timeout=30)
    finally:
        device.kill()
    assert device.returncode == 0, out + err
    events = json.loads(out.split("RESULT events ", 1)[1].splitlines()[0])
    assert [kind for kind, _ in events] == ["notify", "notify-next"]
    assert events[1][1]["execution"]["jobDocument"] == DOC


def test_foreign_and_broken_responses_are_dropped(runtime, mosquitto, jobs_service, thing_name):
    jobs_service.create_job("job-f", [thing_arn(thing_name)], DOC)
    base = "$aws/things/%s/jobs" % thing_name

    def inject(thing, api, topic, request, publish):
        if api == "describe":
            fake = {"clientToken": "someone-else", "execution": {"jobId": "job-f", "status": "FAKE"}}
            publish(topic + "/accepted", json.dumps(fake).encode())
            publish(topic + "/accepted", b"{not json")
            publish(topic + "/accepted", b"[1, 2]")
            publish(base + "/job.f/get/accepted", json.dumps({"clientToken": request["clientToken"]}).encode())
            publish(base + "/other-job/get/accepted", json.dumps({"clientToken": request["clientToken"]}).encode())
        return None

    jobs_service.interceptor = inject
    done = scenario(runtime, "foreign_messages", mosquitto, thing_name, "job-f")
    assert done["execution"]["jobId"] == "job-f" and done["execution"]["status"] == "QUEUED"
    assert done["dropped"] == 5
    assert sorted(done["reasons"]) == sorted([
        "no call waits for this response", "invalid JSON", "not a JSON object", "unknown topic",
        "no call waits for this response",
    ])


CODES = ["InvalidTopic", "InvalidJson", "InvalidRequest", "InvalidStateTransition", "ResourceNotFound",
         "VersionMismatch", "InternalError", "RequestThrottled", "TerminalStateReached"]


def test_every_rejection_code_raises_jobs_error(runtime, mosquitto, jobs_service, thing_name):
    codes = iter(CODES)
    state = {"status": "SUCCEEDED", "statusDetails": {"a": "b"}, "versionNumber": 3}

    def reject(thing, api, topic, request, publish):
        code = next(codes)
        answer: dict[str, Any] = {"code": code, "message": "forced " + code}
        if code in ("VersionMismatch", "InvalidStateTransition"):
            answer["executionState"] = state
        return answer

    jobs_service.interceptor = reject
    done = scenario(runtime, "rejections", mosquitto, thing_name, str(len(CODES)))
    codes_seen = done["codes"]
    assert [c["code"] for c in codes_seen] == CODES
    for seen in codes_seen:
        assert seen["message"] == "forced " + seen["code"]
        expected_state = state if seen["code"] in ("VersionMismatch", "InvalidStateTransition") else None
        assert seen["execution_state"] == expected_state


def test_no_response_raises_request_timeout(runtime, mosquitto, thing_name):
    # No Jobs service is connected to this broker, so nothing will ever answer.
    done = scenario(runtime, "timeout", mosquitto, thing_name, "timeout_ms=300")
    assert done["timeout"] is not None
    assert "300 ms" in done["timeout"]["message"]
    assert done["timeout"]["elapsed_ms"] >= 300


def test_bad_input_is_refused_before_publishing(runtime, mosquitto, jobs_service, thing_name):
    heard: queue.Queue[str] = queue.Queue()
    subscribed = threading.Event()
    spy = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=thing_name + "-spy")
    spy.on_message = lambda c, u, m: heard.put(m.topic)
    spy.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
    spy.connect(mosquitto.host, mosquitto.port)
    spy.subscribe("$aws/things/%s/jobs/#" % thing_name, qos=1)
    spy.loop_start()
    try:
        assert subscribed.wait(5)
        done = scenario(runtime, "bad_input", mosquitto, thing_name)
        refused = done["refused"]
        assert all(isinstance(why, str) and why for why in refused), refused
        assert done["bad_thing"] and "thing name" in done["bad_thing"]
        # Only the valid request reached the broker: its accepted reply proves the spy has heard everything before.
        topics_heard = []
        while True:
            topic = heard.get(timeout=5)
            topics_heard.append(topic)
            if topic.endswith("/get/accepted"):
                break
        assert topics_heard == ["$aws/things/%s/jobs/get" % thing_name, "$aws/things/%s/jobs/get/accepted" % thing_name]
    finally:
        spy.loop_stop()
        spy.disconnect()


def test_unicode_status_details_round_trip(runtime, mosquitto, jobs_service, thing_name):
    text = "température élevée ✓ 中文"
    jobs_service.create_job("job-u", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "unicode_details", mosquitto, thing_name, text)
    assert done["details"] == {"message": text}
    assert jobs_service.describe_job_execution(thing_name, "job-u")["statusDetails"] == {"message": text}


# A 32 KB job document (the spec's limit) made of 900 small settings, the costly shape for json.loads.
LARGE_SETTINGS = {"key%04d" % i: "value-%04d-abcdefgh" % i for i in range(900)}
LARGE_DOC: dict[str, Any] = {"operation": "config", "settings": LARGE_SETTINGS, "blob": "", "marker": "end"}
LARGE_DOC["blob"] = "x" * (32700 - len(json.dumps(LARGE_DOC)))
# The same board-sized heap as every other scenario: measured minimum 72k on the x64 unix port (README).
LARGE_DOC_HEAP = "96k"


def test_32k_document_on_a_bounded_heap(runtime, mosquitto, jobs_service, thing_name):
    assert 32000 < len(json.dumps(LARGE_DOC)) <= 32768
    jobs_service.create_job("job-big", [thing_arn(thing_name)], LARGE_DOC)
    done = scenario(runtime, "large_document", mosquitto, thing_name, "job-big", heapsize=LARGE_DOC_HEAP)
    document = done["document"]
    # Too big to parse on a board: it stays on flash as a JobDocument, and the fields a handler asks for
    # (one at the start, one after the 32 KB) are read from there.
    assert document["kind"] == "JobDocument"
    assert document["operation"] == "config" and document["marker"] == "end"
    assert 30000 < document["size"] <= 32768
    assert done["done"] is True
    assert jobs_service.describe_job_execution(thing_name, "job-big")["status"] == "SUCCEEDED"


def test_longest_thing_name(runtime, mosquitto, jobs_service):
    # 128 characters, the spec's maximum: its subscription topics are longer than one length byte can say.
    thing = "t" * 116 + uuid.uuid4().hex[:12]
    assert len(thing) == 128
    jobs_service.create_thing(thing)
    jobs_service.create_job("job-long", [thing_arn(thing)], DOC)
    done = scenario(runtime, "lifecycle", mosquitto, thing)
    assert done["done"]["executionState"]["status"] == "SUCCEEDED"
    assert jobs_service.describe_job_execution(thing, "job-long")["status"] == "SUCCEEDED"
