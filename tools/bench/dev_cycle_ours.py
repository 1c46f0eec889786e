"""Device script: one job cycle with the iotjobs library (start_next, read the operation, update SUCCEEDED)."""
# mypy: ignore-errors
# (MicroPython code: checked by running it on the unix port, not against CPython's stubs.)

import sys

from umqtt.simple import MQTTClient

from iotjobs import JobsClient


def operation(document):
    # The library may hand a large document over as a stream or slice instead of a dict: read it as a handler would.
    if isinstance(document, dict):
        return document["operation"]
    try:
        return document["operation"]
    except (TypeError, KeyError):
        pass
    import json

    if hasattr(document, "read"):
        return json.load(document)["operation"]
    return json.loads(document)["operation"]


def main():
    host, port, thing = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    jc = JobsClient(MQTTClient(thing + "-dev", host, port, keepalive=60), thing, timeout_ms=10000)
    jc.connect()
    execution = jc.start_next()
    job_id = execution["jobId"]
    op = operation(execution["jobDocument"])
    del execution
    jc.update(job_id, "SUCCEEDED", {"operation": op})
    jc.disconnect()
    print("RESULT operation", '"%s"' % op)


main()
