"""Heap: the smallest unix-port heap for a 32 KB job cycle (ours vs naive; HTTPS vs MQTT, both over mutual TLS),
import cost, and heap per API call."""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from localjobs import certs
from localjobs.broker import Mosquitto
from localjobs.certs import CertificateFolder
from localjobs.model import thing_arn
from localjobs.service import JobsService
from mpylib import SOURCES, compiled_library, library_path

from .common import board_layout, plot_path, run_device, table, write_json

# The shape test_32k_document_on_a_bounded_heap uses: 900 small settings, the costly shape for json.loads.
SETTINGS = {"key%04d" % i: "value-%04d-abcdefgh" % i for i in range(900)}
LARGE_DOC: dict[str, Any] = {"operation": "config", "settings": SETTINGS, "blob": ""}
LARGE_DOC["blob"] = "x" * (32700 - len(json.dumps(LARGE_DOC)))
SCRIPTS = {"ours": "dev_cycle_ours.py", "naive": "dev_cycle_naive.py", "mqtts": "dev_cycle_ours.py",
           "https": "dev_cycle_https.py"}
# Over TLS each trial's thing needs a certificate, recorded before the service starts: enough for four bisections.
TLS_THINGS = 48
# The 32 KB cycles on the 32-bit build (runtime, client), beside the unix64 ones.
ESP32LIKE_CYCLES = (("esp32like-mpy", "ours"), ("esp32like", "ours"), ("esp32like", "naive"))
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


@contextmanager
def device_folder(runtime: str, *scripts: str) -> Iterator[tuple[Path, str]]:
    """(folder, MICROPYPATH) to run scripts from as a board would (see board_layout): the runtime's compiled library
    in `lib`, or none where it is frozen."""
    frozen = runtime == "esp32like"
    with board_layout(None if frozen else Path(library_path(runtime).split(":")[0]), *scripts) as board:
        yield board, ".frozen" if frozen else "lib:.frozen"


def cycle_passes(service: JobsService, broker: Mosquitto | None, client: str, kilobytes: int,
                 runtime: str = "unix64", folder: CertificateFolder | None = None) -> bool:
    """One fresh thing and a 32 KB job on runtime; True when the device ends with the execution SUCCEEDED.

    client "ours" and "naive" use the plain broker; "mqtts" and "https" the TLS service (started by tls_service)
    with the certificates of its folder.
    """
    thing = "heap-%s-%d" % (client, next(_things))
    service.create_thing(thing)
    service.create_job(thing + "-job", [thing_arn(thing)], LARGE_DOC)
    if folder is None:
        assert broker is not None
        args = [broker.host, str(broker.port), thing]
    else:
        port = service.mqtts[1] if client == "mqtts" else int(service.https_url.rsplit(":", 1)[1])
        device = folder.thing(thing)
        args = ["localhost", str(port), thing, str(device.cert_der), str(device.key_der), str(folder.ca_der)]
    with device_folder(runtime, SCRIPTS[client], "dev_cycle_ours.py") as (board, path):
        ok, results, _ = run_device(runtime, SCRIPTS[client], args, "%dk" % kilobytes, timeout=30, path=path,
                                    cwd=board)
    done = service.status(thing, thing + "-job") == "SUCCEEDED"
    return ok and done and results.get("operation") == "config"


@contextmanager
def tls_service() -> Iterator[tuple[JobsService, CertificateFolder]]:
    """The local service as AWS serves devices (MQTT over TLS and HTTPS), certificates made for the trials' things."""
    with tempfile.TemporaryDirectory() as root:
        folder = certs.init(root)
        first = next(_things)
        for n in range(first, first + TLS_THINGS):
            for client in ("mqtts", "https"):
                certs.issue_thing(root, "heap-%s-%d" % (client, n))
        with JobsService("127.0.0.1", 0, tls=root, https=("127.0.0.1", 0)) as service:
            yield service, folder


def import_cost() -> dict[str, dict[str, int]]:
    """Bytes allocated by importing the library from .py sources (compiled on the device) and from .mpy; and by
    importing the HTTPS client alone (.mpy), what a device on HTTPS loads instead of JobsClient and umqtt.simple."""
    sources = ":".join(str(p) for p in SOURCES) + ":.frozen"
    compiled = "%s:.frozen" % compiled_library()
    costs = {}
    for form, path, args in (("py", sources, []), ("mpy", compiled, []), ("https_mpy", compiled, ["https"])):
        ok, results, output = run_device("unix64", "dev_import.py", args, "4m", path=path)
        if not ok:
            raise RuntimeError("import measurement failed:\n" + output)
        costs[form] = results["import"]
    return costs


def resident(runtime: str) -> dict[str, int]:
    """Bytes the library keeps on the heap once imported: {"core": JobsClient, "whole": every module}.

    runtime: a device_command runtime; "esp32like" (frozen) against "esp32like-mpy" (.mpy files) on the 32-bit build.
    """
    with device_folder(runtime, "dev_resident.py") as (board, path):
        ok, results, output = run_device(runtime, "dev_resident.py", [], "512k", path=path, cwd=board)
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
    figures["trials"].update({"mqtts": [], "https": []})

    def bisect(client: str, service: JobsService, broker: Mosquitto | None,
               folder: CertificateFolder | None = None, runtime: str = "unix64") -> None:
        key = client if runtime == "unix64" else "%s_%s" % (runtime.replace("-", "_"), client)

        def passes(kilobytes: int) -> bool:
            ok = cycle_passes(service, broker, client, kilobytes, runtime, folder)
            figures["trials"].setdefault(key, []).append([kilobytes, ok])
            return ok

        # 1k resolution between 8k (nothing fits) and 512k; the search needs ~9 device runs.
        figures["heap32k_%s_k" % key] = smallest(passes, 8, 512)

    with Mosquitto() as broker, JobsService(broker.host, broker.port) as service:
        for client in ("ours", "naive"):
            bisect(client, service, broker)
        # The 32-bit build: the library as .mpy (on the build without it frozen) and frozen; the naive client on
        # the frozen build, whose umqtt.simple is frozen as in ESP32 firmware.
        for runtime, client in ESP32LIKE_CYCLES:
            bisect(client, service, broker, runtime=runtime)
        figures["calls"] = per_call(service, broker, 5 if quick else 30)
    # HTTPS has no plain form: its peer is the MQTT client over the same mutual TLS (whose buffers the unix port's
    # Mbed TLS takes from the MicroPython heap, as it does HTTPS's; an ESP32's come from the IDF heap, outside it).
    with tls_service() as (service, folder):
        for client in ("mqtts", "https"):
            bisect(client, service, None, folder)
        for runtime in ("esp32like-mpy", "esp32like"):
            bisect("mqtts", service, None, folder, runtime)
    figures["import"] = import_cost()
    figures["esp32like_resident"] = {runtime: resident(runtime) for runtime in ("esp32like-mpy", "esp32like")}
    figures["ratio_ours_to_naive"] = round(figures["heap32k_ours_k"] / figures["heap32k_naive_k"], 3)
    figures["ratio_https_to_mqtts"] = round(figures["heap32k_https_k"] / figures["heap32k_mqtts_k"], 3)
    return figures


def report(figures: dict[str, Any]) -> str:
    lines = [table(["32 KB job cycle (unix port)", "smallest heap"], [
        ["naive: umqtt.simple + json.loads", "%dk" % figures["heap32k_naive_k"]],
        ["iotjobs (.mpy)", "%dk" % figures["heap32k_ours_k"]],
        ["ours / naive", "%.2f" % figures["ratio_ours_to_naive"]],
        ["iotjobs over MQTT, mutual TLS", "%dk" % figures["heap32k_mqtts_k"]],
        ["iotjobs over HTTPS (iotjobs.https)", "%dk" % figures["heap32k_https_k"]],
        ["HTTPS / MQTT over TLS", "%.2f" % figures["ratio_https_to_mqtts"]],
    ]), ""]
    resident32 = figures["esp32like_resident"]
    lines.append(table(["32-bit v1.27.0 build (esp32like)", ".mpy", "frozen"], [
        ["resident after `from iotjobs import JobsClient`", "%.1f KB" % (resident32["esp32like-mpy"]["core"] / 1024),
         "%.1f KB" % (resident32["esp32like"]["core"] / 1024)],
        ["resident, whole package", "%.1f KB" % (resident32["esp32like-mpy"]["whole"] / 1024),
         "%.1f KB" % (resident32["esp32like"]["whole"] / 1024)],
        ["32 KB job cycle, smallest heap", "%dk" % figures["heap32k_esp32like_mpy_ours_k"],
         "%dk" % figures["heap32k_esp32like_ours_k"]],
        ["the same over mutual TLS (Mbed TLS on the GC heap here; an ESP32's IDF heap is outside it)",
         "%dk" % figures["heap32k_esp32like_mpy_mqtts_k"], "%dk" % figures["heap32k_esp32like_mqtts_k"]],
        ["naive client (umqtt.simple frozen + json.loads)", "", "%dk" % figures["heap32k_esp32like_naive_k"]],
    ]))
    lines.append("")
    imports = figures["import"]
    lines.append(table(["import (GC off)", "JobsClient", "whole package", "kept after gc"], [
        [form, "%d B" % imports[form]["core_alloc"], "%d B" % imports[form]["all_alloc"],
         "%d B" % imports[form]["all_kept"]] for form in ("py", "mpy")]))
    https = imports["https_mpy"]
    lines.append("JobsHttpsClient alone (.mpy, no umqtt): %d B allocated, %d B kept"
                 % (https["core_alloc"], https["all_kept"]))
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
