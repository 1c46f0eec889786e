"""Fleet: N virtual devices (our client on CPython, many per process) against one Jobs service: jobs/s and its CPU."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from localjobs.broker import Mosquitto, free_port
from mpylib import ROOT, device_command

from .common import BENCH, OUT, LocalJobs, aws_client, plot_path, process_cpu_seconds, table, write_json
from .relay import RelayProcess

PER_PROCESS = 500
TARGETS_PER_JOB = 100  # AWS's limit on a CreateJob's targets, which both services keep
MINISTACK_VERSION = "1.5.33"
MINISTACK_VENV = OUT / "ministack-venv"


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def create_work(iot: Any, prefix: str, n: int) -> None:
    """n things and one job for each, in jobs of 100 targets, through the service's HTTP API."""
    names = ["%s%d" % (prefix, i) for i in range(n)]
    with ThreadPoolExecutor(8) as pool:
        arns = list(pool.map(lambda name: iot.create_thing(thingName=name)["thingArn"], names))
        chunks = [arns[i:i + TARGETS_PER_JOB] for i in range(0, n, TARGETS_PER_JOB)]
        list(pool.map(lambda c: iot.create_job(jobId="%sjob%d" % (prefix, c[0]), targets=c[1],
                                               document=json.dumps({"operation": "fleet"})), enumerate(chunks)))


def run_fleet(host: str, port: int, prefix: str, n: int, tls: bool, service_pids: list[int]) -> dict[str, Any]:
    """Connect n devices, then let them all start and finish their job; the figures of that second phase."""
    devices = []
    for first in range(0, n, PER_PROCESS):
        args = [host, str(port), prefix, str(first), str(min(PER_PROCESS, n - first))] + (["tls"] if tls else [])
        command, env = device_command("cpython", BENCH / "dev_fleet.py", args, "128k")
        devices.append(subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, cwd=ROOT))
    try:
        connect_start = time.time()
        for device in devices:
            assert device.stdout is not None
            line = device.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError("a device process did not connect: %r" % line)
        connected = time.time() - connect_start
        cpu_before = [process_cpu_seconds(pid) for pid in service_pids]
        start = time.time()
        for device in devices:
            assert device.stdin is not None
            device.stdin.write("go\n")
            device.stdin.flush()
        completed = errors = retries = 0
        ends = []
        said: list[str] = []
        for device in devices:
            assert device.stdout is not None
            line = device.stdout.readline()
            while line and not line.startswith("DONE"):
                said.append(line.strip())  # the library's error reports and failed devices, kept for the record
                line = device.stdout.readline()
            words = line.split()
            if not words or words[0] != "DONE":
                raise RuntimeError("a device process ended without DONE: %r" % line)
            completed += int(words[1])
            errors += int(words[2])
            ends.append(float(words[3]))
            retries += int(words[4])
        elapsed = max(ends) - start
        cpu = [process_cpu_seconds(pid) - before for pid, before in zip(service_pids, cpu_before)]
        device_cpu = sum(process_cpu_seconds(d.pid) for d in devices)
    finally:
        for device in devices:
            device.kill()
            device.wait()
    return {"n": n, "completed": completed, "errors": errors, "seconds": elapsed, "jobs_per_s": completed / elapsed,
            "retries": retries, "service_cpu_s": cpu, "service_cpu_share": [c / elapsed for c in cpu],
            "connect_s": connected, "device_processes": len(devices), "device_cpu_s_incl_connect": device_cpu,
            "device_messages": len(said), "first_messages": said[:10]}


class FleetMosquitto(Mosquitto):
    """mosquitto for a fleet: by default it drops QoS 1 messages past 1,000 queued for one client, and the
    service is one client receiving every device's requests; AWS IoT does not drop them, so neither may this."""

    def _config(self) -> str:
        return super()._config() + "max_queued_messages 0\nmax_inflight_messages 0\n"


def ours(n: int) -> dict[str, Any]:
    with FleetMosquitto() as broker, LocalJobs(broker.host, broker.port) as service:
        create_work(service.iot(), "f%d-" % n, n)
        assert service.process is not None and broker.process is not None
        figures = run_fleet(broker.host, broker.port, "f%d-" % n, n, False, [service.process.pid, broker.process.pid])
    figures["service"] = "iotjobs-local serve + mosquitto"
    return figures


def ministack_python() -> Path | None:
    """ministack in a venv of its own (it pins a botocore older than ours); None when it cannot be installed."""
    python = MINISTACK_VENV / "bin" / "python"
    check = [str(python), "-c", "import ministack, cryptography"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(MINISTACK_VENV)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "ministack==" + MINISTACK_VERSION,
                           "cryptography"], capture_output=True, text=True)
    return python if done.returncode == 0 else None


def ministack(n: int) -> dict[str, Any]:
    """The same work on ministack: its own broker (MQTT over TLS, no client certificate) and Jobs over MQTT."""
    python = ministack_python()
    if python is None:
        return {"n": n, "error": "ministack could not be installed"}
    http, mqtt = free_port(), free_port()
    env = dict(os.environ, GATEWAY_PORT=str(http), IOT_MTLS_PORT=str(mqtt), PYTHONUNBUFFERED="1")
    log = open(OUT / "ministack.log", "w")
    process = subprocess.Popen([str(python), "-m", "ministack"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while "MQTT listening" not in (OUT / "ministack.log").read_text():
            if time.time() > deadline or process.poll() is not None:
                return {"n": n, "error": "ministack did not start (see build/bench/ministack.log)"}
            time.sleep(0.2)
        create_work(aws_client("iot", "http://127.0.0.1:%d" % http), "m%d-" % n, n)
        # ministack's MQTT is TLS only; a relay process adds it, so the devices run the same plain-TCP path as
        # against mosquitto (and the relay's TLS work is not counted as ministack's).
        with RelayProcess("127.0.0.1", mqtt, tls=True) as relay:
            figures = run_fleet(relay.host, relay.port, "m%d-" % n, n, False, [process.pid])
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    figures["service"] = "ministack %s (its own broker, over TLS)" % MINISTACK_VERSION
    return figures


def plot(figures: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, color in (("ours", "#2a7ab0"), ("ministack", "#d98c3a")):
        runs = [r for r in figures[name] if "jobs_per_s" in r]
        if runs:
            ax.plot([r["n"] for r in runs], [r["jobs_per_s"] for r in runs], "o-", color=color,
                    label=runs[0]["service"])
    ax.set_xscale("log")
    ax.set_xlabel("virtual devices (one job each)")
    ax.set_ylabel("jobs completed per second")
    ax.set_title("fleet: start-next + update SUCCEEDED per device, 2 shared cores")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot_path("fleet"), dpi=110)
    plt.close(fig)


def report(figures: dict[str, Any]) -> str:
    rows = []
    for name in ("ours", "ministack"):
        for r in figures[name]:
            if "error" in r:
                rows.append([name, r["n"], "-", "-", "-", r["error"]])
                continue
            rows.append([name, r["n"], "%d/%d" % (r["completed"], r["n"]), "%.0f" % r["jobs_per_s"],
                         " + ".join("%.0f%%" % (100 * s) for s in r["service_cpu_share"]),
                         "%d errors, %d retried after a timeout, %d library messages" % (
                             r["errors"], r["retries"], r["device_messages"])])
    return table(["service", "devices", "jobs done", "jobs/s", "service CPU (of one core)", "notes"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the same as the default (N = 100)")
    parser.add_argument("--sizes", default="",
                        help="comma-separated N (default 100; 100,1000,10000 takes about a minute here)")
    parser.add_argument("--no-ministack", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [100]
    figures: dict[str, Any] = {"fd_limit": raise_fd_limit(), "per_process": PER_PROCESS, "ours": [], "ministack": []}
    for n in sizes:
        figures["ours"].append(ours(n))
        if not args.no_ministack:
            figures["ministack"].append(ministack(n))
        write_json("fleet", figures)
    if len(sizes) > 1:  # one fleet size is a point, not a curve
        plot(figures)
    print(report(figures))
    return figures


if __name__ == "__main__":
    main()
