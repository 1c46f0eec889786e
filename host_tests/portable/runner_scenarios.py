"""Runner scenarios against a real broker and Jobs service; run on MicroPython or CPython, one result a line.

Usage: runner_scenarios.py NAME HOST PORT THING STATE_DIR [key=value ...] [ARG ...] (HOST https://NAME and the
key=value pairs as in clients.client_for: the HTTPS client, its files and options). Prints `RESULT <key> <json>`
lines; `READY` once connected and subscribed; an exception ends the run with `ERROR <type> <message>` and status 1.
"""

import gc
import json
import sys
import time

from iotjobs import handlers
from iotjobs.runner import Canceled, Runner

RESET_EXIT_CODE = 211  # what host_tests/shim/machine.reset() exits with


def emit(key, value):
    print("RESULT", key, json.dumps(value))


def simulated_reset():
    # The unix port's machine has no reset(): end the process as the CPython shim's machine.reset() does.
    print("RESET")
    sys.exit(RESET_EXIT_CODE)


def wait_for_file(path, timeout_ms=20000):
    # The test's signal: it creates the file once it has done its part (canceled the job, ...).
    import os

    deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
    while time.ticks_diff(deadline, time.ticks_ms()) > 0:
        try:
            os.stat(path)
            return
        except OSError:
            time.sleep_ms(5)
    raise AssertionError("no " + path)


def board_reset():
    import machine

    return getattr(machine, "reset", None) or simulated_reset


class Board:
    """What a device main.py has: a JobsClient, handlers, and the LED states the runner reported."""

    def __init__(self, jc, state_dir, args):
        self.jc = jc
        self.state_dir = state_dir
        self.args = args
        self.states = []
        self.state_jobs = []
        self.calls = []

    def on_state(self, name, job_id):
        self.states.append(name)
        self.state_jobs.append([name, job_id])

    def runner(self, table, **options):
        options.setdefault("describe_every_ms", 60000)
        options.setdefault("reset", board_reset())
        return Runner(self.jc, table, state_path=self.state_dir + "/state.json", on_state=self.on_state, **options)


def greet(execution, progress):
    noisy: dict = {"k%02d" % i: "v%d" % i for i in range(12)}
    noisy["long"] = "x" * 1500
    noisy["ctl"] = "a\x00b\nc\x1bd\u200be"
    noisy["bad key!"] = 7
    progress(noisy, "half")
    progress({"percent": "100"})
    return {"result": "ok", "operation": execution["operation"], "checkpoint": str(execution["checkpoint"]),
            "big": "y" * 1500}


def broken(execution, progress):
    progress({"percent": "10"})
    raise ValueError("could not apply\n" + "z" * 1500 + "\x00")


def scenario_succeed(board):
    every = int(board.args[1]) if len(board.args) > 1 else 60000
    runner = board.runner({"greet": greet}, describe_every_ms=every)
    print("READY")
    emit("finished", runner.run(max_jobs=int(board.args[0]) if board.args else 1))
    emit("states", board.states)
    emit("state_jobs", board.state_jobs)


def scenario_large(board):
    # Reads only what it needs: a document over the client's budget stays on flash (a JobDocument).
    def touch(execution, progress):
        document = execution["jobDocument"]
        return {"operation": execution["operation"], "kind": type(document).__name__,
                "settings": str(len(document.get("settings") or ())) if board.args else "-"}

    runner = board.runner({"config": touch})
    emit("finished", runner.run(max_jobs=1))
    emit("states", board.states)


def scenario_fail(board):
    runner = board.runner({"greet": greet, "broken": broken})
    emit("finished", runner.run(max_jobs=1))
    emit("states", board.states)


def scenario_cancel(board):
    seen = []

    def long_job(execution, progress):
        progress({"state": "working"})
        print("RUNNING")
        # The test cancels the job, then says go: from here on the next progress() must raise.
        wait_for_file(board.state_dir + "/go")
        try:
            for i in range(100):
                progress({"i": str(i)})
                time.sleep_ms(20)
        except Canceled as e:
            seen.append(str(e))
            raise
        return {"never": "reached"}

    runner = board.runner({"long": long_job, "greet": greet})
    emit("finished", runner.run(max_jobs=2))
    emit("canceled", seen)
    emit("states", board.states)


def scenario_gated(board):
    # Holds IN_PROGRESS with its details until the test has seen them (in the console), then succeeds.
    def flash(execution, progress):
        progress({"step": "flashing", "percent": "40"})
        print("RUNNING")
        wait_for_file(board.state_dir + "/go", 60000)
        return {"result": "flashed"}

    runner = board.runner({"flash": flash})
    emit("finished", runner.run(max_jobs=1))
    emit("states", board.states)


def scenario_cancel_by_notification(board):
    seen = []
    runners: list = []

    def long_job(execution, progress):
        progress({"state": "working"})
        print("RUNNING")
        wait_for_file(board.state_dir + "/go")
        # Only poll, never publish, until the notify-next that says the job is gone has been handled.
        deadline = time.ticks_add(time.ticks_ms(), 5000)
        while not runners[0]._suspect and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            board.jc.poll()
            time.sleep_ms(5)
        try:
            progress({"i": "1"})
        except Canceled as e:
            seen.append(str(e))
            raise
        return {"never": "reached"}

    runners.append(board.runner({"long": long_job}))
    emit("finished", runners[0].run(max_jobs=1))
    emit("canceled", seen)
    emit("states", board.states)


def scenario_duplicates(board):
    # The test sends a notify-next for this very execution with every progress update.
    def counted(execution, progress):
        board.calls.append(execution["jobId"])
        for i in range(5):
            progress({"i": str(i)})
        return {"result": "once"}

    runner = board.runner({"greet": counted})
    emit("finished", runner.run(max_jobs=1))
    for _ in range(20):
        runner.step()  # any late duplicate would start it here
    emit("calls", board.calls)


def scenario_reboot(board):
    # Run twice on one state directory: the first run resets, the second reports SUCCEEDED.
    # With "default-reset" the runner resets the board its own way (no reset= given), as a user's program would.
    options = {"reset": None} if board.args == ["default-reset"] else {}
    runner = board.runner({"reboot": handlers.reboot}, **options)
    emit("finished", runner.run(max_jobs=1))
    emit("states", board.states)


def scenario_download(board):
    heap = {}
    gc.collect()
    heap["free_before"] = gc.mem_free()
    runner = board.runner({"download": handlers.download, "config": handlers.config})
    handlers.DOWNLOAD_MAX = int(board.args[0]) if board.args else handlers.DOWNLOAD_MAX
    emit("finished", runner.run(max_jobs=1))
    gc.collect()
    heap["free_after"] = gc.mem_free()
    emit("heap", heap)
    emit("states", board.states)


def scenario_config(board):
    handlers.CONFIG_PATH = board.state_dir + "/config.json"
    runner = board.runner({"config": handlers.config})
    emit("finished", runner.run(max_jobs=int(board.args[0]) if board.args else 1))
    emit("states", board.states)


def scenario_fallback(board):
    # Lost notifications: only the periodic describe("$next") can find the job.
    runner = board.runner({"greet": greet}, describe_every_ms=int(board.args[0]))
    board.jc.on_notify_next(lambda payload: None)
    board.jc.on_notify(lambda payload: None)
    runner.step()  # the first look at start-up, which finds nothing
    print("READY")
    emit("finished", runner.run(max_jobs=1))
    emit("states", board.states)


def main():
    name, host, port, thing, state_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    args = sys.argv[6:]
    if host.startswith("https://"):
        # Loaded only here: the MQTT scenarios run on a board-sized heap that a module more would eat into.
        from clients import client_for, take_options

        jc = client_for(host, port, thing, take_options(args))
    else:
        from umqtt.simple import MQTTClient

        from iotjobs import JobsClient

        jc = JobsClient(MQTTClient(thing + "-device", host, port, keepalive=60), thing, timeout_ms=5000)
    jc.connect()
    board = Board(jc, state_dir, args)
    try:
        globals()["scenario_" + name](board)
    except Exception as e:
        print("ERROR", type(e).__name__, e)
        sys.exit(1)
    # Not in a finally: a reset (SystemExit here) must leave as a board does, without a clean DISCONNECT.
    jc.disconnect()


main()
