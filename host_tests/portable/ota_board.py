"""A board that takes firmware updates: the test esp32's power-on, then the runner with the ota and download handlers.

Usage: ota_board.py MODE HOST PORT THING STATE_DIR. MODE "job" runs until one execution ends, "step" runs one
runner step (a start_next and what it starts), "boot" only powers on. ESP32_* in the environment set up the test
esp32 (flash folder, partitions, a power cut); OTA_SELF_TEST=fail makes the self-test fail, =cut cuts the power
during it; DOWNLOAD_MAX raises the download handler's size limit. Prints `RESULT boot <label>`, the runner's
results, then `RESULT version <v>` of the running firmware.
"""

import json
import os
import sys

import esp32  # importing it is the power-on: the bootloader picks the app partition, maybe rolls back
from umqtt.simple import MQTTClient

from iotjobs import JobsClient, handlers
from iotjobs.runner import Runner

RESET_EXIT_CODE = 211  # what host_tests/shim/machine.reset() exits with


def emit(key, value):
    print("RESULT", key, json.dumps(value))


def reset():
    # The unix port's machine has no reset(): end the process as the CPython shim's machine.reset() does.
    import machine

    if hasattr(machine, "reset"):
        machine.reset()
    print("RESET")
    sys.exit(RESET_EXIT_CODE)


def self_test():
    how = os.getenv("OTA_SELF_TEST")
    if how == "cut":
        esp32.power_cut("during the self-test")  # type: ignore[attr-defined]  # the test esp32's own
    return how != "fail"


def firmware_version():
    # After the jobs: iotjobs.ota is loaded by the handler when an ota job runs, not before (it costs heap).
    from iotjobs import ota

    running = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # the stubs take only a label
    return ota.app_version(running)


def main():
    mode, host, port, thing, state_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    running = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]
    emit("boot", running.info()[4])
    if mode == "boot":
        emit("version", firmware_version())
        return
    handlers.OTA_SELF_TEST = self_test
    handlers.DOWNLOAD_MAX = int(os.getenv("DOWNLOAD_MAX") or handlers.DOWNLOAD_MAX)
    jc = JobsClient(MQTTClient(thing + "-device", host, port, keepalive=60), thing, timeout_ms=5000)
    jc.connect()
    states: list = []
    table = {"ota": handlers.ota, "download": handlers.download}
    runner = Runner(jc, table, state_path=state_dir + "/state.json",
                    on_state=lambda state, job_id: states.append(state), reset=reset)
    if mode == "step":
        emit("outcome", runner.step())
    else:
        emit("finished", runner.run(max_jobs=1))
    emit("states", states)
    jc.disconnect()
    del jc, runner
    emit("version", firmware_version())


main()
