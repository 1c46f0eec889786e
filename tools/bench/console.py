"""Console: how the job page stays responsive while every execution of a 1,000- or 10,000-thing job moves.

For each N, `iotjobs-local serve` runs as its own process (its CPU is its own). One job for N things runs
without any page open (the peer), then a second one with its page open in headless Chromium: each thing
goes QUEUED -> IN_PROGRESS -> SUCCEEDED through the iot-jobs-data REST API, as fast as four clients can.
Measured: the page's load time and snapshot size; during the storm, the page's main thread (its CPU time,
the lateness of a 50 ms timer, long tasks) and how late each visible row showed its SUCCEEDED; the
service's throughput and CPU per update with the page open against without. Wall-clock figures (lag, long
tasks, lateness) include whatever else the machine runs (the load average is printed); CPU times do not.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from browser import launch
from localjobs.broker import Mosquitto

from .common import LocalJobs, table, write_json

GROUP = "console-bench"
CLIENTS = 4
ARN = "arn:aws:iot:us-east-1:123456789012:thinggroup/"
# Watches the page from inside: a 50 ms timer's lateness, long tasks, the stream's events and
# the moment each visible row first shows SUCCEEDED.
PROBE = """
(() => {
  const bench = window.__bench = {};
  bench.reset = () => Object.assign(bench, {lags: [], longtasks: [], changes: 0, bytes: 0, seen: {}});
  bench.reset();
  new PerformanceObserver((list) => { for (const e of list.getEntries()) bench.longtasks.push(e.duration); })
    .observe({type: "longtask"});
  let expected = performance.now() + 50;
  setInterval(() => {
    const now = performance.now();
    bench.lags.push(Math.max(0, now - expected));
    expected = now + 50;
  }, 50);
  const Source = window.EventSource;
  window.EventSource = class extends Source {
    constructor(...args) {
      super(...args);
      this.addEventListener("snapshot", (e) => { bench.snapshotBytes = e.data.length; });
      this.addEventListener("change", (e) => { bench.changes += 1; bench.bytes += e.data.length; });
    }
  };
  new MutationObserver(() => {
    for (const row of document.querySelectorAll("#executions tbody tr")) {
      const thing = row.dataset.thing;
      const status = row.querySelector(".status").textContent;
      if (!(thing in bench.seen) && status === "SUCCEEDED") bench.seen[thing] = Date.now();
    }
  }).observe(document, {childList: true, subtree: true});
})();
"""


class Api:
    """Unsigned calls of the service's REST APIs, one keep-alive connection per thread."""

    def __init__(self, url: str) -> None:
        self.address = urlsplit(url).netloc
        self.local = threading.local()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = http.client.HTTPConnection(self.address, timeout=60)
        connection.request(method, path, json.dumps(body or {}), {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError("%s %s: %s %r" % (method, path, response.status, data[:200]))
        return dict(json.loads(data or b"{}"))


def things(n: int) -> list[str]:
    return ["c%05d" % i for i in range(n)]


def create_fleet(api: Api, n: int) -> None:
    api.call("POST", "/thing-groups/" + GROUP)
    names = things(n)
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(lambda name: api.call("POST", "/things/" + name), names))
        list(pool.map(lambda name: api.call("PUT", "/thing-groups/addThingToThingGroup",
                                            {"thingGroupName": GROUP, "thingName": name}), names))


def storm(api: Api, job_id: str, names: list[str]) -> dict[str, float]:
    """Every thing starts its job and succeeds; returns the time each SUCCEEDED was acknowledged (epoch ms)."""
    order = names[:]
    random.Random(job_id).shuffle(order)
    done: dict[str, float] = {}

    def run(name: str) -> None:
        api.call("PUT", "/things/%s/jobs/$next" % name, {"statusDetails": {"step": "flashing", "percent": "50"}})
        api.call("POST", "/things/%s/jobs/%s" % (name, job_id), {"status": "SUCCEEDED",
                                                                   "statusDetails": {"result": "ok"}})
        done[name] = time.time() * 1000

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(run, order))
    return done


def timed(service: LocalJobs, action: Callable[[], Any]) -> tuple[Any, float, float]:
    """(what action returned, its wall seconds, the service's CPU seconds meanwhile)."""
    cpu, wall = service.cpu_seconds(), time.monotonic()
    result = action()
    return result, time.monotonic() - wall, service.cpu_seconds() - cpu


def metrics(cdp: Any) -> dict[str, float]:
    """The page's counters: ThreadTime is its main thread's CPU time, the *Duration ones wall time (seconds)."""
    return {m["name"]: float(m["value"]) for m in cdp.send("Performance.getMetrics")["metrics"]}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def measure(n: int, playwright: Any) -> dict[str, Any]:
    with Mosquitto() as broker, LocalJobs(broker.host, broker.port) as service:
        api = Api(service.http_url)
        create_fleet(api, n)
        names = things(n)
        updates = 2 * n

        api.call("PUT", "/jobs/quiet", {"targets": [ARN + GROUP], "document": json.dumps({"operation": "flash"})})
        _, quiet_wall, quiet_cpu = timed(service, lambda: storm(api, "quiet", names))

        api.call("PUT", "/jobs/watched", {"targets": [ARN + GROUP], "document": json.dumps({"operation": "flash"})})
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.add_init_script(PROBE)
            started = time.monotonic()
            page.goto(service.http_url + "/console/#/job/watched")
            page.wait_for_function("document.querySelectorAll('#executions tbody tr').length === %d" % min(n, 100),
                                   timeout=120_000)
            load = time.monotonic() - started
            snapshot_bytes = page.evaluate("window.__bench.snapshotBytes")
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            page.evaluate("window.__bench.reset()")
            before = metrics(cdp)
            load_average = os.getloadavg()[0]
            done, watched_wall, watched_cpu = timed(service, lambda: storm(api, "watched", names))
            last_sent = max(done.values())
            page.wait_for_function(
                "document.querySelector('#job-bar .seg[data-status=SUCCEEDED]')?.dataset.count === '%d'" % n,
                timeout=120_000, polling=10)
            settle = time.time() * 1000 - last_sent
            after = metrics(cdp)
            probe = page.evaluate("window.__bench")
        finally:
            browser.close()
    late = [probe["seen"][name] - done[name] for name in probe["seen"] if name in done]
    return {
        "n": n,
        "load_average": load_average,
        "page_cpu_ms": 1000 * (after["ThreadTime"] - before["ThreadTime"]),
        "page_script_ms": 1000 * (after["ScriptDuration"] - before["ScriptDuration"]),
        "page_layout_style_ms": 1000 * (after["LayoutDuration"] + after["RecalcStyleDuration"]
                                        - before["LayoutDuration"] - before["RecalcStyleDuration"]),
        "storm_s": watched_wall,
        "snapshot_bytes": snapshot_bytes,
        "load_s": load,
        "updates": updates,
        "quiet_updates_per_s": updates / quiet_wall,
        "watched_updates_per_s": updates / watched_wall,
        "quiet_cpu_ms_per_update": 1000 * quiet_cpu / updates,
        "watched_cpu_ms_per_update": 1000 * watched_cpu / updates,
        "change_events": probe["changes"],
        "pushed_bytes_per_update": probe["bytes"] / updates,
        "lag_p95_ms": percentile(probe["lags"], 0.95),
        "lag_max_ms": max(probe["lags"] or [0.0]),
        "longtasks": len(probe["longtasks"]),
        "longtask_max_ms": max(probe["longtasks"] or [0.0]),
        "longtask_total_ms": sum(probe["longtasks"]),
        "rows_timed": len(late),
        "row_late_median_ms": statistics.median(late) if late else 0.0,
        "row_late_max_ms": max(late or [0.0]),
        "settle_ms": settle,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N = 1,000 only")
    parser.add_argument("--sizes", default="", help="comma-separated N (default 1000,10000)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [1000] if args.quick else [1000, 10000]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        rows = [measure(n, playwright) for n in sizes]
    write_json("console", rows)
    print(table(
        ["N", "snapshot", "load", "updates/s quiet", "watched", "CPU/update quiet", "watched", "events",
         "bytes/update"],
        [["{:,}".format(r["n"]), "%.0f KB" % (r["snapshot_bytes"] / 1024), "%.2f s" % r["load_s"],
          "%.0f" % r["quiet_updates_per_s"], "%.0f (%.2fx)" % (r["watched_updates_per_s"],
                                                              r["watched_updates_per_s"] / r["quiet_updates_per_s"]),
          "%.2f ms" % r["quiet_cpu_ms_per_update"], "%.2f ms (%.2fx)" % (
              r["watched_cpu_ms_per_update"], r["watched_cpu_ms_per_update"] / r["quiet_cpu_ms_per_update"]),
          r["change_events"], "%.0f" % r["pushed_bytes_per_update"]] for r in rows]))
    print(table(
        ["N", "storm", "page CPU", "per 1,000 updates", "of one core", "script", "layout+style", "load average"],
        [["{:,}".format(r["n"]), "%.1f s" % r["storm_s"], "%.0f ms" % r["page_cpu_ms"],
          "%.1f ms" % (1000 * r["page_cpu_ms"] / r["updates"]), "%.0f%%" % (r["page_cpu_ms"] / 10 / r["storm_s"]),
          "%.0f ms" % r["page_script_ms"], "%.0f ms" % r["page_layout_style_ms"], "%.1f" % r["load_average"]]
         for r in rows]))
    print(table(
        ["N", "timer lag p95", "max", "long tasks", "longest", "total", "row late median", "max",
         "settle"],
        [["{:,}".format(r["n"]), "%.0f ms" % r["lag_p95_ms"], "%.0f ms" % r["lag_max_ms"], r["longtasks"],
          "%.0f ms" % r["longtask_max_ms"], "%.0f ms" % r["longtask_total_ms"],
          "%.0f ms" % r["row_late_median_ms"], "%.0f ms" % r["row_late_max_ms"], "%.0f ms" % r["settle_ms"]]
         for r in rows]))
    if len(rows) > 1:
        big, small = rows[-1], rows[0]
        print("%s vs %s: load %.1fx, page CPU per update %.2fx, row late median %.1fx" % (
            "{:,}".format(big["n"]), "{:,}".format(small["n"]), big["load_s"] / small["load_s"],
            (big["page_cpu_ms"] / big["updates"]) / (small["page_cpu_ms"] / small["updates"]),
            big["row_late_median_ms"] / max(small["row_late_median_ms"], 1.0)))
    return {"rows": rows}


if __name__ == "__main__":
    main()
