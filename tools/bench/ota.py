"""OTA: the smallest unix-port heap for a 1.5 MiB firmware update job, beside the download job of the same image.

The update is the whole cycle on the test esp32 (host_tests/esp32_sim): written to ota_1 and read back, set_boot(),
reset, then a second process that confirms and reports SUCCEEDED. The peer is the download handler fetching the
same image into a file, on the same board script (host_tests/portable/ota_board.py). Both include the test esp32
module, which takes heap that the real one (in ROM) does not: its resident size is measured and reported beside.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from localjobs.broker import Mosquitto
from localjobs.model import thing_arn
from localjobs.service import JobsService
from mpylib import ROOT, compiled_library, device_command

from .common import table, write_json
from .heap import smallest

IMAGE_SIZE = 0x180000  # ota_1 of MicroPython's partitions-4MiB-ota.csv, filled
PORTABLE = ROOT / "host_tests" / "portable"
ESP32_SIM = ROOT / "host_tests" / "esp32_sim"
BUCKET = "firmware"
PLACEHOLDER = "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/%s/%s}"
RESET_EXIT_CODE = 211
_things = itertools.count(1)


def app_image(version: str, size: int) -> bytes:
    """An ESP-IDF app image's header and app description (as host_tests/test_ota.py makes them), then random bytes."""
    head = bytes([0xE9, 4, 2, 0x20]) + bytes(20) + (0x3F400020).to_bytes(4, "little") + (0x1000).to_bytes(4, "little")
    head += (0xABCD5432).to_bytes(4, "little") + bytes(12) + version.encode().ljust(32, b"\0")
    return head + os.urandom(size - len(head))


def device(runtime: str, script: Path, args: list[str], heap: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command, base = device_command(runtime, script, args, heap)
    base["MICROPYPATH"] = "%s:%s:%s" % (PORTABLE, ESP32_SIM, base["MICROPYPATH"])
    base.update(env)
    try:
        return subprocess.run(command, env=base, capture_output=True, text=True, timeout=120, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        # A board that has not finished in two minutes did not make it at this heap (as heap.cycle_passes counts
        # it): squeezed, a download can go on failing to allocate and reconnecting.
        return subprocess.CompletedProcess(command, -1, str(e.stdout or ""), str(e.stderr or ""))


class Trials:
    """A service with its S3 folder, the image in it, and one fresh thing, flash and state folder per trial."""

    def __init__(self, broker: Mosquitto, service: JobsService, files: Path, work: Path) -> None:
        self.broker, self.service, self.work = broker, service, work
        self.image = app_image("2.0.0", IMAGE_SIZE)
        (files / BUCKET).mkdir(parents=True)
        (files / BUCKET / "app.bin").write_bytes(self.image)
        self.url = PLACEHOLDER % (BUCKET, "app.bin")
        self.sha256 = hashlib.sha256(self.image).hexdigest()
        self.log: list[list[Any]] = []

    def fresh(self, thing: str, document: dict[str, Any]) -> tuple[str, Path]:
        folder = self.work / thing
        folder.mkdir()
        self.service.create_thing(thing)
        self.service.create_job(thing + "-job", [thing_arn(thing)], document)
        return thing, folder

    def ota(self, runtime: str, kilobytes: int) -> bool:
        document = {"operation": "ota", "url": self.url, "sha256": self.sha256, "size": IMAGE_SIZE, "version": "2.0.0"}
        thing, folder = self.fresh("bench-ota-%d" % next(_things), document)
        (folder / "ota_0.bin").write_bytes(app_image("1.0.0", 64 * 1024))
        env = {"ESP32_FLASH": str(folder)}
        args = ["job", self.broker.host, str(self.broker.port), thing, str(folder)]
        codes = []
        for _ in range(3):
            codes.append(device(runtime, PORTABLE / "ota_board.py", args, "%dk" % kilobytes, env).returncode)
            if codes[-1] != RESET_EXIT_CODE:
                break
        ok = codes == [RESET_EXIT_CODE, 0] and self.service.status(thing, thing + "-job") == "SUCCEEDED"
        self.log.append([runtime, "ota", kilobytes, ok])
        return ok

    def download(self, runtime: str, kilobytes: int) -> bool:
        thing = "bench-dl-%d" % next(_things)
        document = {"operation": "download", "url": self.url, "path": str(self.work / thing / "app.bin"),
                    "sha256": self.sha256}
        thing, folder = self.fresh(thing, document)
        (folder / "ota_0.bin").write_bytes(app_image("1.0.0", 64 * 1024))
        env = {"ESP32_FLASH": str(folder), "DOWNLOAD_MAX": str(IMAGE_SIZE)}
        args = ["job", self.broker.host, str(self.broker.port), thing, str(folder)]
        code = device(runtime, PORTABLE / "ota_board.py", args, "%dk" % kilobytes, env).returncode
        ok = code == 0 and self.service.status(thing, thing + "-job") == "SUCCEEDED"
        self.log.append([runtime, "download", kilobytes, ok])
        return ok


def esp32_sim_resident(runtime: str, work: Path) -> int:
    """Bytes the test esp32 module keeps on the heap once imported (the power-on done)."""
    (work / "ota_0.bin").write_bytes(app_image("1.0.0", 4096))
    script = work / "resident.py"
    script.write_text("import gc\ngc.collect()\nbefore = gc.mem_alloc()\nimport esp32\ngc.collect()\n"
                      "print('RESIDENT', gc.mem_alloc() - before)\n")
    done = device(runtime, script, [], "1m", {"ESP32_FLASH": str(work)})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESIDENT ")]
    if not lines:
        raise RuntimeError("resident size measurement failed:\n" + done.stdout + done.stderr)
    return int(lines[0].split()[1])


def measure(runtimes: list[str]) -> dict[str, Any]:
    compiled_library()
    figures: dict[str, Any] = {"image_bytes": IMAGE_SIZE, "runtimes": {}}
    with tempfile.TemporaryDirectory() as temp, Mosquitto() as broker:
        work = Path(temp)
        files = work / "files"
        with JobsService(broker.host, broker.port, http=("127.0.0.1", 0), files=files) as service:
            trials = Trials(broker, service, files, work)
            for runtime in runtimes:
                sim = work / ("sim-" + runtime)
                sim.mkdir()

                def ota_passes(kilobytes: int, runtime: str = runtime) -> bool:
                    return trials.ota(runtime, kilobytes)

                def download_passes(kilobytes: int, runtime: str = runtime) -> bool:
                    return trials.download(runtime, kilobytes)

                figures["runtimes"][runtime] = {
                    # 1k resolution between 32k (nothing connects) and 512k: ~9 device runs each.
                    "ota_k": smallest(ota_passes, 32, 512),
                    "download_k": smallest(download_passes, 32, 512),
                    "esp32_sim_bytes": esp32_sim_resident(runtime, sim),
                }
            figures["trials"] = trials.log
    return figures


def report(figures: dict[str, Any]) -> str:
    rows = []
    for runtime, f in figures["runtimes"].items():
        rows.append([runtime, "%dk" % f["ota_k"], "%dk" % f["download_k"], "%.2f" % (f["ota_k"] / f["download_k"]),
                     "%.1fk" % (f["esp32_sim_bytes"] / 1024)])
    return table(["1.5 MiB image (smallest heap)", "ota job", "download job", "ota / download",
                  "of it, the test esp32"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runtimes", default="unix64", help="comma-separated device runtimes (default unix64)")
    args = parser.parse_args(argv)
    figures = measure(args.runtimes.split(","))
    write_json("ota", figures)
    print(report(figures))
    return figures


if __name__ == "__main__":
    main()
