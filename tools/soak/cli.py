"""iotjobs-soak: many jobs through random link, broker and service faults and power cuts; a summary line at the end."""

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
from functools import partial
from pathlib import Path
from typing import Any

from faultproxy import FaultProxy
from localjobs.broker import Mosquitto
from localjobs.model import thing_arn
from localjobs.service import JobsService
from mpylib import device_command

DEVICE = Path(__file__).with_name("device.py")
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
    """The device process, on its flash folder; a power cut kills it (SIGKILL) and starts it again on the same one."""

    def __init__(self, command: list[str], env: dict[str, str], flash: Path) -> None:
        self.command = command
        self.env = env
        self.flash = flash
        self.lines: list[str] = []
        self.flash_ops = {"write": 0, "remove": 0, "rename": 0}
        self.cutting = False
        self.changed = threading.Condition()
        self.process = self.start()

    def start(self) -> subprocess.Popen[str]:
        process = subprocess.Popen(self.command, env=self.env, cwd=self.flash, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, args=(process,), daemon=True).start()
        self.process = process
        return process

    def _read(self, process: subprocess.Popen[str]) -> None:
        for line in process.stdout or ():
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                if line.startswith("FLASH "):
                    kind = line.split()[1]
                    self.flash_ops[kind] = self.flash_ops.get(kind, 0) + 1
                self.changed.notify_all()

    def wait_flash_op(self, kinds: tuple[str, ...], timeout: float) -> bool:
        """Wait for the device to begin one of these operations on its flash."""
        with self.changed:
            seen = sum(self.flash_ops[kind] for kind in kinds)
            return self.changed.wait_for(lambda: sum(self.flash_ops[kind] for kind in kinds) > seen, timeout)

    def cut(self) -> bool:
        """Power gone: SIGKILL, nothing cleaned up, nothing flushed but what the process already wrote.

        False, and nothing done, if the process had already ended by itself: that is for the soak to see.
        """
        with self.changed:
            if self.process.poll() is not None:
                return False
            self.cutting = True
        self.process.kill()
        self.process.wait()
        return True

    def restart(self) -> None:
        self.start()
        self.cutting = False

    def ended_by_itself(self) -> bool:
        return not self.cutting and self.process.poll() is not None


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
    strikes the new boot at its first flash operation.
    """

    KINDS = ("random", "write", "remove", "rename")
    WINDOW_S = {"write": CUT_WINDOW_S, "remove": FLASH_OP_MS / 1000, "rename": FLASH_OP_MS / 1000}
    FLICKER = 0.25

    def __init__(self, rng: random.Random, device: Device, service: JobsService, count: int, jobs: int,
                 ended: Callable[[], int]) -> None:
        self.rng = rng
        self.device = device
        self.service = service
        self.ended = ended
        self.marks = sorted(rng.uniform(0, max(jobs - 1, 0)) for _ in range(count))
        self.count = 0
        self.mid_write = 0  # cuts that left a replace unfinished on flash
        self.torn = 0  # of those, the ones whose new file was half written
        self.log: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="soak-power-cuts", daemon=True)

    def reached(self, mark: float) -> bool:
        return self.ended() >= mark

    def _run(self) -> None:
        before: dict[str, bytes] = {}
        for mark in self.marks:
            ops: tuple[str, ...]
            if self.count and self.rng.random() < self.FLICKER:
                kind, ops = "flicker", ("write", "remove", "rename")
            else:
                while not self.stop.is_set() and not self.service.wait_until(partial(self.reached, mark), 1.0):
                    pass
                kind = self.rng.choice(self.KINDS)
                ops = (kind,)
            if kind == "random":
                self.stop.wait(self.rng.uniform(0, 1.0))
            else:
                self.device.wait_flash_op(ops, 3)
                self.stop.wait(self.rng.uniform(0, self.WINDOW_S[ops[0]]))
            if self.stop.is_set() or not self.device.cut():
                return
            self.count += 1
            left = unfinished_writes(self.device.flash)
            torn = any(half_written(content) for content in left.values())
            landed = bool(left) and left != before
            self.mid_write += landed
            self.torn += landed and torn
            where = ":torn" if landed and torn else ":mid-write" if landed else ""
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
        elif len(words) == 2 and words[0] == "HANDLER" and words[1] in saved:
            again.add(words[1])
    return again


def soak(jobs: int, runtime: str, seed: int, deadline_s: float, every: tuple[float, float], out: Any,
         power_cuts: int = 0, flash: str = "littlefs") -> dict[str, int]:
    rng = random.Random(seed)
    plan: list[tuple[str, dict[str, Any]]] = []
    for i in range(jobs):
        final = rng.choice(("SUCCEEDED", "SUCCEEDED", "FAILED", "REJECTED"))
        plan.append(("soak-%d-%04d" % (seed, i), {"steps": rng.randrange(1, 5), "final": final,
                                                       "pause_ms": rng.randrange(50, 250),
                                                       "operation": "not-allowed" if final == "REJECTED" else "soak"}))
    with Mosquitto() as broker, JobsService(broker.host, broker.port) as service, \
            FaultProxy(broker.host, broker.port) as proxy, tempfile.TemporaryDirectory(prefix="soak-flash-") as folder:
        service.create_thing(THING)
        for job_id, document in plan:
            service.create_job(job_id, [thing_arn(THING)], document)
        options = [proxy.host, str(proxy.port), THING, "jobs=%d" % jobs, "timeout_ms=2000", "response_ms=500",
                   "ping_ms=500", "floor_ms=50", "ceiling_ms=500", "stable_ms=3000"]
        if power_cuts:
            # The Runner keeps its checkpoint on this flash: that is what a power cut must not lose.
            options += ["runner=1", "flash=" + flash, "flash_bps=%d" % FLASH_BPS, "flash_ms=%d" % FLASH_OP_MS]
        command, env = device_command(runtime, DEVICE, options, "128k")
        env["PYTHONUNBUFFERED"] = "1"  # CPython: each FLASH line as it happens
        device = Device(command, env, Path(folder))
        faults = Faults(rng, proxy, broker, service, every)
        faults.thread.start()

        def ended() -> int:
            return sum(service.status(THING, job_id) not in PENDING for job_id, _ in plan)

        cuts = PowerCuts(random.Random(seed + 1), device, service, power_cuts, jobs, ended)
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
            (Path(folder) / "stop").touch()
        try:
            device.process.wait(30)
        except subprocess.TimeoutExpired:
            device.process.kill()
            device.process.wait()
        planned_failed = sum(document["final"] != "SUCCEEDED" for _, document in plan)
        counts = {"jobs": jobs, "succeeded": 0, "failed": 0, "planned_failed": planned_failed, "lost": 0,
                  "doubled": 0, "loop_deaths": 0, "faults": faults.count, "power_cuts": cuts.count,
                  "mid_write": cuts.mid_write}
        with device.changed:
            lines = list(device.lines)
        reran = handler_reruns(lines)
        for job_id, document in plan:
            verdict, problems = history_problems(service.history(THING, job_id), document["steps"],
                                                 document["final"])
            if job_id in reran:
                verdict = "doubled"
                problems.append("the handler ran again after its outcome was saved on flash")
            if verdict is not None:
                counts[verdict] += 1
            else:
                counts["succeeded" if document["final"] == "SUCCEEDED" else "failed"] += 1
            for problem in problems:
                print("soak: %s: %s" % (job_id, problem), file=out)
        counts["loop_deaths"] = sum(line.startswith("LOOP_DEATH") for line in lines)
        if device.process.returncode != 0 or not any(line.startswith("DONE ") for line in lines):
            counts["loop_deaths"] += 1
            print("soak: the device process ended with %s:\n%s" % (device.process.returncode, "\n".join(lines[-30:])),
                  file=out)
        print("soak: faults injected: %s" % " ".join(faults.log), file=out)
        if power_cuts:
            print("soak: power cuts (jobs ended:how): %s; %d left a write unfinished on flash, %d a half-written file"
                  % (" ".join(cuts.log), cuts.mid_write, cuts.torn), file=out)
        return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iotjobs-soak", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20, help="jobs to run (default 20)")
    parser.add_argument("--runtime", choices=("unix64", "cpython"), default="unix64")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random plan and faults")
    parser.add_argument("--fault-every", type=float, nargs=2, default=(0.2, 1.0), metavar=("MIN_S", "MAX_S"),
                        help="seconds between faults, drawn uniformly (default 0.2 1.0)")
    parser.add_argument("--power-cuts", type=int, default=0, metavar="N",
                        help="kill the device (SIGKILL) N times, at random moments or in the middle of a flash "
                             "write, remove or rename, and start it again on the same flash folder; the jobs then "
                             "run through the Runner, its checkpoint on that flash (default 0)")
    parser.add_argument("--flash", choices=("littlefs", "fat"), default="littlefs",
                        help="with --power-cuts: littlefs renames over a file, fat cannot (default littlefs)")
    parser.add_argument("--deadline", type=float, default=None, help="give up after this many seconds")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    deadline = args.deadline if args.deadline is not None else 60 + 15 * args.jobs
    print("soak: seed=%d runtime=%s" % (seed, args.runtime), flush=True)
    counts = soak(args.jobs, args.runtime, seed, deadline, tuple(args.fault_every), sys.stdout, args.power_cuts,
                  args.flash)
    print("soak: " + " ".join("%s=%d" % item for item in counts.items()), flush=True)
    healthy = counts["lost"] == 0 and counts["doubled"] == 0 and counts["loop_deaths"] == 0
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
