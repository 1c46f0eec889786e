"""What a user writes first: the example program on the plain JobsClient, and iotjobs-run, which runs such a program."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from device import ROOT, RUNTIMES, parse, start
from localjobs.broker import Mosquitto
from localjobs.service import JobsService

EXAMPLE = ROOT / "firmware" / "examples" / "jobs_client.py"
IOTJOBS_RUN = ROOT / ".venv" / "bin" / "iotjobs-run"


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def wait_for_line(process: subprocess.Popen[str], text: str, seen: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        if text in line:
            return
    raise AssertionError("the program ended before printing %r:\n%s" % (text, "".join(seen)))


def test_the_example_runs_a_waiting_job_then_one_that_comes_later(runtime: str, mosquitto: Mosquitto,
                                                                  jobs_service: JobsService, thing_name: str,
                                                                  create_job: Callable[..., dict[str, Any]]) -> None:
    create_job(jobs_service, "job-1", thing_name, {"operation": "greet"})
    program = start(runtime, EXAMPLE, mosquitto.address, thing_name, "2")
    seen: list[str] = []
    try:
        wait_for_line(program, "job job-1: describe now raises", seen)
        # Waiting now: the notify-next for a new job wakes it.
        create_job(jobs_service, "job-2", thing_name, {"operation": "greet"})
        out, err = program.communicate(timeout=60)
    finally:
        program.kill()
    done = parse(program.returncode, "".join(seen) + out, err)
    assert done.returncode == 0, done.stdout + done.stderr
    for job_id in ("job-1", "job-2"):
        assert "job %s: {'operation': 'greet'}" % job_id in done.stdout
        assert "job %s: describe now raises JobsError TerminalStateReached" % job_id in done.stdout
        history = [(h["status"], h["statusDetails"]) for h in jobs_service.history(thing_name, job_id)]
        assert history[-2:] == [("IN_PROGRESS", {"progress": "50%"}), ("SUCCEEDED", {"result": "ok"})]


def test_iotjobs_run_puts_the_library_umqtt_the_frozen_modules_and_the_script_folder_on_the_path(
        runtime: str, tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("NAME = 'helper beside the script'\n")
    script = tmp_path / "my_program.py"
    # iotjobs.tls needs the port's frozen ssl: the path must keep .frozen.
    script.write_text("import sys\nimport iotjobs.tls\nimport umqtt.simple\nimport helper\n"
                      "print(helper.NAME, sys.argv[1:], callable(iotjobs.tls.make_client))\n")
    done = subprocess.run([str(IOTJOBS_RUN), "--runtime", runtime, str(script), "a", "--b"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "helper beside the script ['a', '--b'] True"


def test_iotjobs_run_says_what_is_wrong() -> None:
    done = subprocess.run([str(IOTJOBS_RUN), "no_such_program.py"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "no such file: no_such_program.py" in done.stderr
    done = subprocess.run([str(IOTJOBS_RUN), "--runtime", "esp8266", str(EXAMPLE)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2 and "unknown" in done.stderr and "runtime 'esp8266'" in done.stderr
