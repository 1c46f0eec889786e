"""iotjobs-run: run your own device program on the MicroPython unix port, the library and umqtt.simple on its path."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mpylib import device_command

# A plain ESP32 leaves ~110 KB of heap to MicroPython; the unix port's 64-bit objects need about 160k for the same.
DEFAULT_HEAP = "160k"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="iotjobs-run",
        description="Run SCRIPT as a board would: the library as .mpy and umqtt.simple on its path, with the "
        "port's frozen modules (ssl) and SCRIPT's own folder.",
    )
    parser.add_argument("--heapsize", default=DEFAULT_HEAP, help="the unix port's heap (default %s)" % DEFAULT_HEAP)
    parser.add_argument("--runtime", default="unix64",
                        help="unix64: the MicroPython unix port (default); cpython: CPython with the test shim")
    parser.add_argument("script", type=Path, help="your program, e.g. firmware/examples/jobs_client.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (sys.argv[1:])")
    args = parser.parse_args(argv)
    if not args.script.is_file():
        parser.error("no such file: %s" % args.script)
    try:
        command, env = device_command(args.runtime, args.script.resolve(), args.args, args.heapsize)
    except ValueError as e:
        parser.error(str(e))
    # Replaced, not a child: Ctrl-C, the exit status and the terminal are the program's own.
    os.execve(command[0], command, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
