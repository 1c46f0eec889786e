"""Device script: dev_cycle_ours.py's job cycle over HTTPS (iotjobs.https): HOST PORT THING CERT KEY CA (DER files)."""
# mypy: ignore-errors
# (MicroPython code: checked by running it on the unix port, not against CPython's stubs.)

import sys

from dev_cycle_ours import cycle

from iotjobs.https import JobsHttpsClient


def main():
    host, port, thing, cert, key, ca = sys.argv[1:7]
    cycle(JobsHttpsClient(host, thing, cert, key, ca, port=int(port), timeout_ms=10000))


main()
