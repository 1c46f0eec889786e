"""Device script: request -> accepted round trips of the four calls with the iotjobs library, in microseconds."""
# mypy: ignore-errors
# (MicroPython code: checked by running it on the unix port and on CPython through the shim.)

import sys
import time

from umqtt.simple import MQTTClient

from iotjobs import JobsClient


def main():
    host, port, thing, job_id, repeats = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    jc = JobsClient(MQTTClient(thing + "-dev", host, port, keepalive=60), thing, timeout_ms=10000)
    jc.connect()
    calls = (
        ("get", jc.get_pending),
        ("start_next", jc.start_next),
        ("describe", lambda: jc.describe(job_id, include_document=False)),
        ("update", lambda: jc.update(job_id, "IN_PROGRESS", {"step": "1"})),
    )
    times = {}
    for name, _ in calls:
        times[name] = []
    for round_ in range(repeats + 1):
        for name, call in calls:
            start = time.ticks_us()
            call()
            took = time.ticks_diff(time.ticks_us(), start)
            if round_:  # the first round warms up connections, caches and the service
                times[name].append(took)
    jc.disconnect()
    for name, _ in calls:
        print("RESULT %s [%s]" % (name, ",".join(str(t) for t in times[name])))


main()
