"""iotjobs-soak: many jobs through random link, broker and service faults; one summary line at the end."""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import threading
import time
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


def soak(jobs: int, runtime: str, seed: int, deadline_s: float, every: tuple[float, float], out: Any) -> dict[str, int]:
    rng = random.Random(seed)
    plan: list[tuple[str, dict[str, Any]]] = []
    for i in range(jobs):
        final = rng.choice(("SUCCEEDED", "SUCCEEDED", "FAILED", "REJECTED"))
        plan.append(("soak-%d-%04d" % (seed, i), {"steps": rng.randrange(1, 5), "final": final,
                                                       "pause_ms": rng.randrange(50, 250)}))
    with Mosquitto() as broker, JobsService(broker.host, broker.port) as service, \
            FaultProxy(broker.host, broker.port) as proxy:
        service.create_thing(THING)
        for job_id, document in plan:
            service.create_job(job_id, [thing_arn(THING)], document)
        command, env = device_command(runtime, DEVICE, [
            proxy.host, str(proxy.port), THING, "jobs=%d" % jobs, "timeout_ms=2000", "response_ms=500",
            "ping_ms=500", "floor_ms=50", "ceiling_ms=500", "stable_ms=3000"], "128k")
        device = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(line.rstrip("\n") for line in device.stdout or ()),
                                  daemon=True)
        reader.start()
        faults = Faults(rng, proxy, broker, service, every)
        faults.thread.start()

        def all_ended() -> bool:
            return all(service.status(THING, job_id) not in PENDING for job_id, _ in plan)

        try:
            service.wait_until(lambda: all_ended() or device.poll() is not None, timeout=deadline_s)
        finally:
            faults.stop.set()
            faults.thread.join(15)
            proxy.resume()
            proxy.refuse(False)
            proxy.delay(0)
        try:
            device.wait(30)
        except subprocess.TimeoutExpired:
            device.kill()
            device.wait()
        reader.join(5)
        counts = {"jobs": jobs, "succeeded": 0, "failed": 0, "lost": 0, "doubled": 0, "loop_deaths": 0,
                  "faults": faults.count}
        for job_id, document in plan:
            verdict, problems = history_problems(service.history(THING, job_id), document["steps"],
                                                 document["final"])
            if verdict is not None:
                counts[verdict] += 1
            else:
                counts["succeeded" if document["final"] == "SUCCEEDED" else "failed"] += 1
            for problem in problems:
                print("soak: %s: %s" % (job_id, problem), file=out)
        done = [line for line in lines if line.startswith("DONE ")]
        if device.returncode != 0 or not done:
            counts["loop_deaths"] += 1
            print("soak: the device process ended with %s:\n%s" % (device.returncode, "\n".join(lines[-30:])),
                  file=out)
        else:
            counts["loop_deaths"] += int(done[0].split("loop_deaths=")[1].split()[0])
        print("soak: faults injected: %s" % " ".join(faults.log), file=out)
        return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iotjobs-soak", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20, help="jobs to run (default 20)")
    parser.add_argument("--runtime", choices=("unix64", "cpython"), default="unix64")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random plan and faults")
    parser.add_argument("--fault-every", type=float, nargs=2, default=(0.2, 1.0), metavar=("MIN_S", "MAX_S"),
                        help="seconds between faults, drawn uniformly (default 0.2 1.0)")
    parser.add_argument("--deadline", type=float, default=None, help="give up after this many seconds")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    deadline = args.deadline if args.deadline is not None else 60 + 15 * args.jobs
    print("soak: seed=%d runtime=%s" % (seed, args.runtime), flush=True)
    counts = soak(args.jobs, args.runtime, seed, deadline, tuple(args.fault_every), sys.stdout)
    print("soak: " + " ".join("%s=%d" % item for item in counts.items()), flush=True)
    healthy = counts["lost"] == 0 and counts["doubled"] == 0 and counts["loop_deaths"] == 0
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
