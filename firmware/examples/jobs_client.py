"""A device program on the plain JobsClient, no runner: take each job as it comes, report progress, succeed.

    iotjobs-run firmware/examples/jobs_client.py [HOST:PORT] [THING] [JOBS]

against `iotjobs-local serve` (defaults 127.0.0.1:1883, my-thing, 1 job). On a board, build the MQTTClient
with iotjobs.tls.make_client for AWS IoT, as the README shows.
"""

import sys

from umqtt.simple import MQTTClient

from iotjobs import JobsClient, JobsError


def main():
    argv = sys.argv[1:]
    host, _, port = (argv[0] if argv else "127.0.0.1:1883").rpartition(":")
    thing = argv[1] if len(argv) > 1 else "my-thing"
    jobs = int(argv[2]) if len(argv) > 2 else 1

    jc = JobsClient(MQTTClient(thing, host, int(port), keepalive=60), thing, timeout_ms=10000)
    jc.connect()
    print("connected to %s:%s as %s" % (host, port, thing))
    # Look at start-up, then whenever notify-next says something is pending (it runs inside wait() and the calls).
    pending = [True]

    def notified(payload):
        pending[0] = bool(payload.get("execution"))

    jc.on_notify_next(notified)
    done = 0
    while done < jobs:
        if not pending[0]:
            jc.wait(1000)
            continue
        pending[0] = False
        execution = jc.start_next()  # IN_PROGRESS now; None when nothing is pending
        if execution is None:
            continue
        job_id = execution["jobId"]
        print("job %s: %s" % (job_id, execution["jobDocument"]))
        jc.update(job_id, "IN_PROGRESS", {"progress": "50%"})
        jc.update(job_id, "SUCCEEDED", {"result": "ok"})
        print("job %s: SUCCEEDED" % job_id)
        try:
            jc.describe(job_id)
        except JobsError as e:
            # A finished execution is no longer the device's: the service answers TerminalStateReached.
            print("job %s: describe now raises JobsError %s" % (job_id, e.code))
        done += 1
    jc.disconnect()


main()
