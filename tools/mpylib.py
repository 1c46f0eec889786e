"""The device library as .mpy files for the MicroPython unix port, compiled when older than its sources."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
SOURCES = (ROOT / "firmware" / "lib", ROOT / "build" / "umqtt")
MPY_LIB = ROOT / "build" / "mpy-lib"


def compiled_library(target: Path = MPY_LIB) -> Path:
    """firmware/lib and umqtt.simple compiled with mpy-cross into target, where older than their source."""
    for root in SOURCES:
        for source in root.rglob("*.py"):
            compiled = target / source.relative_to(root).with_suffix(".mpy")
            if compiled.exists() and compiled.stat().st_mtime >= source.stat().st_mtime:
                continue
            compiled.parent.mkdir(parents=True, exist_ok=True)
            # Compiled beside the target, then renamed: other processes may be importing the old one.
            partial = compiled.with_suffix(".mpy.%d" % os.getpid())
            subprocess.run([str(BIN / "mpy-cross"), "-o", str(partial), "-s", source.name, str(source)],
                           check=True, capture_output=True)
            os.replace(partial, compiled)
    for stale in target.rglob("*.mpy"):
        relative = stale.relative_to(target).with_suffix(".py")
        if not any((root / relative).exists() for root in SOURCES):
            stale.unlink()
    return target


def device_command(runtime: str, script: Path, args: list[str], heapsize: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run a firmware script as a device: the unix port, or CPython with the shim."""
    env = dict(os.environ)
    if runtime == "unix64":
        env["MICROPYPATH"] = "%s:.frozen" % compiled_library()
        return [str(BIN / "micropython"), "-X", "heapsize=" + heapsize, str(script), *args], env
    if runtime == "cpython":
        env["MICROPYPATH"] = ":".join(str(p) for p in SOURCES)
        return [str(BIN / "python"), str(ROOT / "host_tests" / "shim" / "mprun.py"), str(script), *args], env
    raise ValueError("unknown runtime %r" % runtime)
