"""`iotjobs-local jobs` and `iotjobs-local watch JOB`: the console's tables in a terminal, over the management API.

Both are plain boto3 clients of the `iot` REST API, so they work against any service that speaks it: the
local one (by default at DEFAULT_ENDPOINT) or another with its own `--endpoint-url`. The API has no push,
so `watch` polls; each poll costs one DescribeJob, one ListJobExecutionsForJob per 250 executions, and a
DescribeJobExecution only for the executions whose summary changed (on a terminal, only among the rows it
shows) plus at most DETAIL_REFRESH of those in progress.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "http://127.0.0.1:8089"
STATUSES = ("QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED", "REMOVED")
PENDING = ("QUEUED", "IN_PROGRESS")
COUNT_KEYS = {
    "QUEUED": "numberOfQueuedThings",
    "IN_PROGRESS": "numberOfInProgressThings",
    "SUCCEEDED": "numberOfSucceededThings",
    "FAILED": "numberOfFailedThings",
    "REJECTED": "numberOfRejectedThings",
    "TIMED_OUT": "numberOfTimedOutThings",
    "CANCELED": "numberOfCanceledThings",
    "REMOVED": "numberOfRemovedThings",
}
# In-progress executions re-described per poll (in turn), for statusDetails that changed within one second.
DETAIL_REFRESH = 100
COLOURS = {"IN_PROGRESS": "34", "SUCCEEDED": "32", "COMPLETED": "32", "FAILED": "31", "REJECTED": "33",
           "TIMED_OUT": "35", "CANCELED": "90", "REMOVED": "90"}


class Failure(Exception):
    """What the user is told, instead of a traceback."""


def add_commands(commands: Any) -> None:
    """The `jobs` and `watch` subcommands, added to iotjobs-local's parser."""
    jobs = commands.add_parser("jobs", help="the jobs table: status, target selection, times, executions by status")
    jobs.add_argument("--status", choices=("IN_PROGRESS", "COMPLETED", "CANCELED"), help="only jobs in this status")
    watch = commands.add_parser("watch", help="a live table of one job's executions")
    watch.add_argument("job_id", metavar="JOB")
    watch.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="between polls (default 1)")
    watch.add_argument("--until-done", action="store_true",
                       help="exit once the job is no longer IN_PROGRESS and none of its executions is pending")
    for parser in (jobs, watch):
        parser.add_argument("--endpoint-url", default=DEFAULT_ENDPOINT, metavar="URL",
                            help=f"the management API (default {DEFAULT_ENDPOINT}, the service's default)")


def run(args: argparse.Namespace, out: TextIO = sys.stdout, stop: threading.Event | None = None) -> int:
    """Runs `jobs` or `watch`; 1 with a one-line reason when the service cannot answer."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        iot = client(args.endpoint_url)
        if args.command == "jobs":
            print_jobs(iot, args.status, out)
            return 0
        return watch(iot, args.job_id, args.interval, args.until_done, out, stop or threading.Event())
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(f"iotjobs-local: {error.get('Code')}: {error.get('Message')}", file=sys.stderr)
    except BotoCoreError as exc:
        print(f"iotjobs-local: {exc} (is `iotjobs-local serve` running there?)", file=sys.stderr)
    except Failure as exc:
        print(f"iotjobs-local: {exc}", file=sys.stderr)
    return 1


def client(endpoint_url: str) -> Any:
    """A boto3 `iot` client. On this machine, placeholder credentials (the local service checks none, and
    boto3's search for real ones may wait seconds on an instance-metadata address); elsewhere, boto3's own."""
    import boto3
    from botocore.config import Config

    session = boto3.Session()
    keys: dict[str, str] = {}
    host = urlsplit(endpoint_url).hostname or ""
    if host == "localhost" or host.startswith("127.") or host == "::1" or session.get_credentials() is None:
        keys = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)
    return session.client("iot", endpoint_url=endpoint_url, region_name=session.region_name or "us-east-1",
                          config=config, **keys)


# ---- jobs ------------------------------------------------------------------------------------------


def print_jobs(iot: Any, status: str | None, out: TextIO) -> None:
    query = {"status": status} if status else {}
    summaries = [j for page in iot.get_paginator("list_jobs").paginate(**query) for j in page["jobs"]]
    colour = out.isatty()
    rows = []
    for summary in summaries:
        try:
            job = iot.describe_job(jobId=summary["jobId"])["job"]
        except iot.exceptions.ResourceNotFoundException:
            continue  # deleted since it was listed
        counts = job.get("jobProcessDetails", {})
        rows.append([job["jobId"], paint(job["status"], colour), job.get("targetSelection", ""),
                     when(job.get("createdAt")), when(job.get("lastUpdatedAt"))]
                    + [str(counts.get(COUNT_KEYS[s], 0)) for s in STATUSES])
    if not rows:
        out.write("no jobs%s\n" % (f" in status {status}" if status else ""))
        return
    out.write(table(["JOB", "STATUS", "TARGETS", "CREATED", "UPDATED", *STATUSES], rows) + "\n")


# ---- watch -----------------------------------------------------------------------------------------


class Executions:
    """What `watch` knows of a job's executions: every summary, and the details of those it has shown."""

    def __init__(self, iot: Any, job_id: str) -> None:
        self.iot = iot
        self.job_id = job_id
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}
        self.fetched: dict[tuple[str, int], tuple[Any, ...]] = {}  # the summary each row's details were read at
        self.turn = 0

    def poll(self) -> dict[str, Any]:
        """The job, with every execution's summary brought up to date."""
        try:
            job: dict[str, Any] = self.iot.describe_job(jobId=self.job_id)["job"]
        except self.iot.exceptions.ResourceNotFoundException:
            raise Failure(f"there is no job {self.job_id} (never created, or deleted)") from None
        pages = self.iot.get_paginator("list_job_executions_for_job").paginate(jobId=self.job_id)
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        for page in pages:
            for item in page["executionSummaries"]:
                summary = item["jobExecutionSummary"]
                thing = item["thingArn"].rsplit("/", 1)[-1]
                key = (thing, int(summary["executionNumber"]))
                row = self.rows.get(key, {"versionNumber": "", "statusDetails": {}})
                rows[key] = {**row, **summary, "thingName": thing}
        self.rows = rows
        return job

    def refresh(self, keys: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
        """Reads the details of those of `keys` whose summary moved, and of up to DETAIL_REFRESH in progress (in
        turn: their details may change within the second a summary shows); returns the rows whose status or
        version changed."""
        stale = [k for k in keys if self.fetched.get(k) != summary_of(self.rows[k])]
        running = [k for k in keys if self.rows[k]["status"] == "IN_PROGRESS" and k not in stale]
        if running:
            first = self.turn % len(running)
            stale += (running[first:] + running[:first])[:DETAIL_REFRESH]
            self.turn = first + DETAIL_REFRESH
        changed = []
        for thing, number in stale:
            try:
                found = self.iot.describe_job_execution(jobId=self.job_id, thingName=thing, executionNumber=number)
            except self.iot.exceptions.ResourceNotFoundException:
                continue
            execution = found["execution"]
            row = self.rows[(thing, number)]
            before = (row["status"], row["versionNumber"]) if (thing, number) in self.fetched else None
            row.update(status=execution["status"], versionNumber=execution.get("versionNumber", ""),
                       lastUpdatedAt=execution.get("lastUpdatedAt"),
                       statusDetails=(execution.get("statusDetails") or {}).get("detailsMap", {}))
            self.fetched[(thing, number)] = summary_of(row)
            if before != (row["status"], row["versionNumber"]):
                changed.append(row)
        return changed

    def ordered(self) -> list[tuple[str, int]]:
        """In progress first, then queued, then the rest by their last update, newest first."""
        rank = {"IN_PROGRESS": 0, "QUEUED": 1}
        return sorted(self.rows, key=lambda k: (rank.get(self.rows[k]["status"], 2),
                                                -seconds(self.rows[k].get("lastUpdatedAt")), k))


def summary_of(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["status"], seconds(row.get("startedAt")), seconds(row.get("lastUpdatedAt")))


def watch(iot: Any, job_id: str, interval: float, until_done: bool, out: TextIO, stop: threading.Event) -> int:
    """On a terminal, the table redrawn after every poll (details read only for the rows it shows); into a pipe
    or a file, the table once, then a line per change."""
    executions = Executions(iot, job_id)
    live = out.isatty()
    first = True
    while True:
        job = executions.poll()
        if live:
            shown = executions.ordered()[: max(1, shutil.get_terminal_size().lines - 4)]
            executions.refresh(shown)
            out.write("\x1b[H\x1b[2J" + job_line(job, True) + "\n")
            out.write(execution_table([executions.rows[k] for k in shown], True) + "\n")
        else:
            changed = executions.refresh(executions.ordered() if first else list(executions.rows))
            if first:
                out.write(job_line(job, False) + "\n")
                out.write(execution_table([executions.rows[k] for k in executions.ordered()], False) + "\n")
            else:
                for row in changed:
                    out.write(change_line(row) + "\n")
        out.flush()
        first = False
        done = job["status"] != "IN_PROGRESS" and not any(r["status"] in PENDING for r in executions.rows.values())
        if until_done and done:
            if not live:
                out.write(job_line(job, False) + "\n")
            return 0
        if stop.wait(interval):
            return 0


def job_line(job: dict[str, Any], colour: bool) -> str:
    counts = job.get("jobProcessDetails", {})
    parts = ["%s %d" % (s, counts.get(COUNT_KEYS[s], 0)) for s in STATUSES if counts.get(COUNT_KEYS[s])]
    return "job %s %s  %s" % (job["jobId"], paint(job["status"], colour), ", ".join(parts) or "no executions")


def execution_table(rows: Sequence[dict[str, Any]], colour: bool) -> str:
    if not rows:
        return "(no executions yet)"
    cells = [[r["thingName"], str(r["executionNumber"]), paint(r["status"], colour), str(r.get("versionNumber", "")),
              when(r.get("lastUpdatedAt")), details(r["statusDetails"])] for r in rows]
    return table(["THING", "#", "STATUS", "VERSION", "UPDATED", "STATUS DETAILS"], cells)


def change_line(row: dict[str, Any]) -> str:
    return "%s %s #%s %s v%s %s" % (when(row.get("lastUpdatedAt")), row["thingName"], row["executionNumber"],
                                    row["status"], row.get("versionNumber", ""), details(row["statusDetails"]))


# ---- formatting ------------------------------------------------------------------------------------


def details(status_details: dict[str, str]) -> str:
    return " ".join("%s=%s" % item for item in status_details.items())


def seconds(value: Any) -> float:
    """A boto3 timestamp (datetime) or epoch seconds as epoch seconds; 0 for none."""
    if value is None:
        return 0.0
    timestamp: Callable[[], float] | None = getattr(value, "timestamp", None)
    return timestamp() if timestamp else float(value)


def when(value: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds(value))) if value is not None else ""


def paint(status: str, colour: bool) -> str:
    code = COLOURS.get(status)
    return "\x1b[%sm%s\x1b[0m" % (code, status) if colour and code and not os.environ.get("NO_COLOR") else status


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart; colour codes do not count towards a cell's width."""

    def width(cell: str) -> int:
        return len(cell) - (9 if cell.startswith("\x1b[") else 0)

    widths = [max(width(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [cell + " " * (w - width(cell)) for cell, w in zip(row, widths)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
