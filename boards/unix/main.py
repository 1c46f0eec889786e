"""The virtual board: the MicroPython unix port running jobs from an MQTT broker, as an ESP32 would."""

import sys
import time

from umqtt.simple import MQTTClient

from iotjobs import JobsClient, JobsError

USAGE = "usage: main.py --broker HOST:PORT --thing NAME [--jobs N] [--idle-ms MS]"


def log(text):
    print("board:", text)


def options(argv):
    found = {"--jobs": "1", "--idle-ms": "30000"}
    i = 0
    while i < len(argv):
        if argv[i] not in ("--broker", "--thing", "--jobs", "--idle-ms") or i + 1 >= len(argv):
            raise SystemExit(USAGE)
        found[argv[i]] = argv[i + 1]
        i += 2
    if "--broker" not in found or "--thing" not in found:
        raise SystemExit(USAGE)
    host, port = found["--broker"].rsplit(":", 1)
    return host, int(port), found["--thing"], int(found["--jobs"]), int(found["--idle-ms"])


def greet(jc, execution):
    """The demo operation: report each step as progress, then succeed with the document's message."""
    document = execution["jobDocument"]
    job_id = execution["jobId"]
    steps = int(document.get("steps", 1))
    for step in range(1, steps + 1):
        time.sleep_ms(100)
        jc.update(job_id, "IN_PROGRESS", {"step": "%d/%d" % (step, steps)})
        log("job %s progress step %d/%d" % (job_id, step, steps))
    return {"result": document.get("message", "done")}


HANDLERS = {"greet": greet}


def run_job(jc, execution):
    job_id = execution["jobId"]
    log("job %s started: IN_PROGRESS (execution %d, version %d)"
        % (job_id, execution["executionNumber"], execution["versionNumber"]))
    operation = execution.get("jobDocument", {}).get("operation")
    handler = HANDLERS.get(operation)
    if handler is None:
        jc.update(job_id, "REJECTED", {"reason": "unknown operation %s" % operation})
        log("job %s REJECTED: unknown operation %s" % (job_id, operation))
        return
    try:
        details = handler(jc, execution)
    except JobsError as e:
        # The service refused a progress update: the execution was canceled or timed out meanwhile.
        log("job %s stopped by the service: %s" % (job_id, e))
        return
    except Exception as e:
        jc.update(job_id, "FAILED", {"error": str(e)[:1024] or type(e).__name__})
        log("job %s FAILED: %s" % (job_id, e))
        return
    state = jc.update(job_id, "SUCCEEDED", details, include_state=True)["executionState"]
    log("job %s %s (version %d)" % (job_id, state["status"], state["versionNumber"]))


def main():
    host, port, thing, jobs, idle_ms = options(sys.argv[1:])
    jc = JobsClient(MQTTClient(thing, host, port, keepalive=60), thing)
    woken = []
    jc.on_notify_next(lambda payload: woken.append(payload.get("execution", {}).get("jobId")))
    jc.connect()
    log("connected to %s:%d as %s" % (host, port, thing))
    done = 0
    while done < jobs:
        execution = jc.start_next()
        if execution is not None:
            run_job(jc, execution)
            done += 1
            continue
        log("waiting for a job")
        deadline = time.ticks_add(time.ticks_ms(), idle_ms)
        while not woken and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            jc.poll()
            time.sleep_ms(20)
        if woken:
            log("notify-next: job %s is next" % woken[-1])
            woken.clear()
        # Without a notification the loop still asks again: notifications sent while offline are lost.
    jc.disconnect()
    log("done: %d job(s)" % done)


main()
