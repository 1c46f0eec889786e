"""The ESP32 boards' main.py on the unix port, with a scripted WiFi and NTP: retries, their bound, then a real job."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import deploy
from localjobs.broker import Mosquitto
from localjobs.service import JobsService

MICROPYTHON = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "micropython"

# Stand-ins for the ESP32's network and ntptime: the station joins on connect() number JOINS, NTP answers after
# FAILS failures. The unix port has neither module, so these are what main.py imports.
FAKE_NETWORK = '''
STA_IF = 0
class WLAN:
    def __init__(self, interface):
        self.connects = 0
        self.up = False
    def active(self, *flag):
        return True
    def connect(self, ssid=None, password=None):
        self.connects += 1
        print("fake: wlan.connect", ssid, self.connects)
        self.up = self.connects >= %(joins)d
    def isconnected(self):
        return self.up
    def disconnect(self):
        self.up = False
    def status(self):
        return 1010 if self.up else 201
    def ifconfig(self):
        return ("192.168.1.50", "255.255.255.0", "192.168.1.1", "192.168.1.1")
'''
FAKE_NTPTIME = '''
host = "pool.ntp.org"
calls = 0
def settime():
    global calls
    calls += 1
    print("fake: ntp settime", host, calls)
    if calls <= %(fails)d:
        raise OSError(110)
'''


def board_dir(tmp_path: Path, joins: int, ntp_fails: int, **config: Any) -> tuple[Path, dict[str, str]]:
    items, _ = deploy.stage("esp32", deploy.load_board("esp32"), None, None)
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    (fakes / "network.py").write_text(FAKE_NETWORK % {"joins": joins})
    (fakes / "ntptime.py").write_text(FAKE_NTPTIME % {"fails": ntp_fails})
    board = tmp_path / "board"
    board.mkdir()
    (board / "main.py").write_bytes((deploy.BOARDS / "esp32" / "main.py").read_bytes())
    # No LED: the unix port's machine module has no Pin or Timer.
    (board / "board.json").write_text(json.dumps(dict(deploy.load_board("esp32"), led=None)))
    (board / "config.json").write_text(json.dumps(config))
    env = dict(os.environ, MICROPYPATH="%s:%s:.frozen" % (fakes, deploy.STAGING / "esp32" / "lib"))
    return board, env


def lines_in_order(output: str, *expected: str) -> None:
    at = 0
    for text in expected:
        found = output.find(text, at)
        assert found >= 0, "%r not found after position %d in:\n%s" % (text, at, output)
        at = found + len(text)


def test_esp32_main_retries_wifi_and_ntp_then_runs_a_config_job(
        tmp_path: Path, mosquitto: Mosquitto, jobs_service: JobsService, thing_name: str,
        create_job: Callable[..., dict[str, Any]]) -> None:
    wifi = {"ssid": "lab", "password": "secret", "attempt_ms": 300}
    board, env = board_dir(tmp_path, joins=2, ntp_fails=1, wifi=wifi, endpoint=mosquitto.host,
                           port=mosquitto.port, thing=thing_name, max_jobs=1, ntp_host="ntp.example")
    create_job(jobs_service, "config-1", thing_name, {"operation": "config", "settings": {"describe_every_ms": 30000}})
    done = subprocess.run([str(MICROPYTHON), "-X", "heapsize=160k", "main.py"], cwd=board, env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    lines_in_order(done.stdout, "board: status wifi", "WiFi 'lab': attempt 1/5 failed", "WiFi 'lab' up: 192.168.1.50",
                   "NTP ntp.example: attempt 1/5 failed", "clock set from ntp.example",
                   "board: connected to", "board: status running", "board: status succeeded", "board: done: 1 job(s)")
    assert jobs_service.status(thing_name, "config-1") == "SUCCEEDED"
    # The job's settings go apart from the deploy's config.json, which a redeploy replaces.
    assert json.loads((board / "settings.json").read_text()) == {"describe_every_ms": 30000}
    assert "describe_every_ms" not in json.loads((board / "config.json").read_text())


def test_esp32_main_gives_up_on_wifi_after_its_bound_and_resets(tmp_path: Path) -> None:
    wifi = {"ssid": "lab", "password": "secret", "attempts": 2, "attempt_ms": 100}
    board, env = board_dir(tmp_path, joins=99, ntp_fails=0, wifi=wifi, endpoint="127.0.0.1", port=1, thing="t",
                           retry_after_ms=100)
    done = subprocess.run([str(MICROPYTHON), "-X", "heapsize=160k", "main.py"], cwd=board, env=env,
                          capture_output=True, text=True, timeout=30)
    lines_in_order(done.stdout, "WiFi 'lab': attempt 1/2 failed", "WiFi 'lab': attempt 2/2 failed",
                   "board: status error", "start-up failed: WiFi 'lab' did not come up after 2 attempts")
    assert "fake: ntp" not in done.stdout
    # The unix port has no machine.reset(): reaching it is where an ESP32 would restart.
    assert "module 'machine' has no attribute 'reset'" in done.stdout + done.stderr
