"""One first connect to HOST PORT, whatever answers there; run on MicroPython or CPython.

Usage: connect_scenario.py HOST PORT. Prints `RESULT outcome {"type": ..., "message": ...}` for what
JobsClient.connect() raised (type "none" if it connected).
"""

import sys

from umqtt.simple import MQTTClient

from harness import emit
from iotjobs import JobsClient


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    jc = JobsClient(MQTTClient("connect-case", host, port, keepalive=60), "connect-case", response_ms=2000)
    try:
        jc.connect()
        emit("outcome", {"type": "none", "message": ""})
    except Exception as e:  # the point: which kind comes out
        emit("outcome", {"type": type(e).__name__, "message": str(e)})


main()
