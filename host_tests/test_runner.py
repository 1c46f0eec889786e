"""The job runner end to end on both runtimes: mosquitto + the local Jobs service, a device script per scenario."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from device import PORTABLE, RUNTIMES, Run, finish, run, start
from localjobs.model import thing_arn
from localjobs.mqtt_api import DROP

SCRIPT = PORTABLE / "runner_scenarios.py"
RESET_EXIT_CODE = 211
# The suite's board-sized heap (the unix port runs the library as .mpy); measured minimums are in the README.
RUNNER_HEAP = "112k"


@pytest.fixture
def thing_name() -> str:
    # Short on purpose: umqtt.simple 1.3.4 writes SUBSCRIBE's remaining length in one byte, so a topic built
    # from a thing name much longer than 90 characters cannot be subscribed to (the conftest's names can be 109).
    return "runner-" + uuid.uuid4().hex[:12]


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def device(runtime: str, name: str, broker: Any, thing: str, state: Path, *args: str, heapsize: str | None = None,
           code: int = 0) -> Run:
    done = run(runtime, SCRIPT, name, broker.host, str(broker.port), thing, str(state), *args,
               heapsize=heapsize or RUNNER_HEAP)
    assert done.returncode == code, done.stdout + done.stderr
    return done


def started(runtime: str, name: str, broker: Any, thing: str, state: Path, *args: str) -> subprocess.Popen[str]:
    return start(runtime, SCRIPT, name, broker.host, str(broker.port), thing, str(state), *args, heapsize=RUNNER_HEAP)


def statuses(service: Any, thing: str, job_id: str) -> list[str]:
    return [h["status"] for h in service.history(thing, job_id)]


def details(service: Any, thing: str, job_id: str) -> list[dict[str, str]]:
    return [h["statusDetails"] for h in service.history(thing, job_id)]


def test_allowed_operation_succeeds_with_clipped_progress(runtime, mosquitto, jobs_service, thing_name, tmp_path):
    jobs_service.create_job("job-ok", [thing_arn(thing_name)], {"operation": "greet", "stepTimeoutInMinutes": 5})
    done = device(runtime, "succeed", mosquitto, thing_name, tmp_path)
    assert done["finished"] == 1
    assert done["states"] == ["idle", "running", "succeeded"]
    assert statuses(jobs_service, thing_name, "job-ok") == ["QUEUED", "IN_PROGRESS", "IN_PROGRESS", "IN_PROGRESS",
                                                           "IN_PROGRESS", "SUCCEEDED"]
    history = details(jobs_service, thing_name, "job-ok")
    assert history[2] == {"state": "started"}
    clipped = history[3]
    # 10 pairs at most, the checkpoint among them; keys made valid, control characters gone.
    assert len(clipped) == 10 and clipped["checkpoint"] == "half"
    assert clipped["bad_key_"] == "7" and clipped["ctl"] == "abcde"
    assert history[4] == {"percent": "100", "checkpoint": "half"}
    final = history[5]
    assert final["result"] == "ok" and final["operation"] == "greet" and final["checkpoint"] == "None"
    assert final["big"] == "y" * 1024
    # The job's step timeout is renewed by every IN_PROGRESS update.
    updates = [x.request for x in jobs_service.requests if x.api == "update" and x.request["status"] == "IN_PROGRESS"]
    assert len(updates) == 3 and all(u["stepTimeoutInMinutes"] == 5 for u in updates)
    assert not list(tmp_path.iterdir()), "the checkpoint file is removed once the outcome is reported"


def test_jobs_run_one_at_a_time_in_order(runtime, mosquitto, jobs_service, thing_name, tmp_path):
    for job_id in ("job-2", "job-1", "job-3"):
        jobs_service.create_job(job_id, [thing_arn(thing_name)], {"operation": "greet"})
    done = device(runtime, "succeed", mosquitto, thing_name, tmp_path, "3")
    assert done["finished"] == 3
    sequence = [(x.api, (x.request or {}).get("status"), x.response.get("execution", {}).get("jobId"))
                for x in jobs_service.requests if x.api in ("start_next", "update")]
    started_order = [job for api, _, job in sequence if api == "start_next" and job]
    assert started_order == ["job-2", "job-1", "job-3"]
    # Between one start_next and the next, the started job reached SUCCEEDED: never two at once.
    open_jobs = 0
    for api, status, job in sequence:
        if api == "start_next" and job:
            assert open_jobs == 0
            open_jobs = 1
        elif status == "SUCCEEDED":
            open_jobs = 0
    assert done["states"] == ["idle", "running", "succeeded", "running", "succeeded", "running", "succeeded"]
    # on_state names the execution each state is about (none while idle).
    assert done["state_jobs"] == [["idle", None]] + [[state, job] for job in ("job-2", "job-1", "job-3")
                                                     for state in ("running", "succeeded")]


def test_unknown_operation_is_rejected(runtime, mosquitto, jobs_service, thing_name, tmp_path):
    jobs_service.create_job("job-x", [thing_arn(thing_name)], {"operation": "format-disk"})
    done = device(runtime, "succeed", mosquitto, thing_name, tmp_path)
    assert done["states"] == ["idle", "rejected"]
    assert statuses(jobs_service, thing_name, "job-x")[-1] == "REJECTED"
    assert details(jobs_service, thing_name, "job-x")[-1] == {
        "reason": "operation 'format-disk' is not allowed on this device"}


@pytest.mark.parametrize("document, reason", [
    ({"steps": [{"action": {"type": "runHandler", "input": {"handler": "rm-rf.sh"}}}]},
     "operation 'rm-rf' is not allowed on this device"),
    ({"version": "1.0"}, "job document has no operation and no steps"),
    ({"steps": [{"action": {"input": {"handler": "greet"}}}] * 2}, "job document has 2 steps; this device runs one"),
])
def test_documents_that_cannot_run_are_rejected(runtime, mosquitto, jobs_service, thing_name, tmp_path, document,
                                                 reason):
    jobs_service.create_job("job-r", [thing_arn(thing_name)], document)
    device(runtime, "succeed", mosquitto, thing_name, tmp_path)
    assert details(jobs_service, thing_name, "job-r")[-1] == {"reason": reason}
    assert statuses(jobs_service, thing_name, "job-r")[-1] == "REJECTED"


@pytest.mark.parametrize("broken", ['"operation": greet', '"operation": "greet", "stepTimeoutInMinutes": 5x'])
def test_a_large_document_with_a_broken_value_is_rejected_and_the_loop_goes_on(runtime, mosquitto, jobs_service,
                                                                               thing_name, tmp_path, broken):
    # Over the receive buffer, a document stays on flash with only its outline checked: its values are parsed
    # when the runner reads them. AWS checks documents when a job is created, so this is what a broken
    # broker or service could deliver, once.
    jobs_service.create_job("job-b", [thing_arn(thing_name)], {"operation": "greet"})
    jobs_service.create_job("job-ok", [thing_arn(thing_name)], {"operation": "greet"})
    document = '{%s, "blob": "%s"}' % (broken, "x" * 6000)
    sent: list[str] = []

    def deliver_broken(thing, api, topic, request, publish):
        if api != "start_next" or sent:
            return None
        sent.append(topic)
        execution = ('{"jobId": "job-b", "thingName": "%s", "status": "QUEUED", "versionNumber": 1, '
                     '"executionNumber": 1, "queuedAt": 1, "lastUpdatedAt": 1, "jobDocument": %s}'
                     % (thing, document))
        publish(topic + "/accepted", ('{"clientToken": "%s", "timestamp": 1, "execution": %s}'
                                      % (request["clientToken"], execution)).encode())
        return DROP

    jobs_service.interceptor = deliver_broken
    done = device(runtime, "succeed", mosquitto, thing_name, tmp_path, "2")
    assert sent
    assert done["finished"] == 2
    assert done["states"] == ["idle", "rejected", "running", "succeeded"]
    assert statuses(jobs_service, thing_name, "job-b")[-1] == "REJECTED"
    assert details(jobs_service, thing_name, "job-b")[-1] == {"reason": "job document is not JSON"}
    assert statuses(jobs_service, thing_name, "job-ok")[-1] == "SUCCEEDED"


def test_managed_template_document_runs_its_handler(runtime, mosquitto, jobs_service, thing_name, tmp_path):
    document = {"version": "1.0", "steps": [{"action": {
        "name": "Greet", "type": "runHandler", "runAsUser": "root",
        "input": {"handler": "greet.sh", "args": ["a", "b"], "path": "default"}}}]}
    jobs_service.create_job("job-m", [thing_arn(thing_name)], document)
    done = device(runtime, "succeed", mosquitto, thing_name, tmp_path)
    assert done["states"] == ["idle", "running", "succeeded"]
    assert details(jobs_service, thing_name, "job-m")[-1]["operation"] == "greet"


def test_handler_exception_fails_with_clipped_details(runtime, mosquitto, jobs_service, thing_name, tmp_path):
    jobs_service.create_job("job-f", [thing_arn(thing_name)], {"operation": "broken"})
    done = device(runtime, "fail", mosquitto, thing_name, tmp_path)
    assert done["states"] == ["idle", "running", "failed"]
    assert statuses(jobs_service, thing_name, "job-f")[-1] == "FAILED"
    failed = details(jobs_service, thing_name, "job-f")[-1]
    assert set(failed) == {"error", "message"} and failed["error"] == "ValueError"
    assert failed["message"] == "could not apply" + "z" * (1024 - len("could not apply"))
    assert "Traceback" not in json.dumps(failed) and "File" not in failed["message"]


def test_force_cancel_during_a_handler(runtime, mosquitto, jobs_service, thing_name, tmp_path):
    jobs_service.create_job("job-long", [thing_arn(thing_name)], {"operation": "long"})
    jobs_service.create_job("job-after", [thing_arn(thing_name)], {"operation": "greet"})
    proc = started(runtime, "cancel", mosquitto, thing_name, tmp_path)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "RUNNING"
    jobs_service.cancel_job("job-long", force=True)
    done = finish(proc, tmp_path / "go")
    assert statuses(jobs_service, thing_name, "job-long")[-1] == "CANCELED"
    assert len(done["canceled"]) == 1 and "CANCELED" in done["canceled"][0]
    # The runner moved on to the next job; canceled counts as an execution ended.
    assert done["finished"] == 2
    assert done["states"] == ["idle", "running", "canceled", "running", "succeeded"]
    assert statuses(jobs_service, thing_name, "job-after")[-1] == "SUCCEEDED"


def test_cancel_noticed_from_notify_next(runtime, mosquitto, jobs_service, thing_name, tmp_path):
    jobs_service.create_job("job-long", [thing_arn(thing_name)], {"operation": "long"})
    proc = started(runtime, "cancel_by_notification", mosquitto, thing_name, tmp_path)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "RUNNING"
    jobs_service.cancel_job("job-long", force=True)
    done = finish(proc, tmp_path / "go")
    assert len(done["canceled"]) == 1 and done["canceled"][0].startswith("TerminalStateReached:"), done["canceled"]
    assert done["states"] == ["idle", "running", "canceled"]
    # Told by the notification and a describe: no progress update was even sent after the cancel.
    after = [x.api for x in jobs_service.requests if x.api in ("update", "describe")]
    assert after[-1] == "describe"


def test_reboot_job_succeeds_once_across_a_restart(runtime, mosquitto, jobs_service, thing_name, tmp_path):
    jobs_service.create_job("job-boot", [thing_arn(thing_name)], {"operation": "reboot"})
    first = device(runtime, "reboot", mosquitto, thing_name, tmp_path, code=RESET_EXIT_CODE)
    assert "finished" not in first.results
    assert statuses(jobs_service, thing_name, "job-boot") == ["QUEUED", "IN_PROGRESS", "IN_PROGRESS", "IN_PROGRESS"]
    assert details(jobs_service, thing_name, "job-boot")[-1] == {"state": "rebooting", "checkpoint": "rebooting"}
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["jobId"] == "job-boot" and saved["step"] == "rebooting"

    second = device(runtime, "reboot", mosquitto, thing_name, tmp_path)
    assert second["finished"] == 1
    assert second["states"] == ["idle", "running", "succeeded"]
    history = statuses(jobs_service, thing_name, "job-boot")
    assert history.count("SUCCEEDED") == 1 and history[-1] == "SUCCEEDED"
    assert details(jobs_service, thing_name, "job-boot")[-2] == {"state": "resumed", "checkpoint": "rebooting"}
    assert details(jobs_service, thing_name, "job-boot")[-1] == {"rebooted": "true"}
    assert not (tmp_path / "state.json").exists()


def test_reboot_without_a_reset_function_resets_the_board_as_the_port_can(runtime, mosquitto, jobs_service,
                                                                          thing_name, tmp_path):
    # Runner(reset=None): machine.reset() where there is one (the CPython shim's exits 211); the unix port has none,
    # so the process ends, which is how a virtual board resets; run again, the job resumes and succeeds.
    jobs_service.create_job("job-boot", [thing_arn(thing_name)], {"operation": "reboot"})
    first = device(runtime, "reboot", mosquitto, thing_name, tmp_path, "default-reset",
                   code=0 if runtime != "cpython" else RESET_EXIT_CODE)
    assert "finished" not in first.results
    if runtime != "cpython":
        assert "this port has no machine.reset(): ending the process instead" in first.stdout
    assert details(jobs_service, thing_name, "job-boot")[-1] == {"state": "rebooting", "checkpoint": "rebooting"}
    second = device(runtime, "reboot", mosquitto, thing_name, tmp_path, "default-reset")
    assert second["finished"] == 1
    assert details(jobs_service, thing_name, "job-boot")[-1] == {"rebooted": "true"}


def test_outcome_saved_before_a_reset_is_reported_without_running_the_handler(
        runtime, mosquitto, jobs_service, thing_name, tmp_path):
    jobs_service.create_job("job-done", [thing_arn(thing_name)], {"operation": "greet"})
    # As if the board reset after the handler finished but before SUCCEEDED was accepted.
    execution_number = jobs_service.describe_job_execution(thing_name, "job-done")["executionNumber"]
    (tmp_path / "state.json").write_text(json.dumps({
        "jobId": "job-done", "executionNumber": execution_number, "step": "half",
        "final": ["SUCCEEDED", {"result": "from before the reset"}]}))
    done = device(runtime, "succeed", mosquitto, thing_name, tmp_path)
    assert done["finished"] == 1
    assert done["states"] == ["idle", "succeeded"]
    assert details(jobs_service, thing_name, "job-done")[-1] == {"result": "from before the reset"}
    assert statuses(jobs_service, thing_name, "job-done") == ["QUEUED", "IN_PROGRESS", "SUCCEEDED"]


@pytest.mark.parametrize("theirs, states", [
    ({"result": "from before the reset"}, ["idle", "succeeded"]),
    ({"result": "someone else's"}, ["idle", "canceled"]),
], ids=["our-earlier-attempt", "another-writer"])
def test_outcome_that_got_through_before_the_reset_is_taken_once(runtime, mosquitto, jobs_service, thing_name,
                                                                 tmp_path, theirs, states):
    jobs_service.create_job("job-raced", [thing_arn(thing_name)], {"operation": "greet"})
    execution_number = jobs_service.describe_job_execution(thing_name, "job-raced")["executionNumber"]
    ours = {"result": "from before the reset"}
    (tmp_path / "state.json").write_text(json.dumps({
        "jobId": "job-raced", "executionNumber": execution_number, "step": None, "final": ["SUCCEEDED", ours]}))

    def applied_just_before(thing, api, topic, request, publish):
        # The copy sent before the reset arrives first: the runner's own is then refused as InvalidStateTransition.
        if api == "update" and request.get("status") == "SUCCEEDED":
            jobs_service.model.update(thing, "job-raced", "SUCCEEDED", theirs)
        return None

    jobs_service.interceptor = applied_just_before
    done = device(runtime, "succeed", mosquitto, thing_name, tmp_path)
    # Ours only when the state is the one we saved; else the execution ended without us.
    assert done["states"] == states
    assert done["finished"] == 1
    assert statuses(jobs_service, thing_name, "job-raced") == ["QUEUED", "IN_PROGRESS", "SUCCEEDED"]
    assert details(jobs_service, thing_name, "job-raced")[-1] == theirs
    assert not (tmp_path / "state.json").exists()


def test_outcome_refused_for_now_is_sent_again_without_running_the_handler_again(
        runtime, mosquitto, jobs_service, thing_name, tmp_path):
    throttled: list[dict[str, Any]] = []

    def throttle_first_outcome(thing, api, topic, request, publish):
        if api == "update" and request.get("status") == "SUCCEEDED" and not throttled:
            throttled.append(request)
            return {"code": "RequestThrottled", "message": "slow down"}
        return None

    jobs_service.interceptor = throttle_first_outcome
    jobs_service.create_job("job-t", [thing_arn(thing_name)], {"operation": "greet"})
    done = device(runtime, "succeed", mosquitto, thing_name, tmp_path, "1", "200")
    assert len(throttled) == 1
    assert done["states"] == ["idle", "running", "succeeded"]
    changes = details(jobs_service, thing_name, "job-t")
    assert statuses(jobs_service, thing_name, "job-t")[-1] == "SUCCEEDED"
    assert changes[-1] == throttled[0]["statusDetails"]
    assert changes.count({"state": "started"}) == 1, "the handler ran once"


def test_describe_fallback_finds_a_job_when_notifications_are_lost(runtime, mosquitto, jobs_service, thing_name,
                                                                   tmp_path):
    proc = started(runtime, "fallback", mosquitto, thing_name, tmp_path, "300")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    jobs_service.create_job("job-late", [thing_arn(thing_name)], {"operation": "greet"})
    finish(proc)
    assert statuses(jobs_service, thing_name, "job-late")[-1] == "SUCCEEDED"
    apis = [x.api for x in jobs_service.requests]
    # Found by describe("$next") without the document, then started.
    found = apis.index("describe", apis.index("start_next") + 1)
    assert apis[found + 1] == "start_next"
    describe = jobs_service.requests[found]
    assert describe.topic.endswith("/$next/get") and describe.request.get("includeJobDocument") is False


def test_duplicate_notify_next_does_not_start_an_execution_twice(runtime, mosquitto, jobs_service, thing_name,
                                                                  tmp_path):
    jobs_service.create_job("job-dup", [thing_arn(thing_name)], {"operation": "greet"})
    sent: list[str] = []

    def duplicate(thing, api, topic, request, publish):
        if api == "update" and request.get("status") == "IN_PROGRESS":
            execution = jobs_service.describe_job_execution(thing, "job-dup")
            note = {"execution": {"jobId": "job-dup", "executionNumber": execution["executionNumber"],
                                  "status": "IN_PROGRESS", "jobDocument": {"operation": "greet"}}, "timestamp": 1}
            publish("$aws/things/%s/jobs/notify-next" % thing, json.dumps(note).encode())
            sent.append("notify-next")
        return None

    jobs_service.interceptor = duplicate
    done = device(runtime, "duplicates", mosquitto, thing_name, tmp_path)
    assert len(sent) >= 5
    assert done["calls"] == ["job-dup"]
    causes = [h["cause"] for h in jobs_service.history(thing_name, "job-dup")]
    assert causes.count("start-next") == 1
    assert statuses(jobs_service, thing_name, "job-dup")[-1] == "SUCCEEDED"
    assert statuses(jobs_service, thing_name, "job-dup").count("SUCCEEDED") == 1
