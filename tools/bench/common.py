"""What the benchmark parts share: running device scripts, printing tables, writing results under build/bench."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from mpylib import BIN, ROOT, device_command

BENCH = ROOT / "tools" / "bench"
OUT = ROOT / "build" / "bench"


def run_device(runtime: str, script: str, args: list[str], heapsize: str = "128k", timeout: float = 60,
               path: str | None = None) -> tuple[bool, dict[str, Any], str]:
    """Run tools/bench/SCRIPT as a device; (exited 0, its RESULT lines by key, its output for errors).

    `path` replaces MICROPYPATH (to import the library from its sources rather than the compiled .mpy files).
    """
    command, env = device_command(runtime, BENCH / script, args, heapsize)
    if path is not None:
        env["MICROPYPATH"] = path
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return False, {}, "timed out after %.0f s" % timeout
    results: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            _, key, value = line.split(" ", 2)
            results[key] = json.loads(value)
    return done.returncode == 0, results, done.stdout + done.stderr


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain text table, columns as wide as their widest cell."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(name: str, data: Any) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / (name + ".json")
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def machine() -> dict[str, Any]:
    """Where the figures were measured: they mean little without it."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    micropython = subprocess.run([str(BIN / "micropython"), "-c", "import sys; print(sys.implementation.version)"],
                                 capture_output=True, text=True).stdout.strip()
    mosquitto = subprocess.run(["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True).stdout.splitlines()
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "micropython": micropython,
            "mosquitto": mosquitto[0] if mosquitto else "unknown", "kernel": platform.release()}


def plot_path(name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return OUT / (name + ".png")
