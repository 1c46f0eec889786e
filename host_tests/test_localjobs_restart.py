"""`iotjobs-local serve --db`: killed with SIGKILL in the middle of a rollout, restarted, nothing is lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest

from localjobs.broker import Mosquitto

CLI = Path(sys.executable).parent / "iotjobs-local"
BOTO_ARGS: dict[str, Any] = {"region_name": "us-east-1", "aws_access_key_id": "a", "aws_secret_access_key": "b"}
ARN = "arn:aws:iot:us-east-1:123456789012:thing/"
T = TypeVar("T")


class Served:
    """One `iotjobs-local serve` process and boto3 clients for its HTTP port."""

    def __init__(self, broker: Mosquitto, db: Path, *extra: str) -> None:
        self.process = subprocess.Popen(
            [str(CLI), "serve", "--broker", broker.address, "--http", "127.0.0.1:0", "--quiet", "--db", str(db),
             *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line.startswith("ready mqtt="), line + (self.process.stderr.read() if self.process.stderr else "")
        url = "http://" + line.split("http=")[1]
        self.iot = boto3.client("iot", endpoint_url=url, **BOTO_ARGS)
        self.data = boto3.client("iot-jobs-data", endpoint_url=url, **BOTO_ARGS)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


@pytest.fixture
def served(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*extra: str) -> Served:
        if not mosquitto.running:
            mosquitto.start()
        started.append(Served(mosquitto, tmp_path / "state" / "jobs.db", *extra))
        return started[-1]

    yield start
    for one in started:
        one.stop()


def eventually(probe: Callable[[], T], timeout: float = 5.0) -> T:
    """Poll until probe() is truthy: the service's ticker runs about once a second on its own clock."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def executions(served: Served, job_id: str) -> dict[str, tuple[str, int]]:
    summaries = served.iot.list_job_executions_for_job(jobId=job_id)["executionSummaries"]
    return {
        s["thingArn"][len(ARN) :]: (s["jobExecutionSummary"]["status"], s["jobExecutionSummary"]["executionNumber"])
        for s in summaries
    }


def test_kill_nine_mid_rollout_loses_nothing(served: Callable[..., Served], thing_name: str) -> None:
    first = served()
    things = [f"{thing_name}-{n}" for n in range(5)]
    for name in things:
        first.iot.create_thing(thingName=name)
    first.iot.create_thing_group(thingGroupName=f"{thing_name}-g")
    first.iot.create_job(
        jobId="rollout",
        targets=[ARN + name for name in things],
        document=json.dumps({"operation": "update"}),
        jobExecutionsRolloutConfig={"maximumPerMinute": 2},
        timeoutConfig={"inProgressTimeoutInMinutes": 30},
    )
    assert executions(first, "rollout") == {things[0]: ("QUEUED", 1), things[1]: ("QUEUED", 1)}
    started = first.data.start_next_pending_job_execution(
        thingName=things[0], statusDetails={"step": "download"}, stepTimeoutInMinutes=10
    )["execution"]
    first.data.update_job_execution(
        thingName=things[0], jobId="rollout", status="IN_PROGRESS", statusDetails={"step": "flash"}, expectedVersion=2
    )
    before = first.iot.describe_job_execution(jobId="rollout", thingName=things[0])["execution"]
    assert before["versionNumber"] == 3 and started["versionNumber"] == 2
    first.kill()

    # A minute later (by the service's clock) the rollout's next window is due.
    second = served("--time-offset", "61")
    after = second.iot.describe_job_execution(jobId="rollout", thingName=things[0])["execution"]
    assert after["status"] == "IN_PROGRESS" and after["statusDetails"] == {"detailsMap": {"step": "flash"}}
    assert after["versionNumber"] == 3 and after["executionNumber"] == 1
    # The step timer survived: 10 minutes from the update, less the minute that passed.
    assert 600 - 61 - 5 <= after["approximateSecondsBeforeTimedOut"] <= 600 - 61
    job = second.iot.describe_job(jobId="rollout")["job"]
    assert job["jobExecutionsRolloutConfig"] == {"maximumPerMinute": 2}
    assert job["timeoutConfig"] == {"inProgressTimeoutInMinutes": 30}
    assert eventually(lambda: len(executions(second, "rollout")) == 4)
    assert executions(second, "rollout")[things[2]] == ("QUEUED", 1)
    assert [t["thingName"] for t in second.iot.list_things()["things"]] == things
    assert second.iot.describe_thing_group(thingGroupName=f"{thing_name}-g")["thingGroupName"] == f"{thing_name}-g"

    # The device carries on where it was, with the version it knew.
    reply = second.data.update_job_execution(
        thingName=things[0], jobId="rollout", status="SUCCEEDED", expectedVersion=3, includeJobExecutionState=True
    )
    assert reply["executionState"]["versionNumber"] == 4
    assert second.stop() == 0

    third = served()
    assert executions(third, "rollout")[things[0]] == ("SUCCEEDED", 1)
    assert third.iot.describe_job(jobId="rollout")["job"]["jobProcessDetails"]["numberOfSucceededThings"] == 1


def test_memory_db_keeps_nothing(served: Callable[..., Served], thing_name: str) -> None:
    first = served("--db", ":memory:")
    first.iot.create_thing(thingName=thing_name)
    first.kill()
    second = served("--db", ":memory:")
    assert second.iot.list_things()["things"] == []


def test_a_service_stopped_and_started_again_in_process_keeps_its_ports_and_its_database(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # The soak's service fault stops and starts the same JobsService: its REST API and its file must come back too.
    from localjobs.model import thing_arn
    from localjobs.service import JobsService

    db = tmp_path / "jobs.db"
    service = JobsService(mosquitto.host, mosquitto.port, http=("127.0.0.1", 0), db=db).start()
    try:
        url = service.http_url
        iot = boto3.client("iot", endpoint_url=url, **BOTO_ARGS)
        iot.create_thing(thingName="restarted")
        service.stop()
        service.start()
        assert service.http_url == url
        iot.create_job(jobId="after-restart", targets=[thing_arn("restarted")], document='{"operation": "x"}')
        assert iot.describe_job(jobId="after-restart")["job"]["status"] == "IN_PROGRESS"
    finally:
        service.stop()
    reopened = JobsService(mosquitto.host, mosquitto.port, db=db)
    try:
        assert [j["jobId"] for j in reopened.list_jobs()] == ["after-restart"]
    finally:
        reopened.stop()
