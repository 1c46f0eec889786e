"""Runs firmware scripts as a device would: on a MicroPython unix port, or on CPython through the shim."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpylib import MICROPYTHON_RUNTIMES, SOURCES, device_command, library_path

ROOT = Path(__file__).resolve().parents[1]
PORTABLE = ROOT / "host_tests" / "portable"
# The test esp32 module (flash partitions and the bootloader's rollback, file-backed): on every device's path.
ESP32_SIM = ROOT / "host_tests" / "esp32_sim"
# CPython through the shim; the PyPI unix port (1.28, 64-bit, library as .mpy); v1.27.0 built as an ESP32 is
# (32-bit, single floats, library frozen).
RUNTIMES = ("cpython", *MICROPYTHON_RUNTIMES)
# A board-sized heap for everything but the 32 KB document scenario.
DEFAULT_HEAP = "96k"
# The unix ports get the library as a board does: as .mpy files (compiling the sources on the device costs
# ~20k of heap more at import) or frozen; CPython gets the sources.
CPYTHONPATH = ":".join(str(p) for p in (*SOURCES, PORTABLE, ESP32_SIM))


def command(runtime: str, script: Path, args: list[str], heapsize: str | None = None) -> list[str]:
    # The same command the tools use; environment() below adds the portable test scripts to the path.
    return device_command(runtime, script, args, heapsize or DEFAULT_HEAP)[0]


def environment(extra: dict[str, str] | None = None, runtime: str = "cpython") -> dict[str, str]:
    """The environment of a device process: the runtime's library and the portable test scripts on its path."""
    env = dict(os.environ)
    env["MICROPYPATH"] = (CPYTHONPATH if runtime == "cpython"
                          else "%s:%s:%s" % (library_path(runtime), PORTABLE, ESP32_SIM))
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


def finish(proc: subprocess.Popen[str], go: Path | None = None, timeout: float = 60) -> Run:
    """Tell a started device script to go on (by creating `go`), wait for its end, and require a clean exit."""
    try:
        if go is not None:
            go.touch()
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    done = parse(proc.returncode, out, err)
    assert done.returncode == 0, out + err
    return done
