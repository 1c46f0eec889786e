"""Device script: heap the library keeps after import (gc.collect() before each count, umqtt.simple imported first)."""
# mypy: ignore-errors
# (MicroPython code: checked by running it on the unix port, not against CPython's stubs.)

import gc

import umqtt.simple  # noqa: F401  (the transport is not ours: counted before the library)

gc.collect()
start = gc.mem_alloc()
from iotjobs import JobsClient  # noqa: E402, F401  (`import iotjobs` alone loads it only when asked)

gc.collect()
core = gc.mem_alloc()
import iotjobs.download  # noqa: E402, F401  (handlers load it for a download job only)
import iotjobs.handlers  # noqa: E402, F401  (runner and store with it)
import iotjobs.tls  # noqa: E402, F401

gc.collect()
whole = gc.mem_alloc()
print('RESULT resident {"core": %d, "whole": %d}' % (core - start, whole - start))
