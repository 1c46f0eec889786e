"""The test esp32 module keeps esp32.Partition's documented behaviour and the bootloader's rollback, on each runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device import PORTABLE, RUNTIMES, Run, run
from test_ota import firmware_image

SCRIPT = PORTABLE / "esp32_cases.py"


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def flash(tmp_path: Path) -> Path:
    (tmp_path / "ota_0.bin").write_bytes(firmware_image("1.0.0", 5 * 4096))
    return tmp_path


def power_on(runtime: str, flash: Path, *args: str) -> Run:
    done = run(runtime, SCRIPT, *args, env={"ESP32_FLASH": str(flash)})
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_partition_cases(runtime, flash):
    done = power_on(runtime, flash, "cases")
    assert "FAIL" not in done.stdout and "DONE 9 0" in done.stdout, done.stdout


def test_bootloader_boots_a_new_app_once_and_rolls_back_unless_it_was_confirmed(runtime, flash):
    def otadata() -> list[dict[str, int | str] | None]:
        return list(json.loads((flash / "otadata.json").read_text()))

    first = power_on(runtime, flash, "report", "stage", "report")
    # Before the reset, the app that runs is unchanged; the one to boot is the new one.
    assert first.stdout.count("RESULT running") == 2 and first["running"] == "ota_0" and first["boot"] == "ota_1"
    assert otadata() == [{"seq": 1, "state": "VALID"}, {"seq": 2, "state": "NEW"}]

    trial = power_on(runtime, flash, "report")
    assert trial["running"] == "ota_1"
    assert otadata()[1] == {"seq": 2, "state": "PENDING_VERIFY"}

    rolled_back = power_on(runtime, flash, "report")
    assert (rolled_back["running"], rolled_back["boot"]) == ("ota_0", "ota_0")
    assert otadata()[1] == {"seq": 2, "state": "ABORTED"}

    power_on(runtime, flash, "stage")
    confirmed = power_on(runtime, flash, "report", "confirm")
    assert confirmed["running"] == "ota_1"
    assert otadata()[1] == {"seq": 2, "state": "VALID"}
    assert power_on(runtime, flash, "report")["running"] == "ota_1"
