"""A job through JobsClient over mutual TLS: make_client, then the session's own bounded reads on a TLS socket.

Usage: tls_job.py HOST PORT PKI_DIR THING. Prints `RESULT <key> <json>` lines.
"""

import json
import sys

from iotjobs import JobsClient
from iotjobs.tls import make_client


def main():
    host, port, d, thing = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    mqtt = make_client(thing, host, d + "/client.crt.der", d + "/client.key.der", d + "/ca.crt.der", port)
    jc = JobsClient(mqtt, thing, timeout_ms=5000, response_ms=2000)
    jc.connect()
    execution = jc.start_next()
    jc.update(execution["jobId"], "IN_PROGRESS", {"over": "mutual TLS"})
    done = jc.update(execution["jobId"], "SUCCEEDED", {"result": "ok"})
    print("RESULT", "done", json.dumps(done["executionState"]))
    jc.disconnect()


main()
