"""Run a firmware script on CPython as the MicroPython unix port would: `python mprun.py SCRIPT [ARGS...]`."""

import gc
import json
import os
import runpy
import sys
import traceback
from collections.abc import Iterator
from typing import Any, TextIO

SHIM_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(SHIM_DIR))
FIRMWARE_LIB = os.path.join(REPO_ROOT, "firmware", "lib")
UMQTT_DIR = os.path.join(REPO_ROOT, "build", "umqtt")

# gc's figures are fixed, not measured: a plausible ESP32 (no PSRAM) heap, its size set by MPSHIM_HEAP.
_HEAP_BYTES = int(os.environ.get("MPSHIM_HEAP", str(128 * 1024)))
_HEAP_USED = min(20 * 1024, _HEAP_BYTES // 2)
_threshold = -1


def _mem_alloc() -> int:
    return _HEAP_USED


def _mem_free() -> int:
    return _HEAP_BYTES - _HEAP_USED


def _threshold_fn(amount: int | None = None) -> int | None:
    global _threshold
    if amount is None:
        return _threshold
    _threshold = amount
    return None


def _print_exception(exc: BaseException, file: TextIO | None = None) -> None:
    # file is looked up at call time, so a redirected sys.stdout is honoured as on MicroPython.
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=file or sys.stdout)


def _ilistdir(path: str = ".") -> Iterator[tuple[Any, ...]]:
    # (name, type, inode, size) with MicroPython's type codes: 0x4000 directory, 0x8000 file.
    with os.scandir(path) as entries:
        for entry in entries:
            kind = 0x4000 if entry.is_dir() else 0x8000
            size = 0 if kind == 0x4000 else entry.stat().st_size
            yield (entry.name, kind, entry.inode(), size)


_cpython_loads = json.loads


def _loads(text: Any, **kwargs: Any) -> Any:
    # MicroPython's json.loads takes any buffer: a firmware's reused receive buffer is a memoryview.
    if isinstance(text, memoryview):
        text = text.tobytes()
    return _cpython_loads(text, **kwargs)


def _micropypath() -> list[str]:
    # Colon-separated, like the unix port's; empty entries are skipped.
    return [p for p in os.environ.get("MICROPYPATH", "").split(":") if p]


def install() -> None:
    """Make this process look like MicroPython to firmware code; for in-process use, safe to call again.

    Puts the shim, MICROPYPATH's entries, firmware/lib and build/umqtt at the front of sys.path, and
    adds MicroPython's extras to CPython's time, gc, sys, os and json.
    """
    front = [SHIM_DIR, *_micropypath(), FIRMWARE_LIB, UMQTT_DIR]
    for path in reversed(front):
        while path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)

    import utime

    utime.patch()
    extras = (
        (gc, "mem_alloc", _mem_alloc),
        (gc, "mem_free", _mem_free),
        (gc, "threshold", _threshold_fn),
        (sys, "print_exception", _print_exception),
        (os, "ilistdir", _ilistdir),
        (json, "loads", _loads),
    )
    for module, name, func in extras:
        setattr(module, name, func)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stderr.write("usage: python host_tests/shim/mprun.py SCRIPT [ARGS...]\n")
        sys.exit(2)
    install()
    import machine

    machine.WDT_ENDS_PROCESS = True
    script = args[0]
    sys.argv = [script, *args[1:]]
    # As on the unix port, the script's own directory comes first.
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as e:
        # The traceback starts at the script, as the unix port's does, and the exit status is 1 as there.
        tb = e.__traceback__
        while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != os.path.abspath(script):
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb or e.__traceback__)
        sys.exit(1)


if __name__ == "__main__":
    main()
