"""iotjobs-soak: many jobs (updates among them) through link, broker, service faults and power cuts; a summary."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from faultproxy import FaultProxy
from localjobs.broker import Mosquitto
from localjobs.model import thing_arn
from localjobs.service import JobsService
from mpylib import MICROPYTHON_RUNTIMES, ROOT, device_command

from .ota import (
    PARTITIONS,
    SELF_TEST_MS,
    ImageServer,
    Update,
    firmware_checks,
    first_firmware,
    plan_update,
    unconfirmed,
)

DEVICE = Path(__file__).with_name("device.py")
ESP32_SIM = ROOT / "host_tests" / "esp32_sim"  # the test esp32 module, for a device that takes updates
HEAP = "128k"
# The test esp32 compiled from source at each power-on takes heap a board's (in ROM) does not.
OTA_HEAP = "160k"
RESET_EXIT_CODE = 211  # device.py's reset: the board starts again
THING = "soak-device"
PENDING = ("QUEUED", "IN_PROGRESS")
PROGRESS_EVERY = 10  # jobs ended between two progress lines
# The device's flash under power cuts, about a board's: 2000 bytes a second, 10 ms for each rename or remove (a
# sector written). A checkpoint (60-120 bytes) then takes 40-80 ms to replace; an aimed cut strikes within
# CUT_WINDOW_S of the write's start, so most land in the middle of one.
FLASH_BPS = 2000
FLASH_OP_MS = 10
CUT_WINDOW_S = 0.06


def history_problems(history: list[dict[str, Any]], steps: int, final: str) -> tuple[str | None, list[str]]:
    """Whether an execution's recorded history lost ("lost") or doubled ("doubled") anything, and what."""
    doubled, lost = [], []
    recorded = [int(h["statusDetails"]["step"]) for h in history
                if h["status"] == "IN_PROGRESS" and "step" in h["statusDetails"]]
    if recorded != sorted(set(recorded)):
        doubled.append("progress doubled or out of order: %s" % recorded)
    if any(not 1 <= step <= steps for step in recorded):
        lost.append("progress step never sent: %s" % recorded)
    terminal = [h["status"] for h in history if h["status"] not in PENDING]
    if len(terminal) > 1:
        doubled.append("terminal states %s" % terminal)
    elif terminal != [final]:
        lost.append("terminal states %s, expected [%s]" % (terminal, final))
    return ("doubled" if doubled else "lost" if lost else None), doubled + lost


class Faults:
    """Random faults at random moments: on the link (through the proxy), the broker and the Jobs service."""

    KINDS = ("close", "reset", "stall", "delay", "cut", "refuse", "broker", "service")

    def __init__(self, rng: random.Random, proxy: FaultProxy, broker: Mosquitto, service: JobsService,
                 every: tuple[float, float]) -> None:
        self.rng = rng
        self.proxy = proxy
        self.broker = broker
        self.service = service
        self.every = every
        self.count = 0
        self.log: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="soak-faults", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.rng.uniform(*self.every)):
            kind = self.rng.choice(self.KINDS)
            self.count += 1
            self.log.append(kind)
            self._inject(kind)

    def _inject(self, kind: str) -> None:
        proxy = self.proxy
        outage = self.rng.uniform(0.1, 1.0)
        if kind in ("close", "reset"):
            getattr(proxy, kind)()
        elif kind == "stall":
            # Half-open until the device notices and connects again; the stale link then drains into nothing.
            seen = proxy.accepted
            proxy.stall()
            proxy.wait_connections(seen + 1, 10)
            proxy.resume()
        elif kind == "delay":
            proxy.delay(self.rng.uniform(0.02, 0.15))
            self.stop.wait(outage)
            proxy.delay(0)
        elif kind == "cut":
            proxy.cut_after(self.rng.randrange(1, 40), self.rng.choice(("up", "down")))
        elif kind == "refuse":
            proxy.refuse(True)
            proxy.reset()
            self.stop.wait(outage)
            proxy.refuse(False)
        elif kind == "broker":
            self.broker.kill()
            self.stop.wait(outage)
            self.broker.start()
            self.service.wait_subscribed(10)
        elif kind == "service":
            self.service.stop()
            self.stop.wait(outage)
            self.service.start()


class Device:
    """The device process, on its flash folder; a power cut kills it (SIGKILL) and starts it again on the same one.

    A reset (the process ends with RESET_EXIT_CODE: an update's reboot) starts it again too, as a board restarts.
    Events for aimed cuts are counted from its lines: FLASH write|remove|rename, "reboot" (the test esp32's boot
    after a reset) and "self-test".
    """

    def __init__(self, command: list[str], env: dict[str, str], flash: Path) -> None:
        self.command = command
        self.env = env
        self.flash = flash
        self.lines: list[str] = []
        self.events = {"write": 0, "remove": 0, "rename": 0, "reboot": 0, "self-test": 0}
        self.cutting = False
        self.reboots = 0
        self.changed = threading.Condition()
        self.reader: threading.Thread | None = None
        self.process = self.start()

    def start(self, after_reset: bool = False) -> subprocess.Popen[str]:
        process = subprocess.Popen(self.command, env=self.env, cwd=self.flash, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, args=(process, after_reset), daemon=True)
        self.reader.start()
        self.process = process
        return process

    def _read(self, process: subprocess.Popen[str], after_reset: bool) -> None:
        for line in process.stdout or ():
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                words = line.split()
                if line.startswith("FLASH "):
                    self.events[words[1]] = self.events.get(words[1], 0) + 1
                elif line.startswith("ESP32 BOOT") and after_reset:
                    self.events["reboot"] += 1
                elif line.startswith("SELF_TEST "):
                    self.events["self-test"] += 1
                self.changed.notify_all()
        process.wait()
        with self.changed:
            if process is self.process and not self.cutting and process.returncode == RESET_EXIT_CODE:
                self.reboots += 1
                self.start(after_reset=True)
            self.changed.notify_all()

    def wait_event(self, kinds: tuple[str, ...], timeout: float) -> bool:
        """Wait for the device to begin one of these operations on its flash, or reach one of these events."""
        with self.changed:
            seen = sum(self.events[kind] for kind in kinds)
            return self.changed.wait_for(lambda: sum(self.events[kind] for kind in kinds) > seen, timeout)

    def cut(self) -> bool:
        """Power gone: SIGKILL, nothing cleaned up, nothing flushed but what the process already wrote.

        A board that is resetting loses its power as it restarts. False, and nothing done, if the process had
        ended by itself: that is for the soak to see.
        """
        with self.changed:
            process = self.process
            if process.poll() is not None and process.returncode != RESET_EXIT_CODE:
                return False
            self.cutting = True
            reader = self.reader
        process.kill()
        process.wait()
        if reader is not None:
            reader.join(10)  # its last lines in, before the next boot's
        return True

    def restart(self) -> None:
        with self.changed:
            self.start()
            self.cutting = False

    def ended_by_itself(self) -> bool:
        with self.changed:
            process = self.process
            return not self.cutting and process.poll() is not None and process.returncode != RESET_EXIT_CODE

    def wait_end(self, timeout: float) -> bool:
        """Wait for the device to end otherwise than by a reset (after which it restarts), and for its last lines."""
        with self.changed:
            ended = self.changed.wait_for(
                lambda: self.process.poll() is not None and self.process.returncode != RESET_EXIT_CODE, timeout)
            reader = self.reader
        # The process can be seen ended before its reader has taken what it printed last (DONE).
        if ended and reader is not None:
            reader.join(timeout)
        return ended


def unfinished_writes(flash: Path) -> dict[str, bytes]:
    """The store's temporary files on flash: each is a replace that a cut interrupted (or one under way)."""
    return {path.name: path.read_bytes() for path in flash.glob("*.tmp")}


def half_written(content: bytes) -> bool:
    try:
        json.loads(content)
        return False
    except ValueError:
        return True


class PowerCuts:
    """count power cuts spread over the run, each after a random number of jobs have ended.

    A cut strikes at a random moment, or aimed: during the next write, remove or rename on the device's flash
    (slowed to a board's speed, so that it is still under way). Now and then the power flickers: the next cut
    strikes the new boot at its first flash operation. With updates in the plan, cuts are also aimed at them:
    at a random moment of the next update under way, just after the next reboot into new firmware, or during
    its self-test.
    """

    KINDS = ("random", "write", "remove", "rename")
    OTA_KINDS = ("ota", "reboot", "self-test")
    WINDOW_S = {"write": CUT_WINDOW_S, "remove": FLASH_OP_MS / 1000, "rename": FLASH_OP_MS / 1000,
                "ota": 1.5, "reboot": 0.6, "self-test": SELF_TEST_MS / 1000}
    FLICKER = 0.25

    def __init__(self, rng: random.Random, device: Device, service: JobsService, count: int, jobs: int,
                 ended: Callable[[], int], updating: Callable[[], bool] | None = None,
                 esp32_flash: Path | None = None) -> None:
        self.rng = rng
        self.device = device
        self.service = service
        self.ended = ended
        self.updating = updating
        self.esp32_flash = esp32_flash
        self.kinds = self.KINDS + (self.OTA_KINDS if updating is not None else ())
        self.marks = sorted(rng.uniform(0, max(jobs - 1, 0)) for _ in range(count))
        self.count = 0
        self.mid_write = 0  # cuts that left a replace unfinished on flash
        self.torn = 0  # of those, the ones whose new file was half written
        self.unconfirmed: set[str] = set()  # versions of firmware that a cut caught booted and not yet confirmed
        self.log: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="soak-power-cuts", daemon=True)

    def reached(self, mark: float) -> bool:
        return self.ended() >= mark

    def _aim(self, kind: str, ops: tuple[str, ...]) -> None:
        if kind == "random":
            self.stop.wait(self.rng.uniform(0, 1.0))
            return
        if kind == "ota":
            assert self.updating is not None
            self.service.wait_until(self.updating, 10)
        elif kind in self.OTA_KINDS:
            self.device.wait_event(ops, 10)
        else:
            self.device.wait_event(ops, 3)
        self.stop.wait(self.rng.uniform(0, self.WINDOW_S[ops[0]]))

    def _run(self) -> None:
        before: dict[str, bytes] = {}
        for mark in self.marks:
            ops: tuple[str, ...]
            if self.count and self.rng.random() < self.FLICKER:
                kind, ops = "flicker", ("write", "remove", "rename")
            else:
                while not self.stop.is_set() and not self.service.wait_until(partial(self.reached, mark), 1.0):
                    pass
                kind = self.rng.choice(self.kinds)
                ops = (kind,)
            self._aim(kind, ops)
            if self.stop.is_set() or not self.device.cut():
                return
            self.count += 1
            left = unfinished_writes(self.device.flash)
            torn = any(half_written(content) for content in left.values())
            landed = bool(left) and left != before
            self.mid_write += landed
            self.torn += landed and torn
            where = ":torn" if landed and torn else ":mid-write" if landed else ""
            caught = unconfirmed(self.esp32_flash) if self.esp32_flash is not None else None
            if caught is not None:
                self.unconfirmed.add(caught)
                where += ":unconfirmed-" + caught
            self.log.append("%d:%s%s" % (self.ended(), kind, where))
            before = left
            self.device.restart()


def handler_reruns(lines: list[str]) -> set[str]:
    """Jobs whose handler started again after their outcome had reached flash: run twice, which must never be."""
    saved: set[str] = set()
    again: set[str] = set()
    for line in lines:
        words = line.split()
        if len(words) == 2 and words[0] == "SAVED_FINAL":
            saved.add(words[1])
        elif len(words) >= 2 and words[0] == "HANDLER" and words[1] in saved:
            again.add(words[1])
    return again


def handler_firmware(lines: list[str]) -> dict[str, list[str]]:
    """The firmware versions each job's handler started on (HANDLER JOB VERSION lines), in order."""
    found: dict[str, list[str]] = {}
    for line in lines:
        words = line.split()
        if len(words) == 3 and words[0] == "HANDLER":
            found.setdefault(words[1], []).append(words[2])
    return found


def final_firmware(lines: list[str]) -> str | None:
    done = [line for line in lines if line.startswith("DONE ")]
    fields = dict(word.split("=", 1) for word in done[-1].split()[1:] if "=" in word) if done else {}
    return fields.get("firmware")


@dataclass
class Planned:
    """A job of the plan: its document, the terminal status it must end with, and what else the soak checks."""

    job_id: str
    document: dict[str, Any]
    final: str
    steps: int = 0
    update: Update | None = None


def make_plan(rng: random.Random, jobs: int, seed: int, updates: int, files: Path) -> list[Planned]:
    """jobs jobs drawn from rng, updates of them OTA jobs (drawn apart: the other jobs are as without updates)."""
    ota_rng = random.Random(seed + 2)
    chosen = set(ota_rng.sample(range(jobs), updates))
    plan = []
    for i in range(jobs):
        job_id = "soak-%d-%04d" % (seed, i)
        final = rng.choice(("SUCCEEDED", "SUCCEEDED", "FAILED", "REJECTED"))
        steps = rng.randrange(1, 5)
        pause_ms = rng.randrange(50, 250)
        if i in chosen:
            document, update = plan_update(ota_rng, i, files)
            plan.append(Planned(job_id, document, update.final, 0, update))
        else:
            plan.append(Planned(job_id, {"steps": steps, "final": final, "pause_ms": pause_ms,
                                         "operation": "not-allowed" if final == "REJECTED" else "soak"}, final, steps))
    return plan


def terminal_outcome(history: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    ends = [(h["status"], h.get("statusDetails") or {}) for h in history if h["status"] not in PENDING]
    return ends[-1] if ends else ("", {})


def soak(jobs: int, runtime: str, seed: int, deadline_s: float, every: tuple[float, float], out: Any,
         power_cuts: int = 0, flash: str = "littlefs", updates: int = 0) -> dict[str, int]:
    with tempfile.TemporaryDirectory(prefix="soak-") as work:
        return _soak(jobs, runtime, seed, deadline_s, every, out, power_cuts, flash, updates, Path(work))


def _soak(jobs: int, runtime: str, seed: int, deadline_s: float, every: tuple[float, float], out: Any,
          power_cuts: int, flash: str, updates: int, work: Path) -> dict[str, int]:
    folder, files, esp32_flash = work / "flash", work / "files", work / "flash" / "esp32"
    folder.mkdir()
    files.mkdir()
    rng = random.Random(seed)
    plan = make_plan(rng, jobs, seed, updates, files)
    with Mosquitto() as broker, JobsService(broker.host, broker.port, files=files) as service, \
            ImageServer(service), FaultProxy(broker.host, broker.port) as proxy:
        service.create_thing(THING)
        for job in plan:
            service.create_job(job.job_id, [thing_arn(THING)], job.document)
        options = [proxy.host, str(proxy.port), THING, "jobs=%d" % jobs, "timeout_ms=2000", "response_ms=500",
                   "ping_ms=500", "floor_ms=50", "ceiling_ms=500", "stable_ms=3000"]
        if power_cuts or updates:
            # The Runner keeps its checkpoint on this flash: that is what a power cut must not lose.
            options += ["runner=1", "flash=" + flash, "flash_bps=%d" % FLASH_BPS, "flash_ms=%d" % FLASH_OP_MS]
        command, env = device_command(runtime, DEVICE, options, HEAP if not updates else OTA_HEAP)
        env["PYTHONUNBUFFERED"] = "1"  # CPython: each FLASH line as it happens
        if updates:
            # The test esp32 holds the firmware in the flash folder, so that it survives the cuts too.
            first_firmware(esp32_flash)
            command.append("ota=1")
            command.append("self_test_ms=%d" % SELF_TEST_MS)
            env.update({"ESP32_FLASH": str(esp32_flash), "ESP32_PARTITIONS": PARTITIONS,
                        "MICROPYPATH": "%s:%s" % (ESP32_SIM, env["MICROPYPATH"])})
        device = Device(command, env, folder)
        faults = Faults(rng, proxy, broker, service, every)
        faults.thread.start()

        def ended() -> int:
            return sum(service.status(THING, job.job_id) not in PENDING for job in plan)

        update_ids = [job.job_id for job in plan if job.update is not None]

        def updating() -> bool:
            return any(service.status(THING, job_id) == "IN_PROGRESS" for job_id in update_ids)

        cuts = PowerCuts(random.Random(seed + 1), device, service, power_cuts, jobs, ended,
                         updating if updates else None, esp32_flash if updates else None)
        cuts.thread.start()
        started = time.monotonic()
        mark = PROGRESS_EVERY
        try:
            while time.monotonic() - started < deadline_s:
                service.wait_until(partial(cuts.reached, min(mark, jobs)), 1.0)
                count = ended()
                if count >= mark and count < jobs:
                    print("soak: progress ended=%d/%d faults=%d power_cuts=%d elapsed=%ds"
                          % (count, jobs, faults.count, cuts.count, time.monotonic() - started), file=out, flush=True)
                    mark = (count // PROGRESS_EVERY + 1) * PROGRESS_EVERY
                # The last cuts may come after the last job: the device must come back up from those too.
                if (count == jobs and not cuts.thread.is_alive()) or device.ended_by_itself():
                    break
        finally:
            cuts.stop.set()
            cuts.thread.join(30)
            faults.stop.set()
            faults.thread.join(15)
            proxy.resume()
            proxy.refuse(False)
            proxy.delay(0)
            (folder / "stop").touch()
        if not device.wait_end(30):
            device.cut()
        planned_failed = sum(job.final != "SUCCEEDED" for job in plan)
        counts = {"jobs": jobs, "succeeded": 0, "failed": 0, "planned_failed": planned_failed, "lost": 0,
                  "doubled": 0, "loop_deaths": 0, "faults": faults.count, "power_cuts": cuts.count,
                  "mid_write": cuts.mid_write}
        with device.changed:
            lines = list(device.lines)
        reran = handler_reruns(lines)
        histories = {job.job_id: service.history(THING, job.job_id) for job in plan}
        expected: dict[str, str] = {}
        update_problems: dict[str, list[str]] = {}
        wrong_firmware: list[str] = []
        if updates:
            outcomes = {job_id: terminal_outcome(history) for job_id, history in histories.items()}
            expected, update_problems, wrong_firmware = firmware_checks(
                [(job.job_id, job.update) for job in plan], outcomes, handler_firmware(lines), final_firmware(lines),
                cuts.unconfirmed)
        for job in plan:
            final = expected.get(job.job_id, job.final)
            verdict, problems = history_problems(histories[job.job_id], job.steps, final)
            problems += update_problems.get(job.job_id, [])
            if verdict is None and problems:
                verdict = "lost"  # not the outcome the plan meant, though it ended once
            if job.job_id in reran:
                verdict = "doubled"
                problems.append("the handler ran again after its outcome was saved on flash")
            if verdict is not None:
                counts[verdict] += 1
            else:
                counts["succeeded" if final == "SUCCEEDED" else "failed"] += 1
            for problem in problems:
                print("soak: %s: %s" % (job.job_id, problem), file=out)
        counts["loop_deaths"] = sum(line.startswith("LOOP_DEATH") for line in lines)
        if device.process.returncode != 0 or not any(line.startswith("DONE ") for line in lines):
            counts["loop_deaths"] += 1
            print("soak: the device process ended with %s:\n%s" % (device.process.returncode, "\n".join(lines[-30:])),
                  file=out)
        if updates:
            counts["ota"] = updates
            counts["cut_rollbacks"] = sum(job.update is not None and job.final != expected.get(job.job_id, job.final)
                                          for job in plan)
            counts["wrong_firmware"] = len(wrong_firmware)
            counts["reboots"] = device.reboots
            for problem in wrong_firmware:
                print("soak: firmware: %s" % problem, file=out)
        print("soak: faults injected: %s" % " ".join(faults.log), file=out)
        if power_cuts:
            print("soak: power cuts (jobs ended:how): %s; %d left a write unfinished on flash, %d a half-written file"
                  % (" ".join(cuts.log), cuts.mid_write, cuts.torn), file=out)
        return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iotjobs-soak", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20, help="jobs to run (default 20)")
    parser.add_argument("--runtime", choices=(*MICROPYTHON_RUNTIMES, "cpython"), default="unix64",
                        help="unix64: the PyPI unix port (.mpy); esp32like: v1.27.0, 32-bit, single floats, library "
                        "frozen (built from source by tools/setup.sh --esp32like); cpython: the shim (default unix64)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random plan and faults")
    parser.add_argument("--fault-every", type=float, nargs=2, default=(0.2, 1.0), metavar=("MIN_S", "MAX_S"),
                        help="seconds between faults, drawn uniformly (default 0.2 1.0)")
    parser.add_argument("--power-cuts", type=int, default=0, metavar="N",
                        help="kill the device (SIGKILL) N times, at random moments or in the middle of a flash "
                             "write, remove or rename, and start it again on the same flash folder; the jobs then "
                             "run through the Runner, its checkpoint on that flash (default 0)")
    parser.add_argument("--flash", choices=("littlefs", "fat"), default="littlefs",
                        help="with --power-cuts: littlefs renames over a file, fat cannot (default littlefs)")
    parser.add_argument("--ota", type=int, default=0, metavar="K",
                        help="make K of the jobs firmware updates, on a test esp32 whose partitions live in the "
                             "device's flash folder: some planned to succeed, some to fail (bad hash, or a "
                             "self-test that fails and rolls back); the jobs then run through the Runner "
                             "(default 0)")
    parser.add_argument("--deadline", type=float, default=None, help="give up after this many seconds")
    args = parser.parse_args(argv)
    if not 0 <= args.ota <= args.jobs:
        parser.error("--ota takes 0 to --jobs (%d) jobs" % args.jobs)
    seed = args.seed if args.seed is not None else int(time.time())
    deadline = args.deadline if args.deadline is not None else 60 + 15 * args.jobs
    print("soak: seed=%d runtime=%s" % (seed, args.runtime), flush=True)
    counts = soak(args.jobs, args.runtime, seed, deadline, tuple(args.fault_every), sys.stdout, args.power_cuts,
                  args.flash, args.ota)
    print("soak: " + " ".join("%s=%d" % item for item in counts.items()), flush=True)
    healthy = counts["lost"] == 0 and counts["doubled"] == 0 and counts["loop_deaths"] == 0 and \
        counts.get("wrong_firmware", 0) == 0
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
