"""MicroPython's time for CPython: wrapping ticks_* and sleep_ms/sleep_us, also patched into time."""

import os
import time as _time
import types

# Ticks are small ints: an ESP32 (any 32-bit port) wraps them at 2**30, which is what firmware must
# survive. The x64 unix port wraps at 2**62, so it never shows a wrap; the shim deliberately does not
# copy that. MPSHIM_TICKS_MS sets where ticks_ms starts, so a test can start just before the wrap.
TICKS_PERIOD = 1 << 30
_MASK = TICKS_PERIOD - 1
_HALF = TICKS_PERIOD // 2

_origin_ns = _time.monotonic_ns() - int(os.environ.get("MPSHIM_TICKS_MS", "0")) * 1_000_000


def _elapsed_ns() -> int:
    return _time.monotonic_ns() - _origin_ns


def ticks_ms() -> int:
    return (_elapsed_ns() // 1_000_000) & _MASK


def ticks_us() -> int:
    return (_elapsed_ns() // 1_000) & _MASK


def ticks_cpu() -> int:
    """Nanoseconds: the finest counter there is, wrapping in the same period."""
    return _elapsed_ns() & _MASK


def ticks_add(ticks: int, delta: int) -> int:
    # MicroPython refuses a delta that ticks_diff could not give back.
    if not -_HALF < delta < _HALF:
        raise OverflowError("ticks interval overflow")
    return (ticks + delta) & _MASK


def ticks_diff(ticks1: int, ticks2: int) -> int:
    """ticks1 - ticks2 as a signed value in [-period/2, period/2), correct across a wrap."""
    return ((ticks1 - ticks2 + _HALF) & _MASK) - _HALF


def sleep_ms(ms: int) -> None:
    # MicroPython treats a negative delay as no delay; CPython's sleep() would raise.
    if ms > 0:
        _time.sleep(ms / 1000)


def sleep_us(us: int) -> None:
    if us > 0:
        _time.sleep(us / 1_000_000)


sleep = _time.sleep
time = _time.time
time_ns = _time.time_ns
gmtime = _time.gmtime
localtime = _time.localtime
mktime = _time.mktime

_ADDED = {
    "ticks_ms": ticks_ms,
    "ticks_us": ticks_us,
    "ticks_cpu": ticks_cpu,
    "ticks_add": ticks_add,
    "ticks_diff": ticks_diff,
    "sleep_ms": sleep_ms,
    "sleep_us": sleep_us,
}


def patch(module: types.ModuleType = _time) -> None:
    """Give CPython's time module MicroPython's extra functions: firmware does `import time`."""
    for name, func in _ADDED.items():
        setattr(module, name, func)
