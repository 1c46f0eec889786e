"""Device script: heap each API call allocates with the GC off, once cold and then averaged over many calls."""
# mypy: ignore-errors
# (MicroPython code: checked by running it on the unix port, not against CPython's stubs.)

import gc
import sys

from umqtt.simple import MQTTClient

from iotjobs import JobsClient


def counted(call):
    """(bytes allocated during call() with the GC off, bytes still held after a collection)."""
    gc.collect()
    start = gc.mem_alloc()
    gc.disable()
    result = call()
    allocated = gc.mem_alloc() - start
    gc.enable()
    gc.collect()
    kept = gc.mem_alloc() - start
    del result
    return allocated, kept


def main():
    host, port, thing, job_id, repeats = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    jc = JobsClient(MQTTClient(thing + "-dev", host, port, keepalive=60), thing, timeout_ms=10000)
    jc.connect()
    calls = (
        ("get_pending", jc.get_pending),
        ("start_next", jc.start_next),
        ("describe", lambda: jc.describe(job_id)),
        ("update", lambda: jc.update(job_id, "IN_PROGRESS", {"step": "1"})),
    )
    first = {}
    for name, call in calls:
        first[name] = counted(call)
    steady = {}
    for name, call in calls:
        total = 0
        for _ in range(repeats):
            total += counted(call)[0]
        steady[name] = total // repeats
    jc.disconnect()
    for name, _ in calls:
        print('RESULT %s {"first_alloc": %d, "first_kept": %d, "steady_alloc": %d}' % (
            name, first[name][0], first[name][1], steady[name]))


main()
