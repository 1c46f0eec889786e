"""Device script (CPython through the shim): many virtual devices in one process, one thread each, running jobs."""
# mypy: ignore-errors
# (Device code: it runs through host_tests/shim/mprun.py and is checked by running it, not against the stubs.)

import _thread
import sys
import time

from umqtt.simple import MQTTClient

from iotjobs import JobsClient, RequestTimeout

done = [0, 0, 0, 0]  # devices finished, jobs completed, errors, requests that timed out and were asked again
lock = _thread.allocate_lock()


def device(jc):
    completed = 0
    failed = 0
    retries = 0
    try:
        while True:
            try:
                execution = jc.start_next()
                if execution is None:
                    break
                jc.update(execution["jobId"], "SUCCEEDED")
                completed += 1
            except RequestTimeout:
                # As a device would: ask again (start-next returns the execution still IN_PROGRESS).
                retries += 1
                if retries > 5:
                    raise
    except Exception as e:  # counted and reported: one device failing must not hide the others' figures
        failed = 1
        print("ERROR %s %s %s" % (jc.thing_name, type(e).__name__, e))
    with lock:
        done[0] += 1
        done[1] += completed
        done[2] += failed
        done[3] += retries


def main():
    host, port, prefix, first, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    tls = len(sys.argv) > 6 and sys.argv[6] == "tls"
    clients = []
    # One at a time: the session swaps umqtt.simple's socket module while it connects.
    for i in range(first, first + count):
        thing = "%s%d" % (prefix, i)
        mqtt = MQTTClient(thing, host, port, keepalive=1200, ssl=tls, ssl_params={})
        jc = JobsClient(mqtt, thing, timeout_ms=600000, response_ms=600000)
        jc.connect()
        clients.append(jc)
    print("READY", flush=True)
    sys.stdin.readline()
    for jc in clients:
        _thread.start_new_thread(device, (jc,))
    while done[0] < count:
        time.sleep(0.005)
    print("DONE %d %d %.6f %d" % (done[1], done[2], time.time(), done[3]), flush=True)
    sys.stdin.readline()


main()
