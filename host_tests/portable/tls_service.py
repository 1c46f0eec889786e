"""A device against the local service with TLS (`serve --tls`): its own jobs work, other things' are out of reach.

Usage: tls_service.py SCENARIO HOST PORT CA CERT KEY THING OTHER; CERT and KEY "-" for no client certificate.
Prints `RESULT <key> <json>` lines (and READY when the test is to act):
- job: a job through JobsClient over iotjobs.tls.make_client: `done` is its final executionState.
- client_for_other: JobsClient for OTHER with THING's certificate: `error` from connect().
- connect: MQTT CONNECT then a subscription to THING's notify-next: `connected`, or `error`.
- other_topics: `subscribe` {filter: "granted" or the error} for OTHER's topics and wildcards, then READY (the
  test creates a job for OTHER, then one for THING) and `received` (every topic up to THING's notify-next);
  then a start-next published to OTHER's topic followed by THING's own get: `answered` is the reply to the get.
"""

import json
import sys

import umqtt.simple

from iotjobs import JobsClient
from iotjobs.tls import make_client


def emit(key, value):
    print("RESULT", key, json.dumps(value))


def error(e):
    return {"type": type(e).__name__, "message": str(e)}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def client(client_id, host, port, ca, cert, key):
    if cert != "-":
        return make_client(client_id, host, cert, key, ca, port)
    # What make_client does, less the client certificate.
    if "ussl" not in sys.modules:
        import ssl

        sys.modules["ussl"] = ssl
    params = {"cadata": read(ca), "cert_reqs": 2, "server_hostname": host}
    return umqtt.simple.MQTTClient(client_id, host, port, keepalive=60, ssl=True, ssl_params=params)


def job(mqtt, thing, other):
    jc = JobsClient(mqtt, thing, timeout_ms=5000, response_ms=2000)
    jc.connect()
    execution = jc.start_next()
    jc.update(execution["jobId"], "IN_PROGRESS", {"over": "mutual TLS"})
    done = jc.update(execution["jobId"], "SUCCEEDED", {"result": "ok"})
    emit("done", done["executionState"])
    jc.disconnect()


def client_for_other(mqtt, thing, other):
    try:
        JobsClient(mqtt, other, timeout_ms=5000, response_ms=2000).connect()
        emit("connected", True)
    except Exception as e:
        emit("error", error(e))


def connect(mqtt, thing, other):
    try:
        mqtt.set_callback(lambda topic, msg: None)
        mqtt.connect()
        mqtt.subscribe(("$aws/things/%s/jobs/notify-next" % thing).encode(), 1)
        emit("connected", True)
        mqtt.disconnect()
    except Exception as e:
        emit("error", error(e))


def other_topics(mqtt, thing, other):
    received = []
    mqtt.set_callback(lambda topic, msg: received.append((topic.decode(), msg)))
    mqtt.connect()
    outcomes = {}
    for name in ("$aws/things/%s/jobs/notify-next" % other, "$aws/things/%s/jobs/#" % other,
                 "$aws/things/+/jobs/notify-next", "#"):
        try:
            mqtt.subscribe(name.encode(), 1)
            outcomes[name] = "granted"
        except Exception as e:
            outcomes[name] = error(e)
    emit("subscribe", outcomes)
    own = "$aws/things/%s/jobs/notify-next" % thing
    mqtt.subscribe(own.encode(), 1)
    print("READY")
    while own not in [topic for topic, _ in received]:
        mqtt.wait_msg()
    emit("received", [topic for topic, _ in received])
    accepted = "$aws/things/%s/jobs/get/accepted" % thing
    mqtt.subscribe(accepted.encode(), 1)
    mqtt.publish(("$aws/things/%s/jobs/start-next" % other).encode(), b'{"clientToken": "not-mine"}', False, 1)
    mqtt.publish(("$aws/things/%s/jobs/get" % thing).encode(), b'{"clientToken": "mine"}', False, 1)
    while accepted not in [topic for topic, _ in received]:
        mqtt.wait_msg()
    emit("answered", json.loads([msg for topic, msg in received if topic == accepted][0]))
    mqtt.disconnect()


def main():
    name, host, port, ca, cert, key, thing, other = sys.argv[1:9]
    mqtt = client(thing, host, int(port), ca, cert, key)
    try:
        {"job": job, "client_for_other": client_for_other, "connect": connect, "other_topics": other_topics}[name](
            mqtt, thing, other)
    except Exception as e:
        emit("failed", error(e))


main()
