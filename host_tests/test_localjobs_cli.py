"""`iotjobs-local serve` as a tool people keep running: the same endpoints each start, one-line errors, what it does."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from conftest import BOTO_ARGS
from localjobs.broker import free_port
from localjobs.cli import build_parser
from test_localjobs_mqtt import Device

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "iotjobs-local"
WAIT = 15.0
ARN = "arn:aws:iot:us-east-1:123456789012:thing/"
TIME = r"[0-9]{2}:[0-9]{2}:[0-9]{2} "


class Served:
    """One `iotjobs-local serve` process: its ready line, then every line it prints, as they come."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([str(CLI), "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        assert self.process.stdout is not None
        self.ready = self.process.stdout.readline().strip()
        assert self.ready.startswith("ready "), self.ready + self.stop_and_read_stderr()
        fields = dict(part.split("=", 1) for part in self.ready.split()[1:])
        self.mqtt_host, _, port = fields["mqtt"].rpartition(":")
        self.mqtt_port = int(port)
        self.http_url = "http://" + fields["http"]
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self, pattern: str) -> str:
        """The next printed line that matches pattern (after the time of day), skipping others."""
        while True:
            line = self.lines.get(timeout=WAIT)
            if re.fullmatch(TIME + pattern, line):
                return line

    def iot(self, service: str = "iot") -> Any:
        return boto3.client(service, endpoint_url=self.http_url, **BOTO_ARGS)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def stop_and_read_stderr(self) -> str:
        self.stop()
        return self.process.stderr.read() if self.process.stderr else ""


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        s.stop()


def test_the_default_endpoints_are_the_ones_the_readme_gives() -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.mqtt, args.http, args.broker) == (("127.0.0.1", 1883), ("127.0.0.1", 8089), None)
    readme = (ROOT / "README.md").read_text()
    assert "127.0.0.1:1883" in readme and "127.0.0.1:8089" in readme


def test_a_restart_on_the_same_ports_is_invisible_to_devices_and_shells(served: list[Served], tmp_path: Path,
                                                                          thing_name: str) -> None:
    # Explicit ports stand in for the defaults, which a service already running here may hold.
    args = ("--mqtt", "127.0.0.1:%d" % free_port(), "--http", "127.0.0.1:%d" % free_port(),
            "--db", str(tmp_path / "jobs.db"), "--quiet")
    first = Served(*args)
    served.append(first)
    iot = first.iot()
    iot.create_thing(thingName=thing_name)
    iot.create_job(jobId="job-1", targets=[ARN + thing_name], document='{"operation": "x"}')
    assert first.stop() == 0

    second = Served(*args)
    served.append(second)
    assert second.ready == first.ready
    # A device configured for the first run reaches the second, which still has its job.
    device = Device(second.mqtt_host, second.mqtt_port, thing_name)
    try:
        outcome, reply = device.request("start-next")
    finally:
        device.close()
    assert outcome == "accepted" and reply["execution"]["jobId"] == "job-1"
    # So does a client made for the first run's HTTP endpoint.
    status = iot.describe_job_execution(jobId="job-1", thingName=thing_name)["execution"]["status"]
    assert status == "IN_PROGRESS"


@pytest.mark.parametrize("option", ["--mqtt", "--http"])
def test_a_port_already_taken_is_one_line_naming_it_and_the_option(option: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = "127.0.0.1:%d" % holder.getsockname()[1]
        ports = {"--mqtt": "127.0.0.1:0", "--http": "127.0.0.1:0", option: taken}
        done = subprocess.run([str(CLI), "serve", "--db", ":memory:", *[x for kv in ports.items() for x in kv]],
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == ("iotjobs-local: %s is already in use (another iotjobs-local?): choose another with %s "
                           "HOST:PORT\n" % (taken, option))


def test_serve_prints_a_line_per_device_request_and_state_change(served: list[Served], thing_name: str) -> None:
    s = Served("--db", ":memory:", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0")
    served.append(s)
    iot, data = s.iot(), s.iot("iot-jobs-data")
    iot.create_thing(thingName=thing_name)
    iot.create_job(jobId="job-1", targets=[ARN + thing_name], document='{"operation": "x"}')
    t = re.escape(thing_name)
    s.line(t + r" job-1 QUEUED v1 \(created\)")
    device = Device(s.mqtt_host, s.mqtt_port, thing_name)
    try:
        device.request("start-next")
        s.line(t + r" start-next -> job-1 IN_PROGRESS v2")
        device.request("job-1/update", {"status": "SUCCEEDED"})
        s.line(t + r" update job-1 -> SUCCEEDED v3")
        device.request("job-1/update", {"status": "FAILED"})
        s.line(t + r" update job-1 -> rejected InvalidStateTransition: .*")
    finally:
        device.close()
    iot.create_job(jobId="job-2", targets=[ARN + thing_name], document='{"operation": "x"}')
    s.line(t + r" job-2 QUEUED v1 \(created\)")
    # The device API over HTTP is told the same way.
    data.get_pending_job_executions(thingName=thing_name)
    s.line(t + r" get-pending -> 0 in progress, 1 queued")
    iot.cancel_job(jobId="job-2")
    s.line(t + r" job-2 CANCELED v2 \(canceled\)")


def test_quiet_prints_no_activity_line(served: list[Served], thing_name: str) -> None:
    s = Served("--db", ":memory:", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0", "--quiet")
    served.append(s)
    iot = s.iot()
    iot.create_thing(thingName=thing_name)
    iot.create_job(jobId="job-1", targets=[ARN + thing_name], document='{"operation": "x"}')
    device = Device(s.mqtt_host, s.mqtt_port, thing_name)
    try:
        assert device.request("start-next")[0] == "accepted"
    finally:
        device.close()
    assert s.stop() == 0
    s.reader.join(WAIT)
    assert not s.reader.is_alive()
    # What it prints at start-up (the console's URL), and nothing after it.
    printed = []
    while not s.lines.empty():
        printed.append(s.lines.get_nowait())
    assert [line.split()[0] for line in printed] == ["console"], printed
