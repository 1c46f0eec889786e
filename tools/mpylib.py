"""How firmware scripts run as a device: the library as .mpy files, compiled when older than its sources, and
the command of each runtime (cpython, unix64, esp32like, and esp32like-mpy for the benchmarks)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import esp32like

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
SOURCES = (ROOT / "firmware" / "lib", ROOT / "build" / "umqtt")
MPY_LIB = ROOT / "build" / "mpy-lib"
# The library compiled by the esp32like build's own mpy-cross, for its build without the library frozen.
ESP32LIKE_MPY_LIB = esp32like.OUT / "mpy-lib"
# The MicroPython runtimes of the suite; "esp32like-mpy" is measured by the benchmarks and smoke-tested.
MICROPYTHON_RUNTIMES = ("unix64", "esp32like")


def compiled_library(target: Path = MPY_LIB, mpy_cross: Path = BIN / "mpy-cross") -> Path:
    """firmware/lib and umqtt.simple compiled with mpy_cross into target, where older than their source."""
    for root in SOURCES:
        for source in root.rglob("*.py"):
            compiled = target / source.relative_to(root).with_suffix(".mpy")
            if compiled.exists() and compiled.stat().st_mtime >= source.stat().st_mtime:
                continue
            compiled.parent.mkdir(parents=True, exist_ok=True)
            # Compiled beside the target, then renamed: other processes may be importing the old one.
            partial = compiled.with_suffix(".mpy.%d" % os.getpid())
            subprocess.run([str(mpy_cross), "-o", str(partial), "-s", source.name, str(source)],
                           check=True, capture_output=True)
            os.replace(partial, compiled)
    for stale in target.rglob("*.mpy"):
        relative = stale.relative_to(target).with_suffix(".py")
        if not any((root / relative).exists() for root in SOURCES):
            stale.unlink()
    return target


def micropython_binary(runtime: str) -> Path:
    """The unix port binary of a MicroPython runtime; the esp32like ones are built first if missing or stale."""
    if runtime == "unix64":
        return BIN / "micropython"
    if runtime in ("esp32like", "esp32like-mpy"):
        esp32like.ensure()
        return esp32like.FROZEN if runtime == "esp32like" else esp32like.UNFROZEN
    raise ValueError("unknown MicroPython runtime %r" % runtime)


def library_path(runtime: str) -> str:
    """The MICROPYPATH that gives a MicroPython runtime the library: none for esp32like, which has it frozen.

    Nothing that holds an iotjobs/ or umqtt/ folder may come before .frozen there: '' (the current folder) does,
    and a folder named like a frozen package is imported instead of it.
    """
    if runtime == "unix64":
        return "%s:.frozen" % compiled_library()
    if runtime == "esp32like-mpy":
        micropython_binary(runtime)
        return "%s:.frozen" % compiled_library(ESP32LIKE_MPY_LIB, esp32like.MPY_CROSS)
    if runtime == "esp32like":
        return ".frozen"
    raise ValueError("unknown MicroPython runtime %r" % runtime)


def device_command(runtime: str, script: Path, args: list[str], heapsize: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run a firmware script as a device.

    runtime: "cpython" (the shim, library from its sources), "unix64" (the PyPI unix port, 64-bit, .mpy files),
    "esp32like" (v1.27.0, 32-bit, single floats, library frozen) or "esp32like-mpy" (the same build without the
    library frozen, .mpy files from its own mpy-cross).
    """
    env = dict(os.environ)
    if runtime == "cpython":
        env["MICROPYPATH"] = ":".join(str(p) for p in SOURCES)
        return [str(BIN / "python"), str(ROOT / "host_tests" / "shim" / "mprun.py"), str(script), *args], env
    env["MICROPYPATH"] = library_path(runtime)
    return [str(micropython_binary(runtime)), "-X", "heapsize=" + heapsize, str(script), *args], env
