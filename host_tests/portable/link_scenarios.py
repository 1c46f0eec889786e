"""Device scenarios about the link (oversized messages, calls while the broker is away), on both runtimes.

Usage: link_scenarios.py NAME HOST PORT THING [ARG ...]; prints `RESULT <key> <json>` lines.
"""

import json
import sys
import time

from harness import emit, run_scenario
from iotjobs import JobsError, RequestTimeout


def scenario_oversized(jc, args):
    reasons = []
    jc.on_error(lambda reason, detail: reasons.append(reason))
    execution = jc.describe(args[0])
    emit("execution", {"jobId": execution["jobId"], "status": execution["status"]})
    emit("reasons", reasons)
    emit("oversized", jc.session.oversized)
    # The link is still in step: the next call works.
    emit("pending", len(jc.get_pending()["queuedJobs"]))


def scenario_call_while_unreachable(jc, args):
    print("READY")
    sys.stdin.readline()  # the test makes the broker unreachable, then says go
    started = time.ticks_ms()
    try:
        jc.get_pending()
        emit("outcome", "answered")
    except RequestTimeout as e:
        emit("outcome", str(e))
    emit("elapsed_ms", time.ticks_diff(time.ticks_ms(), started))


def scenario_terminal_once(jc, args):
    execution = jc.start_next()
    done = jc.update(execution["jobId"], "SUCCEEDED", {"result": "ok"})
    emit("done", {"state": done["executionState"], "resent": jc.resent, "link_losses": jc.session.link_losses})


def scenario_resend(jc, args):
    # args: STATUS DETAILS ("-" for none). The test cuts the link once the update reached the service.
    execution = jc.start_next()
    details = json.loads(args[1]) if args[1] != "-" else None
    try:
        done = jc.update(execution["jobId"], args[0], details)
        emit("update", {"state": done["executionState"]})
    except JobsError as e:
        emit("update", {"code": e.code, "execution_state": e.execution_state})
    emit("resent", jc.resent)


def scenario_outbox(jc, args):
    # Offline updates: queued in order, unsent progress replaced by a newer update, a full queue refused.
    print("READY")
    sys.stdin.readline()  # the broker is now unreachable
    # Let the session notice first: an update whose publish failed half way is kept as maybe-sent instead.
    deadline = time.ticks_add(time.ticks_ms(), 5000)
    while jc.connected and time.ticks_diff(deadline, time.ticks_ms()) > 0:
        jc.wait(50)
    outcomes = []
    calls = (
        (args[0], "IN_PROGRESS", {"p": "1"}),
        (args[0], "IN_PROGRESS", {"p": "2"}),
        (args[0], "SUCCEEDED", {"p": "done"}),
        (args[1], "FAILED", {"why": "x"}),
        (args[2], "REJECTED", {"why": "y"}),
        (args[2], "SUCCEEDED", {"why": "z"}),
        (args[1], "SUCCEEDED", {"why": "w"}),
    )
    for job_id, status, details in calls:
        try:
            jc.update(job_id, status, details)
            outcomes.append("answered")
        except RequestTimeout:
            outcomes.append("queued %d" % jc.outbox)
        except JobsError as e:
            outcomes.append(e.code)
    emit("outcomes", outcomes)
    print("OFFLINE DONE")
    sys.stdin.readline()  # the broker is back
    deadline = time.ticks_add(time.ticks_ms(), 20000)
    while jc.outbox and time.ticks_diff(deadline, time.ticks_ms()) > 0:
        jc.poll()
        time.sleep_ms(10)
    emit("outbox_left", jc.outbox)


run_scenario(globals(), {"response_ms": 500, "ping_ms": 1000, "backoff_floor_ms": 100, "backoff_ceiling_ms": 400})
