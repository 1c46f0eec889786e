"""A minimal test harness that runs on MicroPython and CPython alike: one line per case or result."""

import json
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


def emit(key, value):
    """One result for the pytest side: `RESULT <key> <json>`."""
    print("RESULT", key, json.dumps(value))


def run_scenario(namespace, link=None):
    """argv: NAME HOST PORT THING [key=value ...] [ARG ...]: run scenario_NAME(jc, args) on a connected client.

    HOST "https://NAME" gives a JobsHttpsClient, which takes the key=value pairs cert, key and ca (DER files);
    any other HOST a JobsClient over plain MQTT. key=value pairs (timeout_ms, and the client's options) override
    link; any exception ends the run with `ERROR <type> <message>` and exit status 1.
    """
    import clients

    name, host, port, thing = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    args = sys.argv[5:]
    options = dict(link or {})
    options.update(clients.take_options(args))
    jc = clients.client_for(host, port, thing, options)
    jc.connect()
    try:
        namespace["scenario_" + name](jc, args)
    except Exception as e:
        print("ERROR", type(e).__name__, e)
        sys.exit(1)
    finally:
        jc.disconnect()
