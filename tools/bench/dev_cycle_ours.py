"""Device script: one job cycle with the iotjobs library over MQTT (start_next, read the operation, update SUCCEEDED).

HOST PORT THING: plain MQTT; HOST PORT THING CERT KEY CA: MQTT over mutual TLS (DER files).
"""
# mypy: ignore-errors
# (MicroPython code: checked by running it on the unix port, not against CPython's stubs.)

import sys


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


def cycle(jc):
    """start_next, read the operation as a handler would, report SUCCEEDED: over whichever client jc is."""
    jc.connect()
    execution = jc.start_next()
    job_id = execution["jobId"]
    op = operation(execution["jobDocument"])
    del execution
    jc.update(job_id, "SUCCEEDED", {"operation": op})
    jc.disconnect()
    print("RESULT operation", '"%s"' % op)


def main():
    # Imported here: dev_cycle_https.py shares cycle() and must not load the MQTT client.
    from umqtt.simple import MQTTClient

    from iotjobs import JobsClient

    host, port, thing = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if len(sys.argv) > 4:
        from iotjobs.tls import make_client

        mqtt = make_client(thing + "-dev", host, *sys.argv[4:7], port=port)
    else:
        mqtt = MQTTClient(thing + "-dev", host, port, keepalive=60)
    cycle(JobsClient(mqtt, thing, timeout_ms=10000))


if __name__ == "__main__":
    main()
