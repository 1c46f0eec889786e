"""make bench: every part in turn, each printing its table and writing build/bench/*.json, then one summary line."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from . import console, fleet, heap, latency, ota, recovery, size
from .common import machine, table, write_json


def recovery_part(quick: bool) -> list[dict[str, Any]]:
    """The lead's recovery measurement, as it is, with fewer trials when quick."""
    rows: list[dict[str, Any]] = []
    for runtime in ("unix64", "cpython"):
        for floor_ms in (100, 1000):
            times = recovery.recovery_times(runtime, floor_ms, 8 * floor_ms, 3.0, 3 if quick else 7)
            rows.append({"runtime": runtime, "floor_ms": floor_ms, "median_ms": statistics.median(times) * 1000,
                         "max_ms": max(times) * 1000, "trials": len(times)})
    write_json("recovery", rows)
    print(table(["runtime", "backoff floor", "median", "max", "trials"],
                [[r["runtime"], "%d ms" % r["floor_ms"], "%.0f ms" % r["median_ms"], "%.0f ms" % r["max_ms"],
                  r["trials"]] for r in rows]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and trials, fleet of 100 only")
    parser.add_argument("--parts", default="heap,ota,size,latency,fleet,console,recovery")
    args = parser.parse_args()
    quick = ["--quick"] if args.quick else []
    parts = args.parts.split(",")
    write_json("machine", machine())
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    parts_in_order = (("heap", heap), ("ota", ota), ("size", size), ("latency", latency), ("fleet", fleet),
                      ("console", console))
    for name, part in parts_in_order:
        if name in parts:
            print("\n== %s ==" % name)
            results[name] = part.main(quick if name not in ("size", "ota") else [])
    if "recovery" in parts:
        print("\n== recovery ==")
        recovery_part(args.quick)
    print("\n(%.0f s)" % (time.monotonic() - started))
    fields = []
    if "heap" in results:
        fields += ["heap32k_ours=%sk" % results["heap"]["heap32k_ours_k"],
                   "heap32k_naive=%sk" % results["heap"]["heap32k_naive_k"],
                   "heap32k_https=%sk" % results["heap"]["heap32k_https_k"],
                   "heap32k_mqtts=%sk" % results["heap"]["heap32k_mqtts_k"]]
        resident32 = results["heap"]["esp32like_resident"]
        fields += ["esp32like_import_mpy=%.1fk" % (resident32["esp32like-mpy"]["core"] / 1024),
                   "esp32like_import_frozen=%.1fk" % (resident32["esp32like"]["core"] / 1024),
                   "esp32like_heap32k_mpy=%sk" % results["heap"]["heap32k_esp32like_mpy_ours_k"],
                   "esp32like_heap32k_frozen=%sk" % results["heap"]["heap32k_esp32like_ours_k"],
                   "esp32like_heap32k_naive=%sk" % results["heap"]["heap32k_esp32like_naive_k"]]
    if "ota" in results:
        fields.append("ota_1.5MiB_heap=%sk" % results["ota"]["runtimes"]["unix64"]["ota_k"])
    if "size" in results:
        fields.append("mpy_bytes=%s" % results["size"]["total_mpy"])
    if "latency" in results:
        fields.append("rtt_ratio_vs_fastest_peer=%.2f" % results["latency"]["rtt_ratio_vs_fastest_peer"])
    if "console" in results:
        biggest = results["console"]["rows"][-1]
        fields.append("console_page_cpu_per_1000_updates_at_%d=%.0fms" % (
            biggest["n"], 1000 * biggest["page_cpu_ms"] / biggest["updates"]))
    print("bench: " + " ".join(fields))


if __name__ == "__main__":
    main()
