"""MicroPython's micropython module for CPython: compiler hints as no-ops, memory reports from the gc shim."""

import gc
from collections.abc import Callable
from typing import Any, TypeVar

_F = TypeVar("_F")

_opt_level = 0


def const(expr: _F) -> _F:
    return expr


def native(func: _F) -> _F:
    return func


viper = native


def opt_level(level: int | None = None) -> int | None:
    global _opt_level
    if level is None:
        return _opt_level
    _opt_level = level
    return None


def _heap() -> tuple[int, int]:
    # gc.mem_alloc/mem_free exist once mprun.install() has patched gc.
    alloc = getattr(gc, "mem_alloc", lambda: 0)()
    free = getattr(gc, "mem_free", lambda: 0)()
    return alloc, free


def mem_info(verbose: Any = None) -> None:
    alloc, free = _heap()
    print("stack: %d out of 15360" % stack_use())
    print("GC: total: %d, used: %d, free: %d" % (alloc + free, alloc, free))
    print(" No. of 1-blocks: 0, 2-blocks: 0, max blk sz: 0, max free sz: %d" % (free // 16))


def qstr_info(verbose: Any = None) -> None:
    print("qstr pool: n_pool=0, n_qstr=0, n_str_data_bytes=0, n_total_bytes=0")


def stack_use() -> int:
    return 0


def mem_current() -> int:
    return _heap()[0]


def mem_peak() -> int:
    return _heap()[0]


def alloc_emergency_exception_buf(size: int) -> None:
    pass


def schedule(func: Callable[[Any], Any], arg: Any) -> None:
    # On a board the call waits for the VM to be between bytecodes; here that is now.
    func(arg)


def heap_lock() -> None:
    pass


def heap_unlock() -> int:
    return 0


def kbd_intr(chr: int) -> None:
    pass
