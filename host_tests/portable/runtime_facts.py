"""What runtime this is: MicroPython's version, word size, float precision, and where the library comes from."""

import os
import sys

from harness import emit


def origin(name):
    """(__file__, frozen) of module name; frozen when .frozen, searched first, gave it: no such file exists."""
    saved = sys.path[:]
    sys.path[:] = [".frozen"] + [p for p in saved if p != ".frozen"]
    try:
        module = __import__(name, None, None, ["__name__"])
    finally:
        sys.path[:] = saved
    path = getattr(module, "__file__", "built in")
    try:
        os.stat(path)
        return path, False
    except OSError:
        return path, True


implementation = sys.implementation
emit("implementation", implementation.name)
emit("version", list(implementation.version[:3]) if implementation.name == "micropython" else None)
emit("maxsize", sys.maxsize)
# 2**24 + 1 is the first integer a single-precision float cannot hold.
emit("single_float", float(16777217) == 16777216.0)
for name in ("umqtt.simple", "iotjobs"):
    path, frozen = origin(name)
    emit(name, {"file": path, "frozen": frozen})
