"""Heap: the smallest unix-port heap for a 32 KB job cycle (ours vs naive), import cost, and heap per API call."""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from typing import Any

from localjobs.broker import Mosquitto
from localjobs.model import thing_arn
from localjobs.service import JobsService
from mpylib import SOURCES, compiled_library

from .common import plot_path, run_device, table, write_json

# The shape test_32k_document_on_a_bounded_heap uses: 900 small settings, the costly shape for json.loads.
SETTINGS = {"key%04d" % i: "value-%04d-abcdefgh" % i for i in range(900)}
LARGE_DOC: dict[str, Any] = {"operation": "config", "settings": SETTINGS, "blob": ""}
LARGE_DOC["blob"] = "x" * (32700 - len(json.dumps(LARGE_DOC)))
SCRIPTS = {"ours": "dev_cycle_ours.py", "naive": "dev_cycle_naive.py"}
_things = itertools.count(1)


def smallest(passes: Callable[[int], bool], low: int, high: int) -> int:
    """The smallest k in (low, high] for which passes(k) holds, assuming it fails at low and holds from there on."""
    if not passes(high):
        raise RuntimeError("fails even with %dk of heap" % high)
    while high - low > 1:
        middle = (low + high) // 2
        if passes(middle):
            high = middle
        else:
            low = middle
    return high


def cycle_passes(service: JobsService, broker: Mosquitto, client: str, kilobytes: int,
                 runtime: str = "unix64") -> bool:
    """One fresh thing and a 32 KB job on runtime; True when the device ends with the execution SUCCEEDED."""
    thing = "heap-%s-%d" % (client, next(_things))
    service.create_thing(thing)
    service.create_job(thing + "-job", [thing_arn(thing)], LARGE_DOC)
    ok, results, _ = run_device(runtime, SCRIPTS[client], [broker.host, str(broker.port), thing],
                                "%dk" % kilobytes, timeout=30)
    done = service.status(thing, thing + "-job") == "SUCCEEDED"
    return ok and done and results.get("operation") == "config"


def import_cost() -> dict[str, dict[str, int]]:
    """Bytes allocated by importing the library from .py sources (compiled on the device) and from .mpy."""
    sources = ":".join(str(p) for p in SOURCES) + ":.frozen"
    compiled = "%s:.frozen" % compiled_library()
    costs = {}
    for form, path in (("py", sources), ("mpy", compiled)):
        ok, results, output = run_device("unix64", "dev_import.py", [], "4m", path=path)
        if not ok:
            raise RuntimeError("import measurement failed:\n" + output)
        costs[form] = results["import"]
    return costs


def resident(runtime: str) -> dict[str, int]:
    """Bytes the library keeps on the heap once imported: {"core": import iotjobs, "whole": every module}.

    runtime: a device_command runtime; "esp32like" (frozen) against "esp32like-mpy" (.mpy files) on the 32-bit build.
    """
    ok, results, output = run_device(runtime, "dev_resident.py", [], "512k")
    if not ok:
        raise RuntimeError("resident measurement failed on %s:\n%s" % (runtime, output))
    figures: dict[str, int] = results["resident"]
    return figures


def per_call(service: JobsService, broker: Mosquitto, repeats: int) -> dict[str, dict[str, int]]:
    """Heap allocated by each call with the GC off: the first call, and the mean of `repeats` more."""
    thing = "heap-calls-%d" % next(_things)
    service.create_thing(thing)
    service.create_job("calls-job", [thing_arn(thing)], {"operation": "bench"})
    ok, results, output = run_device("unix64", "dev_calls.py",
                                     [broker.host, str(broker.port), thing, "calls-job", str(repeats)], "4m")
    if not ok:
        raise RuntimeError("per-call measurement failed:\n" + output)
    return results


def plot(figures: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1, 2]})
    names = ["naive\n(umqtt + json.loads)", "iotjobs"]
    values = [figures["heap32k_naive_k"], figures["heap32k_ours_k"]]
    bars = left.bar(names, values, color=["#b0b0b0", "#2a7ab0"])
    left.bar_label(bars, labels=["%dk" % v for v in values])
    left.set_ylim(0, max(values) * 1.15)
    left.set_ylabel("smallest -X heapsize (KB)")
    left.set_title("32 KB job cycle, unix port")
    calls = ["get_pending", "start_next", "describe", "update"]
    first = [figures["calls"][c]["first_alloc"] / 1024 for c in calls]
    steady = [figures["calls"][c]["steady_alloc"] / 1024 for c in calls]
    x = range(len(calls))
    right.bar([i - 0.2 for i in x], first, 0.4, label="first call", color="#9cc3dd")
    right.bar([i + 0.2 for i in x], steady, 0.4, label="steady state (mean)", color="#2a7ab0")
    right.set_xticks(list(x), calls)
    right.set_ylabel("KB allocated per call (GC off)")
    right.set_title("iotjobs: allocation per small request")
    right.legend()
    fig.tight_layout()
    fig.savefig(plot_path("heap"), dpi=110)
    plt.close(fig)


def measure(quick: bool = False) -> dict[str, Any]:
    compiled_library()
    figures: dict[str, Any] = {"document_bytes": len(json.dumps(LARGE_DOC)), "trials": {"ours": [], "naive": []}}
    with Mosquitto() as broker, JobsService(broker.host, broker.port) as service:
        for client in ("ours", "naive"):
            def passes(kilobytes: int, client: str = client) -> bool:
                ok = cycle_passes(service, broker, client, kilobytes)
                figures["trials"][client].append([kilobytes, ok])
                return ok

            # 1k resolution between 16k (nothing fits) and 512k; the search needs ~9 device runs.
            figures["heap32k_%s_k" % client] = smallest(passes, 16, 512)
        figures["calls"] = per_call(service, broker, 5 if quick else 30)
    figures["import"] = import_cost()
    figures["ratio_ours_to_naive"] = round(figures["heap32k_ours_k"] / figures["heap32k_naive_k"], 3)
    return figures


def report(figures: dict[str, Any]) -> str:
    lines = [table(["32 KB job cycle (unix port)", "smallest heap"], [
        ["naive: umqtt.simple + json.loads", "%dk" % figures["heap32k_naive_k"]],
        ["iotjobs (.mpy)", "%dk" % figures["heap32k_ours_k"]],
        ["ours / naive", "%.2f" % figures["ratio_ours_to_naive"]],
    ]), ""]
    imports = figures["import"]
    lines.append(table(["import (GC off)", "import iotjobs", "whole package", "kept after gc"], [
        [form, "%d B" % imports[form]["core_alloc"], "%d B" % imports[form]["all_alloc"],
         "%d B" % imports[form]["all_kept"]] for form in ("py", "mpy")]))
    lines.append("")
    calls = figures["calls"]
    lines.append(table(["call (GC off)", "first: allocated", "first: kept", "steady: allocated per call"], [
        [name, "%d B" % c["first_alloc"], "%d B" % c["first_kept"], "%d B" % c["steady_alloc"]]
        for name, c in calls.items()]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats of the per-call measurement")
    args = parser.parse_args(argv)
    figures = measure(args.quick)
    write_json("heap", figures)
    plot(figures)
    print(report(figures))
    return figures


if __name__ == "__main__":
    main()
