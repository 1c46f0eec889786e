"""A device loop for fault tests and the soak: runs jobs as their documents say, whatever the link does.

Usage (MicroPython or CPython with the shim): device.py HOST PORT THING [key=value ...]
Keys: jobs (stop after this many), timeout_ms, response_ms, ping_ms, floor_ms, ceiling_ms, stable_ms, wlan_ms,
wlan ("network" for network.WLAN, or a file whose content "down" means the WiFi link is down). A job document says
{"steps": N, "final": "SUCCEEDED"|"FAILED"|"REJECTED", "pause_ms": P}: N progress updates {"step": "i"},
P ms apart, then the final status. Prints one line per event: CONNECTED, JOB <id> <status>, ERROR <what>,
LOOP_DEATH <what>, and DONE with the counts.

runner=1 runs the jobs through the Runner instead, its checkpoint on flash (the current directory), until a file
named "stop" appears there; documents then also name an operation ("soak", or one not allowed for REJECTED).
Its flash is a board's: writes take a time (flash_bps bytes a second, and flash_ms for each rename or remove),
each operation announced by a FLASH line, so that a power cut can land in the middle of one; flash=fat refuses
to rename over an existing file, as FAT does. HANDLER <job> says a handler starts, SAVED_FINAL <job> that an
outcome reached flash.

ota=1 (with runner=1) makes it a board that takes firmware updates: importing the test esp32 (ESP32_* in the
environment) is its power-on, FIRMWARE <label> <version> says what booted, and "ota" jobs run the library's
handler. HANDLER lines then name the firmware the handler runs on. A reset (the ota handler's reboot) prints
RESET and ends the process with RESET_EXIT_CODE, for the soak to start it again on the same flash. The self-test
prints SELF_TEST <version>, takes self_test_ms, and fails on firmware whose version ends with BROKEN.
"""

import io
import json
import os
import sys
import time

from umqtt.simple import MQTTClient

from iotjobs import JobsClient, JobsError, RequestTimeout

RESET_EXIT_CODE = 211  # as the CPython shim's machine.reset(): the soak starts the board again
BROKEN = "-broken"  # the version suffix of an image whose self-test fails (the soak plans those)
firmware: list = []  # with ota=1: the version of the firmware running, read once at power-on


class FileWlan:
    """A WiFi interface whose link a test controls through a file, for the runtimes that have no network module."""

    def __init__(self, path):
        self.path = path

    def isconnected(self):
        try:
            with open(self.path) as f:
                return f.read().strip() != "down"
        except OSError:
            return True

    def active(self, flag=None):
        return True

    def connect(self, *args):
        pass


def options(argv):
    found = {"jobs": "1", "timeout_ms": "3000", "response_ms": "1000", "ping_ms": "1000", "floor_ms": "100",
             "ceiling_ms": "1000", "stable_ms": "5000", "wlan": "", "wlan_ms": "1000", "runner": "0",
             "flash": "littlefs", "flash_bps": "0", "flash_ms": "0", "ota": "0", "self_test_ms": "0"}
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in found:
            raise SystemExit("unknown option " + key)
        found[key] = value
    return found


def wait_for_outbox(jc):
    # An update that timed out is still delivered; the next job must not start before it is.
    while jc.outbox:
        jc.poll()
        time.sleep_ms(10)


def run_job(jc, execution):
    job_id = execution["jobId"]
    document = execution.get("jobDocument") or {}
    steps = int(document.get("steps", 1))
    final = document.get("final", "SUCCEEDED")
    # A start-next answered twice (its first answer lost) returns the execution as it stands: go on from there.
    done_steps = int((execution.get("statusDetails") or {}).get("step", "0"))
    pause_ms = int(document.get("pause_ms", 0))
    for step in range(done_steps + 1, steps + 1):
        time.sleep_ms(pause_ms)
        try:
            jc.update(job_id, "IN_PROGRESS", {"step": str(step)})
        except RequestTimeout:
            print("ERROR progress timeout", job_id, step)
    try:
        jc.update(job_id, final, {"result": final})
    except RequestTimeout:
        print("ERROR final timeout", job_id)
    wait_for_outbox(jc)
    print("JOB", job_id, final)


class FlashFile(io.IOBase):
    """A file being written to a board's flash: each piece takes its time, so a cut may find it half written."""

    def __init__(self, f, bps):
        self.f = f
        self.bps = bps
        self.written = 0
        self.opened = time.ticks_ms()

    def write(self, data):
        n = self.f.write(data)
        self.written += len(data)
        behind = self.written * 1000 // self.bps - time.ticks_diff(time.ticks_ms(), self.opened)
        if behind > 0:
            time.sleep_ms(behind)
        return n

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Flash:
    """What the library's store sees as open() and os on a board: slow, and FAT's rename if asked.

    Each operation is announced (FLASH write|remove|rename PATH) as it begins and takes effect at once; then
    the flash is busy for its time. A renamed file that holds an outcome is reported (SAVED_FINAL JOB): from
    then on the job's handler must never run again.
    """

    def __init__(self, kind, bps, op_ms):
        self.fat = kind == "fat"
        self.bps = bps
        self.op_ms = op_ms

    def open(self, path, mode="r"):
        f = open(path, mode)
        if "w" not in mode or not self.bps:
            return f
        print("FLASH write", path)
        return FlashFile(f, self.bps)

    def stat(self, path):
        return os.stat(path)

    def remove(self, path):
        print("FLASH remove", path)
        os.remove(path)
        time.sleep_ms(self.op_ms)

    def rename(self, old, new):
        print("FLASH rename", new)
        if self.fat:
            try:
                os.stat(new)
            except OSError:
                pass
            else:
                raise OSError(17, "EEXIST")  # FAT renames only to a free name
        os.rename(old, new)
        try:
            with open(new) as f:
                saved = json.load(f)
            if isinstance(saved, dict) and saved.get("final"):
                print("SAVED_FINAL", saved.get("jobId"))
        except (OSError, ValueError):
            pass
        time.sleep_ms(self.op_ms)


def announce_handler(execution):
    if firmware:
        print("HANDLER", execution["jobId"], firmware[0])
    else:
        print("HANDLER", execution["jobId"])


def soak_handler(execution, progress):
    announce_handler(execution)
    document = execution["input"]
    steps = int(document.get("steps", 1))
    done = int(execution["checkpoint"] or 0)  # from flash, or from the last statusDetails after a lost file
    pause_ms = int(document.get("pause_ms", 0))
    for step in range(done + 1, steps + 1):
        time.sleep_ms(pause_ms)
        progress({"step": str(step)}, str(step))
    if document.get("final") == "FAILED":
        raise RuntimeError("planned failure")
    return {"result": document.get("final")}


def ota_handler(execution, progress):
    from iotjobs import handlers

    announce_handler(execution)
    return handlers.ota(execution, progress)


def power_on():
    """The test esp32's bootloader picks the firmware; what it booted is printed and kept in firmware."""
    import esp32

    from iotjobs import ota

    running = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # the stubs take only a label
    firmware.append(ota.app_version(running) or "unknown")
    print("FIRMWARE", running.info()[4], firmware[0])


def self_test_for(duration_ms):
    def self_test():
        print("SELF_TEST", firmware[0])
        time.sleep_ms(duration_ms)  # a board's checks take a while: long enough for a power cut to land in them
        return not firmware[0].endswith(BROKEN)

    return self_test


def reset():
    print("RESET")
    sys.exit(RESET_EXIT_CODE)


def stop_asked():
    try:
        os.stat("stop")
        return True
    except OSError:
        return False


def run_with_runner(jc, opts):
    """The jobs through the Runner, on a flash that a power cut may interrupt at any moment; returns (jobs, deaths)."""
    from iotjobs import store
    from iotjobs.runner import Runner

    flash = Flash(opts["flash"], int(opts["flash_bps"]), int(opts["flash_ms"]))
    # The library's store writes through this flash instead of the host's files.
    store.open = flash.open  # type: ignore[attr-defined]
    store.os = flash  # type: ignore[assignment]
    table = {"soak": soak_handler}
    if firmware:
        from iotjobs import handlers

        handlers.OTA_SELF_TEST = self_test_for(int(opts["self_test_ms"]))
        table["ota"] = ota_handler
    runner = Runner(jc, table, describe_every_ms=1000, reset=reset)
    done = deaths = 0
    while not stop_asked():
        try:
            outcome = runner.step()
            if outcome:
                done += 1
                print("JOB", outcome)
            else:
                jc.wait(50)
        except Exception as e:  # the loop must survive anything; the soak counts what got here
            deaths += 1
            print("LOOP_DEATH", type(e).__name__, e)
    wait_for_outbox(jc)
    return done, deaths


def run_jobs(jc, opts):
    """The jobs through the client alone, until opts["jobs"] have ended; returns (jobs, deaths)."""
    woken = []
    jc.on_notify_next(lambda payload: woken.append(1))
    done = 0
    deaths = 0
    jobs = int(opts["jobs"])
    while done < jobs:
        try:
            execution = jc.start_next()
            if execution is None:
                woken.clear()
                deadline = time.ticks_add(time.ticks_ms(), 1000)
                while not woken and time.ticks_diff(deadline, time.ticks_ms()) > 0:
                    jc.poll()
                    time.sleep_ms(10)
                continue
            run_job(jc, execution)
            done += 1
        except RequestTimeout as e:
            print("ERROR", e)
        except JobsError as e:
            print("ERROR", e)
        except Exception as e:  # the loop must survive anything; the soak counts what got here
            deaths += 1
            print("LOOP_DEATH", type(e).__name__, e)
    return done, deaths


def main():
    host, port, thing = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    opts = options(sys.argv[4:])
    if opts["ota"] == "1":
        power_on()
    wlan = None  # type: object
    if opts["wlan"] == "network":
        import network  # a board's WLAN, or the CPython shim's, whose link also kills sockets

        wlan = network.WLAN(network.STA_IF)
    elif opts["wlan"]:
        wlan = FileWlan(opts["wlan"])
    mqtt = MQTTClient(thing + "-device", host, port, keepalive=60)
    jc = JobsClient(
        mqtt,
        thing,
        timeout_ms=int(opts["timeout_ms"]),
        wlan=wlan,
        response_ms=int(opts["response_ms"]),
        ping_ms=int(opts["ping_ms"]),
        backoff_floor_ms=int(opts["floor_ms"]),
        backoff_ceiling_ms=int(opts["ceiling_ms"]),
        stable_ms=int(opts["stable_ms"]),
        wlan_ms=int(opts["wlan_ms"]),
    )
    jc.on_error(lambda reason, detail: print("ERROR", reason, detail))
    while True:
        try:
            jc.connect()
            break
        except OSError as e:
            print("ERROR connect", e)
            time.sleep_ms(int(opts["floor_ms"]))
    print("CONNECTED")
    done, deaths = run_with_runner(jc, opts) if opts["runner"] == "1" else run_jobs(jc, opts)
    s = jc.session
    print("DONE jobs=%d connects=%d link_losses=%d wifi_waits=%d resent=%d loop_deaths=%d%s"
          % (done, s.connects, s.link_losses, s.wifi_waits, jc.resent, deaths,
             " firmware=" + firmware[0] if firmware else ""))
    jc.disconnect()


main()
