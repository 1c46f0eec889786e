"""Firmware updates as jobs on every runtime: a board on the test esp32 writes, reboots, confirms or rolls back.

Each "power-on" is a new device process on the same flash folder and state folder: the test esp32's bootloader
runs at its start (host_tests/esp32_sim/esp32.py). Power cuts are injected at chosen calls through ESP32_CUT.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from device import PORTABLE, ROOT, RUNTIMES, Run, run
from localjobs.broker import Mosquitto
from localjobs.model import thing_arn
from localjobs.service import JobsService
from soak.ota import Update, firmware_checks
from test_runner import RESET_EXIT_CODE, RUNNER_HEAP

BOARD = PORTABLE / "ota_board.py"
BUCKET = "firmware"
PLACEHOLDER = "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/%s/%s}"
PARTITION = 0x180000  # ota_0 and ota_1 in MicroPython's partitions-4MiB-ota.csv
CUT_EXIT_CODES = (215, -9)  # the test esp32's power cut: os._exit on CPython, SIGKILL on the unix ports
MAX_BOOTS = 6
# The first OTA data entry as the bootloader writes it at the first boot of a board flashed with esptool.
FACTORY_OTADATA = [{"seq": 1, "state": "VALID"}, None]


def firmware_image(version: str, size: int) -> bytes:
    """What set_boot() and the bootloader check (0xE9 first) and where the app's version is, then random bytes."""
    image_header = bytes([0xE9, 4, 2, 0x20]) + bytes(20)  # esp_image_header_t: magic, segments, SPI mode, size
    segment_header = struct.pack("<II", 0x3F400020, 0x1000)  # the first segment: load address, length
    app_desc = struct.pack("<IIII", 0xABCD5432, 0, 0, 0) + version.encode().ljust(32, b"\0") + b"micropython".ljust(
        32, b"\0")
    head = image_header + segment_header + app_desc
    return head + os.urandom(size - len(head))


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def thing_name() -> str:
    return "ota-" + uuid.uuid4().hex[:12]


@pytest.fixture
def service(jobs_http: JobsService, tmp_path: Path) -> JobsService:
    """The Jobs service whose S3 stand-in is tmp_path/files (conftest's), serving presigned URLs over HTTP."""
    (tmp_path / "files" / BUCKET).mkdir()
    return jobs_http


@dataclass
class Board:
    """A board with the test esp32's flash in `flash` (ota_0 holds version 1.0.0) and the runner's state in `state`."""

    runtime: str
    broker: Mosquitto
    thing: str
    flash: Path
    state: Path
    env: dict[str, str] = field(default_factory=dict)

    def power_on(self, mode: str = "job", cut: str = "", self_test: str = "") -> Run:
        env = {"ESP32_FLASH": str(self.flash), "ESP32_CUT": cut, "OTA_SELF_TEST": self_test, **self.env}
        return run(self.runtime, BOARD, mode, self.broker.host, str(self.broker.port), self.thing, str(self.state),
                   heapsize=RUNNER_HEAP, env=env, timeout=120)

    def until_done(self, plan: dict[int, dict[str, str]] | None = None) -> tuple[list[str], Run]:
        """Power on again after every reset or cut (plan: power_on options by boot number); the boots and the last."""
        boots = []
        for boot in range(MAX_BOOTS):
            done = self.power_on(**(plan or {}).get(boot, {}))
            ended = how_it_ended(done)
            boots.append("%s:%s" % (booted(done), ended))
            if ended == "done":
                return boots, done
        raise AssertionError("no end after %d boots: %s" % (MAX_BOOTS, boots))

    def otadata(self) -> Any:
        return json.loads((self.flash / "otadata.json").read_text())


def booted(done: Run) -> str:
    """The app partition the test esp32's bootloader started (it says so before anything can cut the power)."""
    lines = [line.split()[2] for line in done.stdout.splitlines() if line.startswith("ESP32 BOOT ")]
    assert len(lines) == 1, done.stdout + done.stderr
    return lines[0]


def how_it_ended(done: Run) -> str:
    if done.returncode == 0:
        return "done"
    if done.returncode == RESET_EXIT_CODE and "Traceback" not in done.stderr:
        return "reset"
    if done.returncode in CUT_EXIT_CODES and "ESP32 POWER CUT" in done.stdout:
        return "cut"
    raise AssertionError("the board crashed (%d):\n%s\n%s" % (done.returncode, done.stdout, done.stderr))


@pytest.fixture
def board(runtime: str, mosquitto: Mosquitto, thing_name: str, tmp_path: Path) -> Board:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "ota_0.bin").write_bytes(firmware_image("1.0.0", 64 * 1024))
    state = tmp_path / "device"
    state.mkdir()
    return Board(runtime, mosquitto, thing_name, flash, state)


def put_job(service: JobsService, thing: str, tmp_path: Path, image: bytes, **document: Any) -> str:
    """The image under the service's files and an ota job for it (document's fields override); the job's id."""
    key = "app-%s.bin" % uuid.uuid4().hex[:8]
    (tmp_path / "files" / BUCKET / key).write_bytes(image)
    job_id = "ota-" + uuid.uuid4().hex[:8]
    fields = {"operation": "ota", "url": PLACEHOLDER % (BUCKET, key), "sha256": hashlib.sha256(image).hexdigest(),
              "size": len(image), "version": "2.0.0"}
    fields.update(document)
    service.create_job(job_id, [thing_arn(thing)], fields)
    return job_id


def terminal(service: JobsService, thing: str, job_id: str) -> list[tuple[str, Any]]:
    return [(h["status"], h["statusDetails"]) for h in service.history(thing, job_id)
            if h["status"] not in ("QUEUED", "IN_PROGRESS")]


def test_update_with_a_full_partition_image_reboots_confirms_and_succeeds_once(board, service, thing_name, tmp_path):
    image = firmware_image("2.0.0", PARTITION)  # 1.5 MiB, exactly what ota_1 holds, on the suite's board heap
    job_id = put_job(service, thing_name, tmp_path, image)
    boots, last = board.until_done()
    assert boots == ["ota_0:reset", "ota_1:done"], terminal(service, thing_name, job_id)
    assert last["version"] == "2.0.0"
    assert last["states"] == ["idle", "running", "succeeded"]
    assert terminal(service, thing_name, job_id) == [("SUCCEEDED", {"version": "2.0.0", "partition": "ota_1"})]
    progress = [h["statusDetails"] for h in service.history(thing_name, job_id) if h["status"] == "IN_PROGRESS"]
    writing = [d["progress"] for d in progress if d.get("checkpoint") == "writing"]
    assert writing == ["%d%%" % p for p in range(0, 101, 10)]
    after = [d for d in progress if d.get("checkpoint", "writing") != "writing"]
    assert after == [
        {"progress": "100%", "state": "booting", "partition": "ota_1", "checkpoint": "boot:ota_1"},
        {"state": "resumed", "checkpoint": "boot:ota_1"},
        {"state": "self-test", "partition": "ota_1", "checkpoint": "check:ota_1"},
    ]
    assert (board.flash / "ota_1.bin").read_bytes()[: len(image)] == image
    assert board.otadata() == [{"seq": 1, "state": "VALID"}, {"seq": 2, "state": "VALID"}]
    assert sorted(p.name for p in board.state.iterdir()) == [], "no state file left"
    again = board.power_on("boot")
    assert (again["boot"], again["version"]) == ("ota_1", "2.0.0"), "confirmed: no rollback at the next reset"


def test_failed_self_test_rolls_back_and_the_old_firmware_reports_failed(board, service, thing_name, tmp_path):
    job_id = put_job(service, thing_name, tmp_path, firmware_image("2.0.0", 20_000))
    boots, last = board.until_done({1: {"self_test": "fail"}})
    assert boots == ["ota_0:reset", "ota_1:reset", "ota_0:done"]
    assert last["version"] == "1.0.0"
    assert terminal(service, thing_name, job_id) == [("FAILED", {
        "error": "OtaError",
        "message": "rolled back to ota_0: the firmware written to ota_1 failed its self-test or was reset before it "
                   "passed"})]
    assert board.otadata()[1]["state"] == "ABORTED"
    again = board.power_on("boot")
    assert (again["boot"], again["version"]) == ("ota_0", "1.0.0")


# A power cut at each step: where (the boot it happens in: power_on's options), the boots it takes, the outcome.
RESET_POINTS = {
    "mid-download": ({0: {"cut": "after:writeblocks:2"}}, ["ota_0:cut", "ota_0:reset", "ota_1:done"], "SUCCEEDED"),
    "after the commit, before set_boot": (
        {0: {"cut": "before:set_boot:1"}}, ["ota_0:cut", "ota_0:reset", "ota_1:done"], "SUCCEEDED"),
    "after set_boot, before the reboot": ({0: {"cut": "after:set_boot:1"}}, ["ota_0:cut", "ota_1:done"], "SUCCEEDED"),
    "after the reboot, before the runner": (
        {1: {"cut": "after:boot:1"}}, ["ota_0:reset", "ota_1:cut", "ota_0:reset", "ota_1:done"], "SUCCEEDED"),
    "during the self-test": ({1: {"self_test": "cut"}}, ["ota_0:reset", "ota_1:cut", "ota_0:done"], "FAILED"),
    "after the confirmation, before the report": (
        {1: {"cut": "after:mark_app_valid_cancel_rollback:1"}}, ["ota_0:reset", "ota_1:cut", "ota_1:done"],
        "SUCCEEDED"),
    "twice before the runner": (
        {1: {"cut": "after:boot:1"}, 3: {"cut": "after:boot:1"}},
        ["ota_0:reset", "ota_1:cut", "ota_0:reset", "ota_1:cut", "ota_0:done"], "FAILED"),
}


@pytest.mark.parametrize("point", list(RESET_POINTS))
def test_power_cut_at_each_step_ends_with_one_terminal_status(point, board, service, thing_name, tmp_path):
    plan, expected_boots, outcome = RESET_POINTS[point]
    job_id = put_job(service, thing_name, tmp_path, firmware_image("2.0.0", 5 * 4096 + 100))
    boots, last = board.until_done(plan)
    assert boots == expected_boots
    ends = terminal(service, thing_name, job_id)
    assert [status for status, _ in ends] == [outcome]
    if outcome == "SUCCEEDED":
        assert ends[0][1] == {"version": "2.0.0", "partition": "ota_1"}
        assert last["version"] == "2.0.0"
    else:
        assert ends[0][1]["message"].startswith("rolled back to ota_0: the firmware written to ota_1 ")
        assert last["version"] == "1.0.0"
    again = board.power_on("boot")
    assert again["version"] == last["version"], "the firmware that reported is the one that stays"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Jobs that fail while ota_0 keeps running: the document's changes, the board's partitions, the FAILED message,
# and whether the image reaches the other partition before the failure shows.
SMALL = 16 * 1024
FAILURES: dict[str, tuple[dict[str, Any], str, str, bool]] = {
    "bad hash": ({"sha256": "0" * 64}, "", "SHA-256 mismatch: expected " + "0" * 64 + ", got ", True),
    "short image": ({"size": SMALL + 1000}, "", "short image: got %d of %d bytes" % (SMALL, SMALL + 1000), True),
    "larger than the partition": (
        {"size": 70_000}, "ota_0:0x10000,ota_1:0x10000", "an image of 70000 bytes does not fit ota_1 (65536 bytes)",
        False),
    "larger than the job says": (
        {"size": SMALL - 4096}, "", "%d bytes is more than the limit of %d" % (SMALL, SMALL - 4096), False),
    "unreachable URL": ({"url": "http://127.0.0.1:%d/app.bin"}, "", "cannot reach 127.0.0.1:%d: ", False),
    "not an app image": ({"image": b"\x00"}, "", "not an ESP32 app image: it starts with 0x00, not 0xe9", False),
    "no sha256": ({"sha256": None}, "", "ota needs a url and a sha256 of 64 hex digits", False),
    "no OTA partitions": ({}, "factory:0x1f0000", "the partition table has no OTA app partition", False),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_failure_leaves_the_running_firmware_untouched(case, board, service, thing_name, tmp_path):
    changes, partitions, message, writes = FAILURES[case]
    changes = dict(changes)
    image = firmware_image("2.0.0", SMALL)
    if "image" in changes:
        image = changes.pop("image") + image[1:]
    if "url" in changes:
        port = closed_port()
        changes["url"] %= port
        message %= port
    running = board.flash / "ota_0.bin"
    if partitions:
        board.env["ESP32_PARTITIONS"] = partitions
        running = running.rename(board.flash / (partitions.split(":")[0] + ".bin"))
    before = running.read_bytes()
    job_id = put_job(service, thing_name, tmp_path, image, **changes)
    done = board.power_on()
    assert how_it_ended(done) == "done"
    assert done["states"] == ["idle", "running", "failed"]
    [(status, details)] = terminal(service, thing_name, job_id)
    assert status == "FAILED" and details["message"].startswith(message), details
    assert running.read_bytes() == before
    assert (board.flash / "ota_1.bin").exists() == writes
    if running.name == "ota_0.bin":
        assert board.otadata() == FACTORY_OTADATA, "the boot partition was not changed"
    else:
        assert not (board.flash / "otadata.json").exists()


def cancel_when(service: JobsService, job_id: str, test: Any) -> list[dict[str, Any]]:
    """Cancel the job with force as the service receives the first progress update that passes test."""
    seen: list[dict[str, Any]] = []

    def cancel(thing: str, api: str, topic: str, request: dict[str, Any], publish: Any) -> None:
        details = request.get("statusDetails") or {}
        if api == "update" and not seen and test(details):
            seen.append(details)
            service.cancel_job(job_id, force=True)

    service.interceptor = cancel
    return seen


def test_cancel_while_writing_stops_before_set_boot(board, service, thing_name, tmp_path):
    job_id = put_job(service, thing_name, tmp_path, firmware_image("2.0.0", 10 * 4096))
    seen = cancel_when(service, job_id, lambda details: details.get("progress") == "30%")
    done = board.power_on()
    assert seen and how_it_ended(done) == "done"
    assert done["states"] == ["idle", "running", "canceled"]
    assert service.status(thing_name, job_id) == "CANCELED"
    assert board.otadata() == FACTORY_OTADATA
    assert board.power_on("boot")["boot"] == "ota_0"


def test_cancel_after_the_commit_is_not_honoured(board, service, thing_name, tmp_path):
    # Canceled with force as set_boot() is due: the board boots the new firmware, confirms it and keeps it.
    job_id = put_job(service, thing_name, tmp_path, firmware_image("2.0.0", 10 * 4096))
    seen = cancel_when(service, job_id, lambda details: details.get("checkpoint") == "boot:ota_1")
    boots, last = board.until_done()
    assert seen and boots == ["ota_0:reset", "ota_1:done"]
    assert last["states"] == ["idle", "running", "canceled"], "its SUCCEEDED was refused: the job stays canceled"
    assert service.status(thing_name, job_id) == "CANCELED"
    assert board.otadata()[1] == {"seq": 2, "state": "VALID"}
    assert sorted(p.name for p in board.state.iterdir()) == []
    again = board.power_on("boot")
    assert (again["boot"], again["version"]) == ("ota_1", "2.0.0")


def test_cancel_while_the_board_is_off_mid_download_drops_the_update(board, service, thing_name, tmp_path):
    job_id = put_job(service, thing_name, tmp_path, firmware_image("2.0.0", 10 * 4096))
    assert how_it_ended(board.power_on(cut="after:writeblocks:3")) == "cut"
    service.cancel_job(job_id, force=True)
    done = board.power_on("step")
    assert done["boot"] == "ota_0" and done["outcome"] is None and done["states"] == ["idle"]
    assert [status for status, _ in terminal(service, thing_name, job_id)] == ["CANCELED"]
    assert board.otadata() == FACTORY_OTADATA


def test_nothing_of_ota_is_loaded_until_an_ota_job_runs(runtime, tmp_path):
    script = tmp_path / "imports.py"
    script.write_text("import json, sys\nimport iotjobs, iotjobs.runner, iotjobs.handlers\n"
                      "loaded = [m for m in ('iotjobs.ota', 'esp32') if m in sys.modules]\n"
                      "print('RESULT loaded', json.dumps(loaded))\n")
    done = run(runtime, script)
    assert done.returncode == 0 and done["loaded"] == [], done.stdout + done.stderr


# ---- iotjobs-soak --ota: updates among the soak's jobs, power cuts at any point of them --------------------------


@pytest.mark.timeout(300)
def test_short_soak_with_updates_and_power_cuts_ends_each_update_once_as_planned(runtime):
    # Seed 8: updates planned to succeed, to fail their hash and to fail their self-test; two of the four cuts
    # aimed at an update under way.
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "iotjobs-soak"), "--jobs", "6", "--ota", "4", "--runtime",
                           runtime, "--seed", "8", "--fault-every", "0.3", "0.9", "--power-cuts", "4"],
                          capture_output=True, text=True, timeout=280)
    summary = done.stdout.strip().splitlines()[-1]
    counts = {key: int(value) for key, value in (part.split("=") for part in summary.removeprefix("soak: ").split())}
    assert done.returncode == 0, done.stdout + done.stderr
    assert counts["ota"] == 4 and counts["succeeded"] + counts["failed"] == 6, summary
    assert counts["failed"] == counts["planned_failed"] + counts["cut_rollbacks"], summary
    assert (counts["lost"], counts["doubled"], counts["loop_deaths"], counts["wrong_firmware"]) == (0, 0, 0, 0), \
        done.stdout
    assert counts["power_cuts"] == 4 and counts["reboots"] >= 1, summary  # updates rebooted the board
    cuts = next(line for line in done.stdout.splitlines() if line.startswith("soak: power cuts"))
    assert [cut.split(":")[1] for cut in cuts.split("): ", 1)[1].split(";")[0].split()] == \
        ["random", "ota", "ota", "write"], cuts


def soak_updates(*kinds: str) -> list[tuple[str, Update | None]]:
    """A soak plan: a plain job after each update of these kinds, versions 2.N.0."""
    plan: list[tuple[str, Update | None]] = []
    for n, kind in enumerate(kinds):
        plan += [("update-%d" % n, Update(kind, "2.%d.0" % n)), ("job-%d" % n, None)]
    return plan


ROLLED_BACK = ("FAILED", {"error": "OtaError", "message": "rolled back to ota_0: the firmware written to ota_1 failed "
                                                            "its self-test or was reset before it passed"})


def test_soak_excuses_a_rolled_back_update_only_when_a_cut_caught_it_unconfirmed():
    plan = soak_updates("update", "update")
    outcomes = {"update-0": ROLLED_BACK, "update-1": ("SUCCEEDED", {"version": "2.1.0", "partition": "ota_1"})}
    ran_on = {"update-0": ["1.0.0", "2.0.0", "1.0.0"], "job-0": ["1.0.0"], "update-1": ["1.0.0", "2.1.0"],
              "job-1": ["2.1.0"]}
    expected, problems, wrong = firmware_checks(plan, outcomes, ran_on, "2.1.0", {"2.0.0"})
    assert expected == {"update-0": "FAILED", "update-1": "SUCCEEDED"}
    assert problems == {"update-0": [], "update-1": []} and wrong == []
    # Without that cut the rollback is not the plan's: the soak expects SUCCEEDED (and so counts it lost).
    expected, _, _ = firmware_checks(plan, outcomes, ran_on, "2.1.0", set())
    assert expected["update-0"] == "SUCCEEDED"


def test_soak_sees_an_update_failed_for_another_reason_and_firmware_that_is_not_the_plan():
    plan = soak_updates("bad hash", "update")
    outcomes = {"update-0": ROLLED_BACK, "update-1": ("SUCCEEDED", {"version": "2.1.0", "partition": "ota_1"})}
    # update-0 should have been refused for its hash; the jobs after update-1 ran on the firmware before it.
    ran_on = {"update-0": ["1.0.0", "2.0.0", "1.0.0"], "job-0": ["1.0.0"], "update-1": ["1.0.0", "2.1.0"],
              "job-1": ["1.0.0"]}
    _, problems, wrong = firmware_checks(plan, outcomes, ran_on, "1.0.0", set())
    assert problems["update-0"] == ["FAILED for another reason: " + ROLLED_BACK[1]["message"]]
    assert wrong == ["update-0: an update from 1.0.0 to 2.0.0 ran on ['1.0.0', '2.0.0', '1.0.0']",
                     "job-1: its handler ran on ['1.0.0'], not 2.1.0",
                     "the device ended on firmware 1.0.0, not 2.1.0"]
