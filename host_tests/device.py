"""Runs firmware scripts as a device would: on the MicroPython unix port, or on CPython through the shim."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
PORTABLE = ROOT / "host_tests" / "portable"
RUNTIMES = ("cpython", "micropython")
# What the library needs on a board-sized heap for everything but the 32 KB document scenario.
DEFAULT_HEAP = "64k"
MICROPYPATH = ":".join(str(p) for p in (ROOT / "firmware" / "lib", ROOT / "build" / "umqtt", PORTABLE)) + ":.frozen"


def command(runtime: str, script: Path, args: list[str], heapsize: str | None = None) -> list[str]:
    if runtime == "micropython":
        return [str(BIN / "micropython"), "-X", "heapsize=" + (heapsize or DEFAULT_HEAP), str(script), *args]
    if runtime == "cpython":
        return [str(BIN / "python"), str(ROOT / "host_tests" / "shim" / "mprun.py"), str(script), *args]
    raise ValueError("unknown runtime " + runtime)


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["MICROPYPATH"] = MICROPYPATH
    env.update(extra or {})
    return env


@dataclass
class Run:
    """What a device script printed: RESULT lines by key, and everything else."""

    returncode: int
    stdout: str
    stderr: str
    results: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        assert key in self.results, "no RESULT %s in:\n%s\n%s" % (key, self.stdout, self.stderr)
        return self.results[key]


def parse(returncode: int, stdout: str, stderr: str) -> Run:
    run = Run(returncode, stdout, stderr)
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            _, key, value = line.split(" ", 2)
            run.results[key] = json.loads(value)
    return run


def run(runtime: str, script: Path, *args: str, heapsize: str | None = None, timeout: float = 60,
        env: dict[str, str] | None = None) -> Run:
    done = subprocess.run(command(runtime, script, list(args), heapsize), capture_output=True, text=True,
                          timeout=timeout, env=environment(env), cwd=ROOT)
    return parse(done.returncode, done.stdout, done.stderr)


def start(runtime: str, script: Path, *args: str, heapsize: str | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(command(runtime, script, list(args), heapsize), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment(env), cwd=ROOT)
