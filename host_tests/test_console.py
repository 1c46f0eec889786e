"""The console: its event streams, and the page in a real headless Chromium while virtual boards run jobs.

The page is driven with Playwright against Debian's /usr/bin/chromium (tools/browser.py). Every wait is
Playwright's `expect` (it retries until the page shows the state, within the bound), never a sleep.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from browser import launch
from device import PORTABLE, ROOT, RUNTIMES, finish, start
from localjobs.changefeed import ChangeFeed
from localjobs.cli import build_parser
from localjobs.clock import ManualClock
from localjobs.model import thing_arn
from localjobs.service import JobsService
from test_runner import RUNNER_HEAP

ARN = "arn:aws:iot:us-east-1:123456789012:"
SCRIPT = PORTABLE / "runner_scenarios.py"
# The console shows what a board does; a board is a MicroPython port, whichever the suite has.
BOARDS = [r for r in RUNTIMES if r != "cpython"]
SCREENSHOT = ROOT / "build" / "console" / "job-page.png"
WAIT_MS = 30_000  # generous: two cores shared by the whole suite and a browser
CLI = Path(sys.executable).with_name("iotjobs-local")


@pytest.fixture
def thing_name() -> str:
    # Short, as in test_runner: umqtt.simple cannot subscribe to topics built from much longer names.
    return "console-" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = launch(playwright)
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser, jobs_http: JobsService) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    opened = context.new_page()
    errors: list[str] = []
    elsewhere: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    # The console loads nothing from anywhere but the service (people use it offline).
    origin = jobs_http.http_url + "/"
    opened.on("request", lambda r: None if r.url.startswith((origin, "data:")) else elsewhere.append(r.url))
    yield opened
    context.close()
    assert not errors, errors
    assert not elsewhere, elsewhere


def console(service: JobsService, route: str = "") -> str:
    return f"{service.http_url}/console/{route}"


def opened(page: Page, service: JobsService, route: str) -> Page:
    page.goto(console(service, route))
    # The form has no stream; every other view is ready once its snapshot came.
    expect(page.locator("#create-job" if route == "#/create" else "#live.state-live")).to_be_visible()
    # Gone after any reload: the tests show that the page changed by itself.
    page.evaluate("window.notReloaded = true")
    return page


def not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.notReloaded === true"))


def execution_row(page: Page, thing: str) -> Any:
    return page.locator(f'#executions tr[data-thing="{thing}"]')


def board(runtime: str, scenario: str, service: JobsService, thing: str, state: Path) -> subprocess.Popen[str]:
    broker = service.host, str(service.port)
    return start(runtime, SCRIPT, scenario, *broker, thing, str(state), heapsize=RUNNER_HEAP)


# ---- the event streams, read as a browser would -------------------------------------------------


class Events:
    """A /console/events stream read with http.client: (event, data) pairs, waiting at most `timeout` each."""

    def __init__(self, service: JobsService, query: str, timeout: float = 30) -> None:
        url = urlsplit(service.http_url)
        self.connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
        self.connection.request("GET", "/console/events?" + query)
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type") == "text/event-stream"

    def next(self) -> tuple[str, dict[str, Any]]:
        event, data = "", ""
        while True:
            line = self.response.readline().decode()
            assert line, "the stream ended"
            if line == "\n" and data:
                return event, json.loads(data)
            if line.startswith("event: "):
                event = line[7:].strip()
            elif line.startswith("data: "):
                data = line[6:].strip()

    def close(self) -> None:
        self.connection.close()


def group_job(service: JobsService, job_id: str, things: int) -> list[str]:
    """A job for `things` new things, through a thing group (a job names at most 100 targets)."""
    names = [f"{job_id}-{i:05d}" for i in range(things)]
    service.create_thing_group(job_id + "-group")
    for name in names:
        service.create_thing(name)
        service.add_thing_to_thing_group(job_id + "-group", name)
    service.create_job(job_id, [f"{ARN}thinggroup/{job_id}-group"], {"operation": "greet"})
    return names


def test_a_job_stream_sends_a_snapshot_then_only_what_changed(jobs_http: JobsService, iot_data: Any) -> None:
    names = group_job(jobs_http, "wide", 300)
    events = Events(jobs_http, "view=job&id=wide")
    try:
        kind, snapshot = events.next()
        assert kind == "snapshot" and len(snapshot["executions"]) == 300
        assert json.loads(snapshot["document"]) == {"operation": "greet"}
        iot_data.start_next_pending_job_execution(thingName=names[7], statusDetails={"step": "one"})
        kind, change = events.next()
        assert kind == "change"
        assert [(r["thingName"], r["status"], r["statusDetails"]) for r in change["executions"]] == [
            (names[7], "IN_PROGRESS", {"step": "one"})]
        assert change["job"]["jobProcessDetails"]["numberOfInProgressThings"] == 1 and change["gone"] == []
        jobs_http.delete_job_execution("wide", names[7], 1, force=True)
        kind, change = events.next()
        assert change["executions"] == [] and change["gone"] == [[names[7], 1]]
    finally:
        events.close()


def test_a_jobs_stream_follows_jobs_not_executions(jobs_http: JobsService) -> None:
    group_job(jobs_http, "many", 300)
    events = Events(jobs_http, "view=jobs")
    try:
        kind, snapshot = events.next()
        assert [j["jobId"] for j in snapshot["jobs"]] == ["many"]
        jobs_http.cancel_job("many", force=True)  # 300 executions change in one call
        kind, change = events.next()
        assert kind == "change" and [j["jobId"] for j in change["jobs"]] == ["many"]
        assert change["jobs"][0]["status"] == "CANCELED"
        assert change["jobs"][0]["jobProcessDetails"]["numberOfCanceledThings"] == 300
    finally:
        events.close()


def test_a_thing_stream_and_a_stream_of_nothing(jobs_http: JobsService, thing_name: str) -> None:
    jobs_http.create_job("t1", [thing_arn(thing_name)], {"operation": "greet"})
    events = Events(jobs_http, "view=thing&id=" + thing_name)
    try:
        kind, snapshot = events.next()
        assert snapshot["thing"]["thingName"] == thing_name
        assert [(r["jobId"], r["status"]) for r in snapshot["executions"]] == [("t1", "QUEUED")]
        jobs_http.create_thing("someone-else")
        jobs_http.create_job("t2", [thing_arn("someone-else")], {"operation": "greet"})  # not this thing's: no event
        jobs_http.cancel_job("t1")
        kind, change = events.next()
        assert [(r["jobId"], r["status"]) for r in change["executions"]] == [("t1", "CANCELED")]
    finally:
        events.close()
    connection = http.client.HTTPConnection(urlsplit(jobs_http.http_url).netloc, timeout=10)
    connection.request("GET", "/console/events?view=job")
    assert connection.getresponse().status == 400


def test_the_feed_coalesces_and_ends_its_readers_when_closed() -> None:
    feed = ChangeFeed()
    feed.publish([("job", "ignored")])  # nobody reads: nothing is kept
    subscription = feed.subscribe(lambda change: change[1] if change[0] == "job" else None)
    feed.publish([("job", "a"), ("execution", json.dumps(["a", "t", 1])), ("meta", "model")])
    feed.publish([("job", "b"), ("job", "a")])
    assert subscription.take(0) == ["a", "b"]
    assert subscription.take(0) == []
    feed.close()
    assert subscription.take(10) is None


# ---- the page ------------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", BOARDS)
def test_the_job_page_follows_a_board_through_its_job(
    runtime: str, jobs_http: JobsService, page: Page, thing_name: str, tmp_path: Path
) -> None:
    jobs_http.create_job("flash-1", [thing_arn(thing_name)], {"operation": "flash"})
    opened(page, jobs_http, "#/job/flash-1")
    row = execution_row(page, thing_name)
    expect(row.locator(".status")).to_have_text("QUEUED")
    device = board(runtime, "gated", jobs_http, thing_name, tmp_path)
    try:
        expect(row.locator(".status")).to_have_text("IN_PROGRESS")
        expect(row.locator(".details")).to_contain_text("step=flashing")
        expect(row.locator(".details")).to_contain_text("percent=40")
        expect(page.locator("#job-bar .seg[data-status=IN_PROGRESS]")).to_have_attribute("data-count", "1")
    finally:
        done = finish(device, tmp_path / "go")
    assert done["finished"] == 1
    expect(row.locator(".status")).to_have_text("SUCCEEDED")
    expect(row.locator(".details")).to_contain_text("result=flashed")
    expect(page.locator("#job-status")).to_have_text("COMPLETED")
    expect(page.locator("#job-chart svg")).to_have_attribute("data-finished", "1")
    assert not_reloaded(page)


@pytest.mark.parametrize("runtime", BOARDS)
def test_a_job_created_on_the_page_is_run_by_a_board(
    runtime: str, jobs_http: JobsService, page: Page, thing_name: str, tmp_path: Path
) -> None:
    device = board(runtime, "succeed", jobs_http, thing_name, tmp_path)
    try:
        assert device.stdout is not None and device.stdout.readline().strip() == "READY"
        opened(page, jobs_http, "#/create")
        page.fill("#new-job-id", "from-the-page")
        page.fill("#new-job-description", "made in the console")
        page.fill("#new-job-things", thing_name)
        page.fill("#new-job-document", '{"operation": "greet", "checkpoint": 1}')
        page.locator("details summary").click()
        page.fill("#new-job-timeout", '{"inProgressTimeoutInMinutes": 30}')
        page.click("#create-submit")
        expect(page).to_have_url(console(jobs_http, "#/job/from-the-page"))
        expect(execution_row(page, thing_name).locator(".status")).to_have_text("SUCCEEDED")
    finally:
        done = finish(device)
    assert done["finished"] == 1
    job = jobs_http.describe_job("from-the-page")
    assert job["targets"] == [f"{ARN}thing/{thing_name}"] and job["description"] == "made in the console"
    assert job["timeoutConfig"] == {"inProgressTimeoutInMinutes": 30}
    assert json.loads(jobs_http.get_job_document("from-the-page")) == {"operation": "greet", "checkpoint": 1}
    expect(page.locator("#config-timeout")).to_contain_text('"inProgressTimeoutInMinutes": 30')
    assert not_reloaded(page)


@pytest.mark.parametrize("runtime", BOARDS)
def test_a_cancel_on_the_page_reaches_the_board_as_a_notification(
    runtime: str, jobs_http: JobsService, page: Page, thing_name: str, tmp_path: Path
) -> None:
    jobs_http.create_job("job-long", [thing_arn(thing_name)], {"operation": "long"})
    opened(page, jobs_http, "#/job/job-long")
    device = board(runtime, "cancel_by_notification", jobs_http, thing_name, tmp_path)
    try:
        row = execution_row(page, thing_name)
        expect(row.locator(".details")).to_contain_text("state=working")
        page.click("#cancel-job")
        page.check("#confirm-force")
        page.fill("#confirm-comment", "stopped from the console")
        page.click("#confirm-ok")
        expect(row.locator(".status")).to_have_text("CANCELED")
        expect(page.locator("#job-status")).to_have_text("CANCELED")
    finally:
        done = finish(device, tmp_path / "go")
    assert len(done["canceled"]) == 1 and done["canceled"][0].startswith("TerminalStateReached:"), done["canceled"]
    assert done["states"] == ["idle", "running", "canceled"]
    # Told by the notification, then a describe: no progress update was even tried after the cancel.
    after = [x.api for x in jobs_http.requests if x.api in ("update", "describe")]
    assert after[-1] == "describe"
    job = jobs_http.describe_job("job-long")
    assert job["forceCanceled"] and job["comment"] == "stopped from the console"


def test_a_staged_rollout_chart_grows(jobs_http: JobsService, iot: Any, iot_data: Any, page: Page) -> None:
    names = [f"board-{i:02d}" for i in range(1, 13)]
    for name in names:
        jobs_http.create_thing(name)
    iot.create_job(
        jobId="firmware-2-4-1", targets=[f"{ARN}thing/{n}" for n in names], description="firmware 2.4.1, 4 a minute",
        document=json.dumps({"operation": "flash", "version": "2.4.1"}),
        jobExecutionsRolloutConfig={"maximumPerMinute": 4}, timeoutConfig={"inProgressTimeoutInMinutes": 30},
        abortConfig={"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 50,
                                       "minNumberOfExecutedThings": 6}]})
    opened(page, jobs_http, "#/job/firmware-2-4-1")
    chart = page.locator("#job-chart svg")
    busy = page.locator("#job-chart .minute:not([data-queued='0'])")
    expect(chart).to_have_attribute("data-queued", "4")
    expect(busy).to_have_count(1)
    clock = jobs_http.clock
    assert isinstance(clock, ManualClock)
    outcomes = [(3, 0), (3, 1), (2, 0)]  # (succeeded, failed) of each minute's four
    for minute, (succeed, fail) in enumerate(outcomes):
        queued = names[4 * minute : 4 * minute + 4]
        for i, name in enumerate(queued[: succeed + fail]):
            iot_data.start_next_pending_job_execution(thingName=name, statusDetails={"step": "download"})
            iot_data.update_job_execution(thingName=name, jobId="firmware-2-4-1", status="IN_PROGRESS",
                                          statusDetails={"step": "flash", "percent": str(30 + 20 * i)})
            if i < succeed:
                iot_data.update_job_execution(thingName=name, jobId="firmware-2-4-1", status="SUCCEEDED",
                                              statusDetails={"result": "flashed", "version": "2.4.1"})
            else:
                iot_data.update_job_execution(thingName=name, jobId="firmware-2-4-1", status="FAILED",
                                              statusDetails={"reason": "checksum mismatch"})
        expect(chart).to_have_attribute("data-finished", str(sum(s + f for s, f in outcomes[: minute + 1])))
        if minute < 2:
            clock.advance(60)
            jobs_http.tick()
            expect(chart).to_have_attribute("data-queued", str(4 * (minute + 2)))
            expect(busy).to_have_count(minute + 2)
    iot_data.start_next_pending_job_execution(thingName=names[10], statusDetails={"step": "download", "percent": "10"})
    expect(execution_row(page, names[10]).locator(".details")).to_contain_text("percent=10")
    expect(chart).to_have_attribute("data-started", "10")
    expect(page.locator("#job-bar .seg[data-status=SUCCEEDED]")).to_have_attribute("data-count", "8")
    expect(page.locator("#job-bar .seg[data-status=FAILED]")).to_have_attribute("data-count", "1")
    assert not_reloaded(page)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_the_jobs_page_filters_and_follows(jobs_http: JobsService, iot_data: Any, page: Page, thing_name: str) -> None:
    jobs_http.create_job("first", [thing_arn(thing_name)], {"operation": "greet"})
    jobs_http.create_job("second", [thing_arn(thing_name)], {"operation": "greet"})
    opened(page, jobs_http, "")
    rows = page.locator("#jobs tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-job", "second")  # newest first
    first = page.locator('#jobs tr[data-job="first"]')
    expect(first.locator(".bar [data-status=QUEUED]")).to_have_attribute("data-count", "1")
    iot_data.start_next_pending_job_execution(thingName=thing_name)
    iot_data.update_job_execution(thingName=thing_name, jobId="first", status="SUCCEEDED")
    expect(first.locator(".status")).to_have_text("COMPLETED")
    expect(first.locator(".bar [data-status=SUCCEEDED]")).to_have_attribute("data-count", "1")
    jobs_http.create_job("third", [thing_arn(thing_name)], {"operation": "greet"})
    expect(rows).to_have_count(3)
    page.select_option("#job-status-filter", "COMPLETED")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-job", "first")
    jobs_http.delete_job("first", force=True)
    expect(rows).to_have_count(0)
    page.select_option("#job-status-filter", "")
    expect(rows).to_have_count(2)
    page.click('#jobs tr[data-job="third"] a')
    expect(page.locator("#job-status")).to_have_text("IN_PROGRESS")
    assert not_reloaded(page)


def test_the_thing_page_moves_executions_from_pending_to_past(
    jobs_http: JobsService, iot_data: Any, page: Page, thing_name: str
) -> None:
    jobs_http.create_job("old", [thing_arn(thing_name)], {"operation": "greet"})
    jobs_http.cancel_job("old")
    jobs_http.create_job("new", [thing_arn(thing_name)], {"operation": "greet"})
    opened(page, jobs_http, "")
    page.fill("#thing-name", thing_name)
    page.click("#thing-search button")
    pending, past = page.locator("#pending-executions tbody tr"), page.locator("#past-executions tbody tr")
    expect(pending).to_have_count(1)
    expect(pending.first).to_have_attribute("data-job", "new")
    expect(past.first.locator(".status")).to_have_text("CANCELED")
    iot_data.start_next_pending_job_execution(thingName=thing_name, statusDetails={"step": "a"})
    expect(pending.first.locator(".status")).to_have_text("IN_PROGRESS")
    assert isinstance(jobs_http.clock, ManualClock)
    jobs_http.clock.advance(5)  # so the failed one is the newest of the past ones
    iot_data.update_job_execution(thingName=thing_name, jobId="new", status="FAILED", statusDetails={"why": "x"})
    expect(past).to_have_count(2)
    expect(past.first.locator(".details")).to_have_text("why=x")
    expect(pending.first).to_have_text("none")
    assert not_reloaded(page)


def test_errors_are_shown_not_swallowed(jobs_http: JobsService, iot_data: Any, page: Page, thing_name: str) -> None:
    jobs_http.create_job("busy", [thing_arn(thing_name)], {"operation": "greet"})
    iot_data.start_next_pending_job_execution(thingName=thing_name)
    opened(page, jobs_http, "#/job/busy")
    row = execution_row(page, thing_name)
    expect(row.locator(".status")).to_have_text("IN_PROGRESS")
    error = page.locator("#error")

    row.locator(".cancel-execution").click()  # without force: refused while IN_PROGRESS
    page.click("#confirm-ok")
    expect(error).to_be_visible()
    expect(error).to_contain_text("CancelJobExecution failed: InvalidStateTransitionException")
    assert jobs_http.status(thing_name, "busy") == "IN_PROGRESS"
    page.click("#error-close")

    row.locator(".delete-execution").click()  # with force: gone, and the device told
    page.check("#confirm-force")
    page.click("#confirm-ok")
    expect(row).to_have_count(0)
    expect(error).to_be_hidden()
    assert jobs_http.status(thing_name, "busy") is None

    page.goto(console(jobs_http, "#/create"))
    page.fill("#new-job-id", "busy")
    page.fill("#new-job-things", thing_name)
    page.fill("#new-job-document", '{"operation": "greet"}')
    page.click("#create-submit")
    expect(error).to_contain_text("CreateJob failed: ResourceAlreadyExistsException")
    page.fill("#new-job-id", "fresh")
    page.locator("details summary").click()
    page.fill("#new-job-rollout", "{maximumPerMinute: 3")
    page.click("#create-submit")
    expect(error).to_contain_text("Rollout is not JSON")
    page.fill("#new-job-rollout", "")
    page.fill("#new-job-document", "not json")
    page.click("#create-submit")
    expect(error).to_contain_text("CreateJob failed: InvalidRequestException")
    assert [j["jobId"] for j in jobs_http.list_jobs()] == ["busy"]
    expect(page).to_have_url(console(jobs_http, "#/create"))


def test_a_document_picked_from_the_files_folder(jobs_http: JobsService, page: Page, thing_name: str) -> None:
    assert jobs_http.documents.root is not None
    (jobs_http.documents.root / "firmware").mkdir()
    (jobs_http.documents.root / "firmware" / "flash.json").write_text('{"operation": "flash", "from": "file"}')
    opened(page, jobs_http, "#/create")
    page.fill("#new-job-id", "picked")
    page.fill("#new-job-things", thing_name)
    page.check("#new-job-from-file")
    expect(page.locator("#new-job-document")).to_be_hidden()
    page.select_option("#document-file", label="firmware/flash.json (38 bytes)")
    page.click("#create-submit")
    expect(page.locator("#config-source")).to_contain_text("https://s3.amazonaws.com/firmware/flash.json")
    expect(page.locator("#job-document")).to_contain_text('"from": "file"')
    assert json.loads(jobs_http.get_job_document("picked")) == {"operation": "flash", "from": "file"}


# ---- serving and shipping ------------------------------------------------------------------------


def test_serve_prints_the_console_and_the_terminal_commands_read_it(mosquitto: Any, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [str(CLI), "serve", "--broker", f"{mosquitto.host}:{mosquitto.port}", "--http", "127.0.0.1:0",
         "--db", ":memory:"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        assert ready[0] == "ready" and ready[2].startswith("http="), ready
        endpoint = "http://" + ready[2][5:]
        assert process.stdout.readline().strip() == f"console {endpoint}/console/"
        connection = http.client.HTTPConnection(ready[2][5:], timeout=10)
        connection.request("GET", "/console")
        assert connection.getresponse().getheader("Location") == "/console/"
        for name, kind in (("", "text/html"), ("console.js", "text/javascript"), ("console.css", "text/css")):
            connection = http.client.HTTPConnection(ready[2][5:], timeout=10)
            connection.request("GET", "/console/" + name)
            response = connection.getresponse()
            assert response.status == 200 and response.getheader("Content-Type", "").startswith(kind)
        connection = http.client.HTTPConnection(ready[2][5:], timeout=10)
        connection.request("GET", "/console/../service.py")
        assert connection.getresponse().status == 404
        listed = subprocess.run([str(CLI), "jobs", "--endpoint-url", endpoint], capture_output=True, text=True,
                                timeout=60)
        assert listed.returncode == 0 and listed.stdout == "no jobs\n", listed.stderr
    finally:
        process.terminate()
        process.wait(10)


def test_jobs_and_watch_in_a_terminal(jobs_http: JobsService, iot_data: Any, thing_name: str) -> None:
    jobs_http.create_thing("other")
    jobs_http.create_job("first", [thing_arn(thing_name), thing_arn("other")], {"operation": "greet"})
    jobs_http.create_job("done", [thing_arn("other")], {"operation": "greet"})
    jobs_http.cancel_job("done")
    listed = subprocess.run([str(CLI), "jobs", "--endpoint-url", jobs_http.http_url], capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.split()[:5] == ["JOB", "STATUS", "TARGETS", "CREATED", "UPDATED"]
    assert [line.split()[:3] for line in lines] == [
        ["first", "IN_PROGRESS", "SNAPSHOT"], ["done", "CANCELED", "SNAPSHOT"]]
    assert lines[0].split()[7:] == ["2", "0", "0", "0", "0", "0", "0", "0"]  # QUEUED 2, nothing else
    only = subprocess.run([str(CLI), "jobs", "--status", "CANCELED", "--endpoint-url", jobs_http.http_url],
                          capture_output=True, text=True, timeout=60)
    assert [line.split()[0] for line in only.stdout.splitlines()[1:]] == ["done"]

    watch = subprocess.Popen([str(CLI), "watch", "first", "--until-done", "--interval", "0.05",
                              "--endpoint-url", jobs_http.http_url], stdout=subprocess.PIPE, text=True)
    try:
        assert watch.stdout is not None
        assert watch.stdout.readline().startswith("job first IN_PROGRESS  QUEUED 2")
        table = [watch.stdout.readline().split() for _ in range(3)]
        assert table[0][:3] == ["THING", "#", "STATUS"] and sorted(r[2] for r in table[1:]) == ["QUEUED", "QUEUED"]
        iot_data.start_next_pending_job_execution(thingName=thing_name, statusDetails={"step": "one"})
        line = watch.stdout.readline().split()
        assert line[2:] == [thing_name, "#1", "IN_PROGRESS", "v2", "step=one"], line
        iot_data.update_job_execution(thingName=thing_name, jobId="first", status="SUCCEEDED",
                                      statusDetails={"result": "ok"})
        assert watch.stdout.readline().split()[2:] == [thing_name, "#1", "SUCCEEDED", "v3", "result=ok"]
        jobs_http.cancel_job_execution("first", "other")
        assert watch.stdout.readline().split()[2:5] == ["other", "#1", "CANCELED"]
        assert watch.stdout.readline().startswith("job first COMPLETED  SUCCEEDED 1, CANCELED 1")
        assert watch.wait(30) == 0
    finally:
        watch.kill()
    missing = subprocess.run([str(CLI), "watch", "nothing", "--endpoint-url", jobs_http.http_url],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "there is no job nothing" in missing.stderr
    # Without --endpoint-url: the service's default HTTP endpoint.
    assert build_parser().parse_args(["watch", "x"]).endpoint_url == "http://127.0.0.1:8089"


def test_the_page_ships_in_the_package(tmp_path: Path) -> None:
    # What `pip install` would put in site-packages, built by setuptools from a copy of the project.
    shutil.copytree(ROOT / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    built = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
                            "--build-lib", str(tmp_path / "lib")], cwd=tmp_path, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    page = tmp_path / "lib" / "localjobs" / "console"
    assert sorted(p.name for p in page.iterdir()) == ["console.css", "console.js", "index.html"]
    assert sum(p.stat().st_size for p in page.iterdir()) < 64 * 1024, "the console stays small"


def test_the_console_benchmark_runs_on_a_small_fleet(playwright: Playwright) -> None:
    from bench import console as bench

    figures = bench.measure(20, playwright)
    assert figures["updates"] == 40 and figures["snapshot_bytes"] > 20 * 100
    assert figures["rows_timed"] == 20, "every row is on the first page, each timed"
    assert 0 < figures["page_cpu_ms"] and 0 < figures["quiet_updates_per_s"] and 0 < figures["watched_updates_per_s"]
    assert 0 < figures["change_events"] <= 40 and figures["settle_ms"] < WAIT_MS
