"""Device scenarios of the HTTPS client alone; run on MicroPython or CPython, one result a line.

Usage: https_scenarios.py NAME https://HOST PORT THING cert=CERT key=KEY ca=CA [key=value ...] [ARG ...] (see
harness.run_scenario). Prints `RESULT <key> <json>` lines, and `WAITING` where the test is to act and then write
a line to the script's stdin.
"""

import sys
import time

from clients import another
from harness import emit, run_scenario
from iotjobs.errors import JobsError, RequestTimeout


def outcome(call):
    try:
        call()
        return "answered"
    except JobsError as e:
        return {"code": e.code, "message": e.message}
    except RequestTimeout as e:
        return {"timeout": str(e)}


def scenario_other_thing(jc, args):
    # jc's certificate, another thing's name: every call is refused, and jc's own calls still work.
    other = another(args[0])
    emit("other", [
        outcome(other.get_pending),
        outcome(other.start_next),
        outcome(lambda: other.describe(args[1])),
        outcome(lambda: other.update(args[1], "IN_PROGRESS", {"from": "a stranger"})),
    ])
    emit("own", [j["jobId"] for j in jc.get_pending()["queuedJobs"]])


def scenario_resend(jc, args):
    # The test loses the answer to each update once: each is sent again, and comes back as a success.
    execution = jc.start_next()
    progress = jc.update(execution["jobId"], "IN_PROGRESS", {"p": "1"})
    done = jc.update(execution["jobId"], "SUCCEEDED", {"result": "ok"})
    emit("states", [progress["executionState"], done["executionState"]])
    emit("resent", jc.resent)
    emit("connections", jc.connections)


def scenario_late_answer(jc, args):
    # The test holds the answer back: the call gives up at its timeout, and the next one (on a new link) works.
    started = time.ticks_ms()
    emit("first", outcome(jc.get_pending))
    emit("elapsed_ms", time.ticks_diff(time.ticks_ms(), started))
    print("WAITING")
    sys.stdin.readline()
    emit("second", [j["jobId"] for j in jc.get_pending()["queuedJobs"]])


class FileWlan:
    """A station interface whose link is up unless the file args[0] says "down"; counts the reconnects asked."""

    def __init__(self, path):
        self.path = path
        self.asked = 0

    def isconnected(self):
        with open(self.path) as f:
            return f.read().strip() != "down"

    def active(self, on):
        pass

    def connect(self):
        self.asked += 1


def scenario_wifi(jc, args):
    # The link is down: the call asks the radio to reconnect, waits up to wlan_ms, and ends at its timeout.
    jc.wlan = FileWlan(args[0])
    emit("down", outcome(jc.get_pending))
    emit("asked", jc.wlan.asked)
    print("WAITING")
    sys.stdin.readline()
    emit("up", [j["jobId"] for j in jc.get_pending()["queuedJobs"]])


def scenario_calls(jc, args):
    # One call per argument (get, start, describe:JOB, update:JOB:STATUS), each outcome a result.
    results = []
    for arg in args:
        parts = arg.split(":")
        try:
            if parts[0] == "get":
                reply = jc.get_pending()
            elif parts[0] == "start":
                reply = jc.start_next()
            elif parts[0] == "describe":
                reply = jc.describe(parts[1])
            else:
                reply = jc.update(parts[1], parts[2])
            document = reply.get("jobDocument") if isinstance(reply, dict) else None
            if document is not None and not isinstance(document, (dict, str)):
                reply["jobDocument"] = {"kind": type(document).__name__, "operation": document.get("operation"),
                                        "size": document.size}
            results.append(reply)
        except JobsError as e:
            results.append({"code": e.code, "message": e.message, "state": e.execution_state})
        except RequestTimeout as e:
            results.append({"timeout": str(e)})
    emit("results", results)
    emit("dropped", jc.dropped)


run_scenario(globals())
