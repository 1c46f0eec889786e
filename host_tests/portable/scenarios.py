"""Device scenarios against a real broker and Jobs service; run on MicroPython or CPython, one result a line.

Usage: scenarios.py NAME HOST PORT THING [key=value ...] [ARG ...] (harness.run_scenario: HOST https://NAME for
the HTTPS client). Each scenario prints `RESULT <key> <json>` lines that the pytest side parses; an exception
ends the run with `ERROR <type> <message>` and exit status 1.
"""

import json
import time

from clients import another
from harness import emit, run_scenario
from iotjobs.errors import JobsError, RequestTimeout


def error_fields(e):
    return {"code": e.code, "message": e.message, "execution_state": e.execution_state}


def collect_errors(jc):
    seen = []

    def on_error(reason, detail):
        seen.append(reason)

    jc.on_error(on_error)
    return seen


def scenario_lifecycle(jc, args):
    emit("pending", jc.get_pending())
    execution = jc.start_next({"step": "starting"})
    emit("started", execution)
    job_id = execution["jobId"]
    progress = jc.update(job_id, "IN_PROGRESS", {"progress": "50"}, execution["versionNumber"], include_state=True)
    emit("progress", progress)
    done = jc.update(job_id, "SUCCEEDED", {"result": "ok"}, include_state=True)
    emit("done", done)
    emit("next", jc.describe())
    emit("dropped", jc.dropped)


def scenario_finish(jc, args):
    execution = jc.start_next()
    emit("finished", jc.update(execution["jobId"], args[0], {"reason": "chosen by the handler"}, include_state=True))


def scenario_in_order(jc, args):
    started = []
    while True:
        execution = jc.start_next()
        if execution is None:
            break
        started.append(execution["jobId"])
        jc.update(execution["jobId"], "SUCCEEDED")
    emit("started", started)


def scenario_nothing_pending(jc, args):
    emit("describe_next", jc.describe())
    emit("start_next", jc.start_next())
    emit("pending", jc.get_pending())


def scenario_describe(jc, args):
    job_id = args[0]
    emit("full", jc.describe(job_id))
    emit("without_document", jc.describe(job_id, include_document=False))
    emit("by_number", jc.describe(job_id, execution_number=int(args[1])))
    try:
        jc.describe("no-such-job")
    except JobsError as e:
        emit("unknown", error_fields(e))


def scenario_version_mismatch(jc, args):
    execution = jc.start_next()
    state: dict = {}
    try:
        jc.update(execution["jobId"], "IN_PROGRESS", {"p": "1"}, execution["versionNumber"] + 5)
        emit("mismatch", None)
    except JobsError as e:
        emit("mismatch", error_fields(e))
        state = e.execution_state
    # The state that came with the error is enough to try again without a describe.
    retry = jc.update(execution["jobId"], "IN_PROGRESS", {"p": "2"}, state["versionNumber"], include_state=True)
    emit("retry", retry)


def scenario_invalid_transition(jc, args):
    execution = jc.start_next()
    jc.update(execution["jobId"], "SUCCEEDED")
    try:
        jc.update(execution["jobId"], "IN_PROGRESS", {"p": "again"})
        emit("transition", None)
    except JobsError as e:
        emit("transition", error_fields(e))


def scenario_terminal(jc, args):
    execution = jc.start_next()
    jc.update(execution["jobId"], "SUCCEEDED")
    try:
        jc.describe(execution["jobId"])
        emit("terminal", None)
    except JobsError as e:
        emit("terminal", error_fields(e))


def scenario_refused_update(jc, args):
    # args: STATUS DETAILS EXPECTED ("-" for none). The execution first reaches STATUS with {"pct": "50"};
    # then the same update call, sent once, must come back as the service's refusal.
    execution = jc.start_next()
    job_id = execution["jobId"]
    jc.update(job_id, args[0], {"pct": "50"})
    details = json.loads(args[1]) if args[1] != "-" else None
    expected = int(args[2]) if args[2] != "-" else None
    try:
        emit("refused", jc.update(job_id, args[0], details, expected_version=expected))
    except JobsError as e:
        emit("refused", error_fields(e))
    emit("resent", jc.resent)


def scenario_notify_during_call(jc, args):
    events = []
    jc.on_notify(lambda payload: events.append(["notify", payload]))
    jc.on_notify_next(lambda payload: events.append(["notify-next", payload]))
    pending = jc.get_pending()
    emit("events_before_return", events)
    emit("pending", pending)


def scenario_poll_notifications(jc, args):
    events = []
    jc.on_notify(lambda payload: events.append(["notify", payload]))
    jc.on_notify_next(lambda payload: events.append(["notify-next", payload]))
    print("READY")
    deadline = time.ticks_add(time.ticks_ms(), int(args[0]))
    while len(events) < 2 and time.ticks_diff(deadline, time.ticks_ms()) > 0:
        jc.poll()
        time.sleep_ms(5)
    emit("events", events)


def scenario_foreign_messages(jc, args):
    seen = collect_errors(jc)
    emit("execution", jc.describe(args[0]))
    emit("dropped", jc.dropped)
    emit("reasons", seen)


def scenario_rejections(jc, args):
    codes: list = []
    for _ in range(int(args[0])):
        try:
            jc.get_pending()
            codes.append(None)
        except JobsError as e:
            codes.append(error_fields(e))
    emit("codes", codes)


def scenario_timeout(jc, args):
    started = time.ticks_ms()
    try:
        jc.get_pending()
        emit("timeout", None)
    except RequestTimeout as e:
        emit("timeout", {"message": str(e), "elapsed_ms": time.ticks_diff(time.ticks_ms(), started)})


def scenario_bad_input(jc, args):
    calls = (
        lambda: jc.describe("a/b"),
        lambda: jc.describe("#"),
        lambda: jc.update("+", "SUCCEEDED"),
        lambda: jc.update("$next", "SUCCEEDED"),
        lambda: jc.update("job-1", "QUEUED"),
        lambda: jc.update("job-1", "CANCELED"),
        lambda: jc.update("job-1", "IN_PROGRESS", {"bad key": "v"}),
        lambda: jc.update("job-1", "IN_PROGRESS", {"k": "x" * 1025}),
        lambda: jc.update("job-1", "IN_PROGRESS", {"k": "line\nbreak"}),
        lambda: jc.update("job-1", "IN_PROGRESS", {"k": 5}),
        lambda: jc.update("job-1", "SUCCEEDED", expected_version=-1),
        lambda: jc.start_next(step_timeout_min=0),
        lambda: jc.start_next({"k%d" % i: "v" for i in range(11)}),
    )
    refused: list = []
    for call in calls:
        try:
            call()
            refused.append(None)
        except ValueError as e:
            refused.append(str(e))
    emit("refused", refused)
    emit("pending", jc.get_pending())
    try:
        another("bad/thing")
        emit("bad_thing", None)
    except ValueError as e:
        emit("bad_thing", str(e))


def scenario_publish_out_of_memory(jc, args):
    """The update's first PUBLISH cannot be built (MemoryError): the link stays up, the update goes later, once."""
    from iotjobs import session

    seen = collect_errors(jc)
    execution = jc.start_next()
    header = session._header
    refused: list = []

    def short_of_memory(first, size):
        if first & 0xF0 == 0x30 and not refused:
            refused.append(size)
            raise MemoryError("memory allocation failed, allocating 259 bytes")
        return header(first, size)

    session._header = short_of_memory
    try:
        jc.update(execution["jobId"], "SUCCEEDED", {"result": "ok"})
        emit("first_call", "answered")
    except RequestTimeout:
        emit("first_call", "timeout")
    deadline = time.ticks_add(time.ticks_ms(), 20000)
    while jc.outbox and time.ticks_diff(deadline, time.ticks_ms()) > 0:
        jc.wait(100)
    emit("outbox", jc.outbox)
    emit("refused", len(refused))
    emit("link_losses", jc.session.link_losses)
    emit("errors", seen)


def scenario_unicode_details(jc, args):
    execution = jc.start_next()
    done = jc.update(execution["jobId"], "SUCCEEDED", {"message": args[0]}, include_state=True)
    emit("details", done["executionState"]["statusDetails"])


def scenario_large_document(jc, args):
    import gc

    gc.collect()
    execution = jc.start_next()
    document = execution["jobDocument"]
    # What a handler of a large document does: read the fields it needs, not the whole thing.
    emit("document", {
        "kind": type(document).__name__,
        "operation": document.get("operation"),
        "marker": document.get("marker"),
        "size": getattr(document, "size", None),
    })
    del execution, document
    gc.collect()
    jc.update(args[0], "SUCCEEDED", {"blob": "received"})
    emit("done", True)


run_scenario(globals())
