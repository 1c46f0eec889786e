"""A device loop for fault tests and the soak: runs jobs as their documents say, whatever the link does.

Usage (MicroPython or CPython with the shim): device.py HOST PORT THING [key=value ...]
Keys: jobs (stop after this many), timeout_ms, response_ms, ping_ms, floor_ms, ceiling_ms, stable_ms, wlan_ms,
wlan ("network" for network.WLAN, or a file whose content "down" means the WiFi link is down). A job document says
{"steps": N, "final": "SUCCEEDED"|"FAILED"|"REJECTED", "pause_ms": P}: N progress updates {"step": "i"},
P ms apart, then the final status. Prints one line per event: CONNECTED, JOB <id> <status>, ERROR <what>,
LOOP_DEATH <what>, and DONE with the counts.
"""

import sys
import time

from umqtt.simple import MQTTClient

from iotjobs import JobsClient, JobsError, RequestTimeout


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
             "ceiling_ms": "1000", "stable_ms": "5000", "wlan": "", "wlan_ms": "1000"}
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


def main():
    host, port, thing = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    opts = options(sys.argv[4:])
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
    woken = []
    jc.on_notify_next(lambda payload: woken.append(1))
    jc.on_error(lambda reason, detail: print("ERROR", reason, detail))
    while True:
        try:
            jc.connect()
            break
        except OSError as e:
            print("ERROR connect", e)
            time.sleep_ms(int(opts["floor_ms"]))
    print("CONNECTED")
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
    s = jc.session
    print("DONE jobs=%d connects=%d link_losses=%d wifi_waits=%d resent=%d loop_deaths=%d"
          % (done, s.connects, s.link_losses, s.wifi_waits, jc.resent, deaths))
    jc.disconnect()


main()
