"""Runs firmware scripts as a device would: on the MicroPython unix port, or on CPython through the shim."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpylib import MPY_LIB, SOURCES, device_command

ROOT = Path(__file__).resolve().parents[1]
PORTABLE = ROOT / "host_tests" / "portable"
# The test esp32 module (flash partitions and the bootloader's rollback, file-backed): on every device's path.
ESP32_SIM = ROOT / "host_tests" / "esp32_sim"
RUNTIMES = ("cpython", "unix64")
# A board-sized heap for everything but the 32 KB document scenario.
DEFAULT_HEAP = "96k"
# The unix port gets the library as .mpy files, as a board does (compiling the sources on the device costs
# ~20k of heap more at import); CPython gets the sources.
MICROPYPATH = ":".join(str(p) for p in (MPY_LIB, PORTABLE, ESP32_SIM)) + ":.frozen"
CPYTHONPATH = ":".join(str(p) for p in (*SOURCES, PORTABLE, ESP32_SIM))


def command(runtime: str, script: Path, args: list[str], heapsize: str | None = None) -> list[str]:
    # The same command the tools use; environment() below adds the portable test scripts to the path.
    return device_command(runtime, script, args, heapsize or DEFAULT_HEAP)[0]


def environment(extra: dict[str, str] | None = None, runtime: str | None = None) -> dict[str, str]:
    """The environment of a device process; without a runtime, MICROPYPATH names the sources (both can use them)."""
    env = dict(os.environ)
    env["MICROPYPATH"] = MICROPYPATH if runtime != "cpython" else CPYTHONPATH
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
                          timeout=timeout, env=environment(env, runtime), cwd=ROOT)
    return parse(done.returncode, done.stdout, done.stderr)


def start(runtime: str, script: Path, *args: str, heapsize: str | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(command(runtime, script, list(args), heapsize), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment(env, runtime), cwd=ROOT)
