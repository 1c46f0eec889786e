"""A minimal test harness that runs on MicroPython and CPython alike: one line per case."""

import sys


def run_cases(namespace, only=None):
    """Run every case_* function in namespace (or those named in only); print PASS/FAIL lines and a total."""
    names = sorted(name for name in namespace if name.startswith("case_"))
    failed = 0
    for name in names:
        if only and name not in only:
            continue
        try:
            namespace[name]()
            print("PASS", name)
        except Exception as e:
            failed += 1
            print("FAIL", name, "%s: %s" % (type(e).__name__, e))
    print("DONE", len(names), failed)


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exc_type it raises; fail if it raises nothing."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), exc_type.__name__))


def main(namespace):
    run_cases(namespace, sys.argv[1:])
