"""The pure protocol core's unit cases, each run on the MicroPython unix port and on CPython."""

import re
from functools import cache

import pytest

from device import PORTABLE, RUNTIMES, run

CASES_FILE = PORTABLE / "protocol_cases.py"
CASES = re.findall(r"^def (case_\w+)", CASES_FILE.read_text(), re.M)


@cache
def outcomes(runtime: str) -> dict[str, str]:
    # The heap is for compiling this long test module on the device, not for the library under test.
    done = run(runtime, CASES_FILE, heapsize="256k")
    lines = done.stdout.splitlines()
    assert lines and lines[-1].startswith("DONE "), done.stdout + done.stderr
    found = {}
    for line in lines:
        verdict, _, rest = line.partition(" ")
        if verdict in ("PASS", "FAIL"):
            name, _, why = rest.partition(" ")
            found[name] = verdict + " " + why
    return found


def test_cases_were_found():
    assert len(CASES) >= 30


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("case", CASES)
def test_protocol_case(runtime: str, case: str) -> None:
    assert outcomes(runtime).get(case, "MISSING").strip() == "PASS"
