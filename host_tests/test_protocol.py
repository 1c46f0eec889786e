"""Unit cases of the protocol core, large messages, the receive path, the flash store, the errors users meet and
the HTTPS client's pure parts."""

import re
from functools import cache

import pytest

from device import PORTABLE, RUNTIMES, run

CASE_FILES = ("protocol_cases.py", "document_cases.py", "session_cases.py", "store_cases.py",
              "board_number_cases.py", "error_cases.py", "https_cases.py")
CASES = [(name, case) for name in CASE_FILES
         for case in re.findall(r"^def (case_\w+)", (PORTABLE / name).read_text(), re.M)]


@cache
def outcomes(runtime: str, case_file: str) -> dict[str, str]:
    # The heap is for compiling a long test module on the device, not for the library under test.
    done = run(runtime, PORTABLE / case_file, heapsize="512k")
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
    assert len(CASES) >= 40


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("case_file, case", CASES)
def test_case(runtime: str, case_file: str, case: str) -> None:
    assert outcomes(runtime, case_file).get(case, "MISSING").strip() == "PASS"
