"""Device script: heap allocated by importing the library (umqtt.simple imported first, GC off while counting)."""
# mypy: ignore-errors
# (MicroPython code: checked by running it on the unix port, not against CPython's stubs.)

import gc

import umqtt.simple  # noqa: F401  (the transport is not ours: counted before the library)

gc.collect()
gc.disable()
start = gc.mem_alloc()
import iotjobs  # noqa: E402, F401

core = gc.mem_alloc()
import iotjobs.handlers  # noqa: E402, F401
import iotjobs.runner  # noqa: E402, F401
import iotjobs.tls  # noqa: E402, F401

everything = gc.mem_alloc()
gc.collect()
kept = gc.mem_alloc()
print('RESULT import {"core_alloc": %d, "all_alloc": %d, "all_kept": %d}' % (core - start, everything - start,
                                                                            kept - start))
