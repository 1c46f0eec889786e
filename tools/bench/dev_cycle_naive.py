"""Device script: the same job cycle written plainly with umqtt.simple and json.loads (the baseline)."""
# mypy: ignore-errors
# (MicroPython code: checked by running it on the unix port, not against CPython's stubs.)

import json
import sys

from umqtt.simple import MQTTClient

replies = []


def received(topic, msg):
    replies.append(json.loads(msg))


def reply(mqtt):
    while not replies:
        mqtt.wait_msg()
    return replies.pop()


def main():
    host, port, thing = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    prefix = "$aws/things/%s/jobs/" % thing
    mqtt = MQTTClient(thing + "-dev", host, port, keepalive=60)
    mqtt.set_callback(received)
    mqtt.connect()
    mqtt.subscribe(prefix + "start-next/accepted", 1)
    mqtt.subscribe(prefix + "+/update/accepted", 1)
    mqtt.publish(prefix + "start-next", b'{"clientToken":"n1"}', qos=1)
    execution = reply(mqtt)["execution"]
    job_id = execution["jobId"]
    op = execution["jobDocument"]["operation"]
    del execution
    body = json.dumps({"status": "SUCCEEDED", "statusDetails": {"operation": op}, "clientToken": "n2"})
    mqtt.publish(prefix + job_id + "/update", body.encode(), qos=1)
    reply(mqtt)
    mqtt.disconnect()
    print("RESULT operation", '"%s"' % op)


main()
