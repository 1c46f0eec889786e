"""Device script: heap allocated by importing the library (umqtt.simple imported first, GC off while counting);
argv "https": by importing the HTTPS client alone."""
# mypy: ignore-errors
# (MicroPython code: checked by running it on the unix port, not against CPython's stubs.)

import gc
import sys

# argv "https": the HTTPS client alone, as a device on HTTPS loads it (no umqtt.simple, no JobsClient).
if sys.argv[1:] == ["https"]:
    gc.collect()
    gc.disable()
    start = gc.mem_alloc()
    from iotjobs.https import JobsHttpsClient  # noqa: F401

    core = everything = gc.mem_alloc()
else:
    import umqtt.simple  # noqa: F401  (the transport is not ours: counted before the library)

    gc.collect()
    gc.disable()
    start = gc.mem_alloc()
    from iotjobs import JobsClient  # noqa: F401  (iotjobs itself loads it only when asked)

    core = gc.mem_alloc()
    import iotjobs.download  # noqa: F401  (handlers load it for a download job only)
    import iotjobs.handlers  # noqa: F401
    import iotjobs.runner  # noqa: F401
    import iotjobs.tls  # noqa: F401

    everything = gc.mem_alloc()
gc.collect()
kept = gc.mem_alloc()
print('RESULT import {"core_alloc": %d, "all_alloc": %d, "all_kept": %d}' % (core - start, everything - start,
                                                                            kept - start))
