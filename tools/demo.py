"""make demo: a virtual board on the MicroPython unix port runs a real job from the local Jobs service."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import deploy
from localjobs.broker import Mosquitto
from localjobs.model import thing_arn
from localjobs.service import JobsService

ROOT = Path(__file__).resolve().parents[1]
THING = "demo-board"
# The demo board gets the heap of an ESP32 without PSRAM: ~110 KB there is ~160k of x64 objects (see README).
HEAPSIZE = "160k"
DOCUMENT = {"operation": "greet", "steps": 3, "message": "hello from the local Jobs service"}


def say(text: str) -> None:
    print("demo:", text, flush=True)


def watch(service: JobsService, job_id: str) -> None:
    """Print each state the service records for the execution, as it is recorded, until a terminal one."""
    seen = 0

    def grown() -> bool:
        return len(service.history(THING, job_id)) > seen

    while True:
        service.wait_until(grown, timeout=5.0)
        entries = service.history(THING, job_id)
        for entry in entries[seen:]:
            details = " %s" % entry["statusDetails"] if entry["statusDetails"] else ""
            print("service: %s v%d %s%s" % (job_id, entry["versionNumber"], entry["status"], details), flush=True)
        seen = len(entries)
        if entries and entries[-1]["status"] not in ("QUEUED", "IN_PROGRESS"):
            return


def main() -> int:
    job_id = "demo-%d" % int(time.time())
    # The library as a board gets it from iotjobs-deploy: .mpy files, which import in far less RAM than source.
    deploy.stage("unix", deploy.load_board("unix"), None, None)
    env = dict(os.environ, MICROPYPATH="%s:.frozen" % (deploy.STAGING / "unix" / "lib"))
    board: subprocess.Popen[str] | None = None
    with Mosquitto() as broker, JobsService(broker.host, broker.port) as service:
        try:
            say("mosquitto on %s:%d, local Jobs service connected" % (broker.host, broker.port))
            service.create_thing(THING)
            board = subprocess.Popen(
                [str(ROOT / ".venv" / "bin" / "micropython"), "-X", "heapsize=" + HEAPSIZE,
                 str(ROOT / "boards" / "unix" / "main.py"), "--broker", "%s:%d" % (broker.host, broker.port),
                 "--thing", THING, "--jobs", "1"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
            )
            waiting = threading.Event()

            def relay() -> None:
                assert board is not None and board.stdout is not None
                for line in board.stdout:
                    print(line, end="", flush=True)
                    if "connected to" in line:
                        waiting.set()

            relay_thread = threading.Thread(target=relay, daemon=True)
            relay_thread.start()
            if not waiting.wait(30):
                say("the board did not come up")
                return 1
            service.create_job(job_id, [thing_arn(THING)], DOCUMENT)
            say("created job %s for %s: %s" % (job_id, THING, DOCUMENT))
            watcher = threading.Thread(target=watch, args=(service, job_id), daemon=True)
            watcher.start()
            board.wait(timeout=60)
            relay_thread.join(5)
            watcher.join(5)
            execution = service.describe_job_execution(THING, job_id)
            say("execution %s of %s ended %s" % (execution["executionNumber"], job_id, execution["status"]))
            return 0 if board.returncode == 0 and execution["status"] == "SUCCEEDED" else 1
        except KeyboardInterrupt:
            say("interrupted")
            return 130
        finally:
            if board is not None and board.poll() is None:
                board.terminate()
                board.wait(5)


if __name__ == "__main__":
    sys.exit(main())
