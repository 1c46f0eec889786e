"""The browser console of the local Jobs service: its page, and live views of the jobs, a job or a thing.

`/console/` serves the page (plain HTML, CSS and JavaScript from the `console/` folder beside this file).
`/console/events?view=jobs|job|thing&id=...` is a server-sent event stream: one `snapshot` event with the
whole view, then `change` events with only the records that changed since the last one. The page's
actions are plain calls of the management REST API on the same port, the very routes boto3 uses.

Cost at scale: a change costs the service one dictionary insert per open stream that follows it (the
changed record's topic, coalesced with its earlier changes). Each stream wakes at most every
BATCH_SECONDS and rebuilds only the records it was told about, at most CHUNK at a time under the
service lock, and writes them to its socket outside the lock. A jobs list follows jobs, not
executions: ten thousand executions of a job moving in one batch cost that list one job row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import SplitResult, parse_qsl, quote

from .changefeed import Change
from .http_api import reply
from .model import GROUP_ARN_PREFIX, THING_ARN_PREFIX, ApiError

if TYPE_CHECKING:
    from .service import JobsService

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("console")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Ends a stream's wait between batches: changes that come meanwhile go out together in the next one.
BATCH_SECONDS = 0.2
# A comment line this often finds streams whose browser has gone (the write fails) and keeps proxies open.
KEEPALIVE_SECONDS = 15.0
# Records built per hold of the service lock, so devices' requests wait for at most this many.
CHUNK = 500
# The most files of --files listed for the create-job form.
MAX_FILES = 500
# What a jobs list row keeps of DescribeJob's Job.
JOB_ROW_KEYS = (
    "jobId",
    "status",
    "targetSelection",
    "createdAt",
    "lastUpdatedAt",
    "completedAt",
    "description",
    "forceCanceled",
    "reasonCode",
    "comment",
    "jobProcessDetails",
)

T = TypeVar("T")
U = TypeVar("U")


class Console:
    """Answers every request under PATH on the service's HTTP port (mounted by JobsService)."""

    PATH = "/console"

    def __init__(self, service: JobsService) -> None:
        self.service = service

    def serve(self, handler: BaseHTTPRequestHandler, url: SplitResult, body: bytes) -> None:
        path = url.path[len(self.PATH) :]
        query = dict(parse_qsl(url.query))
        if handler.command != "GET":
            reply(handler, 405, b"GET only: actions go through the management API", "text/plain")
        elif path == "":
            handler.send_response(301)
            handler.send_header("Location", self.PATH + "/")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        elif path == "/events":
            view = self.view(query)
            if view is None:
                reply(handler, 400, b"view must be jobs, job&id=JOB or thing&id=THING", "text/plain")
            else:
                self.stream(handler, view)
        elif path == "/info":
            reply(handler, 200, json.dumps(self.info()).encode(), "application/json", {"Cache-Control": "no-store"})
        else:
            self.static(handler, "index.html" if path == "/" else path[1:])

    # ---- the page ------------------------------------------------------------------------------

    def static(self, handler: BaseHTTPRequestHandler, name: str) -> None:
        # Only files that sit directly in the folder, by name: no path leads anywhere else.
        kind = CONTENT_TYPES.get(Path(name).suffix)
        target = STATIC / name
        if kind is None or "/" in name or name.startswith(".") or not target.is_file():
            reply(handler, 404, b"not found", "text/plain")
            return
        reply(handler, 200, target.read_bytes(), kind, {"Cache-Control": "no-cache"})

    def info(self) -> dict[str, Any]:
        """What the page needs to make requests: the ARN prefixes of targets, and the files it can pick from."""
        return {"thingArnPrefix": THING_ARN_PREFIX, "groupArnPrefix": GROUP_ARN_PREFIX, "files": self.files()}

    def files(self) -> dict[str, Any]:
        """The objects of --files, for the create-job form's documentSource picker."""
        root = self.service.documents.root
        found: list[dict[str, Any]] = []
        if root is not None and root.is_dir():
            for path in sorted(root.rglob("*")):
                parts = path.relative_to(root).parts
                if len(parts) < 2 or any(p.startswith(".") for p in parts) or not path.is_file():
                    continue
                found.append(
                    {
                        "object": "/".join(parts),
                        "size": path.stat().st_size,
                        "documentSource": "https://s3.amazonaws.com/" + quote("/".join(parts)),
                    }
                )
                if len(found) == MAX_FILES:
                    break
        return {"folder": str(root) if root is not None else None, "files": found}

    # ---- live views ----------------------------------------------------------------------------

    def view(self, query: dict[str, str]) -> View | None:
        kind, name = query.get("view"), query.get("id", "")
        if kind == "jobs":
            return JobsView(self.service)
        if kind == "job" and name:
            return JobView(self.service, name)
        if kind == "thing" and name:
            return ThingView(self.service, name)
        return None

    def stream(self, handler: BaseHTTPRequestHandler, view: View) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        # Subscribed before the snapshot is read: a change made meanwhile is in both, and the page applies
        # records as whole states, so seeing one twice is harmless; none is missed.
        with self.service.changes.subscribe(view.topic) as subscription:
            try:
                handler.wfile.write(b"retry: 1000\n\n")
                send(handler, "snapshot", self.stamped(view.snapshot()))
                while True:
                    topics = subscription.take(KEEPALIVE_SECONDS)
                    if topics is None:
                        return
                    if not topics:
                        handler.wfile.write(b": keepalive\n\n")
                        handler.wfile.flush()
                        continue
                    send(handler, "change", self.stamped(view.delta(topics)))
                    if subscription.wait_closed(BATCH_SECONDS):
                        return
            except OSError:
                return  # the page went away: its socket refuses the write

    def stamped(self, data: dict[str, Any]) -> dict[str, Any]:
        # The service's time (it may run ahead, or be a test's manual clock): the page's "now" for its chart.
        data["now"] = self.service.clock.now()
        return data


class View:
    """What one stream shows: which changes concern it, all of it at once, and what changed."""

    def __init__(self, service: JobsService) -> None:
        self.service = service

    def topic(self, change: Change) -> Any:
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        raise NotImplementedError

    def delta(self, topics: list[Any]) -> dict[str, Any]:
        raise NotImplementedError

    def each(self, items: Iterable[T], build: Callable[[T], U | None]) -> list[U]:
        """build(item) for every item, CHUNK at a time under the service lock; items it finds gone give None."""
        items = list(items)
        built: list[U | None] = []
        for start in range(0, len(items), CHUNK):
            built.extend(self.service.read(lambda part: [build(i) for i in part], items[start : start + CHUNK]))
        return [b for b in built if b is not None]

    def execution(self, thing: str, job_id: str, number: int) -> dict[str, Any] | None:
        """An execution row: DescribeJobExecution's JobExecution, with the thing's name. Called under the lock."""
        try:
            row = self.service.model.describe_job_execution(thing, job_id, number)
        except ApiError:
            return None
        row["thingName"] = thing
        del row["thingArn"]
        return row


class JobsView(View):
    """The jobs table: a row per job with its counts by status. Executions count only through their job."""

    def topic(self, change: Change) -> Any:
        kind, name = change
        if kind == "job":
            return name
        if kind == "execution":
            return name[0]
        return None

    def row(self, job_id: str) -> dict[str, Any] | None:
        try:
            job = self.service.model.describe_job(job_id)
        except ApiError:
            return None
        return {key: job[key] for key in JOB_ROW_KEYS if key in job}

    def snapshot(self) -> dict[str, Any]:
        ids = [j["jobId"] for j in self.service.read(self.service.model.list_jobs)]
        return {"jobs": self.each(ids, self.row)}

    def delta(self, topics: list[Any]) -> dict[str, Any]:
        rows = self.each(topics, self.row)
        present = {r["jobId"] for r in rows}
        return {"jobs": rows, "gone": [t for t in topics if t not in present]}


class JobView(View):
    """A job: its description, document and every execution; a change sends the job and the executions it touched."""

    def __init__(self, service: JobsService, job_id: str) -> None:
        super().__init__(service)
        self.job_id = job_id

    def topic(self, change: Change) -> Any:
        kind, name = change
        if kind == "job" and name == self.job_id:
            return "job"
        if kind == "execution" and name[0] == self.job_id:
            return (name[1], name[2])
        return None

    def job(self) -> dict[str, Any] | None:
        try:
            return self.service.read(self.service.model.describe_job, self.job_id)
        except ApiError:
            return None

    def snapshot(self) -> dict[str, Any]:
        job = self.job()
        if job is None:
            return {"job": None, "executions": []}
        try:
            document = self.service.read(self.service.model.get_job_document, self.job_id)
            runs = self.service.read(self.service.model.list_job_executions_for_job, self.job_id)
        except ApiError:
            return {"job": None, "executions": []}
        keys = [(r["thingArn"][len(THING_ARN_PREFIX) :], r["jobExecutionSummary"]["executionNumber"]) for r in runs]
        rows = self.each(keys, lambda key: self.execution(key[0], self.job_id, key[1]))
        return {"job": job, "document": document, "executions": rows}

    def delta(self, topics: list[Any]) -> dict[str, Any]:
        keys = [t for t in topics if t != "job"]
        rows = self.each(keys, lambda key: self.execution(key[0], self.job_id, key[1]))
        present = {(r["thingName"], r["executionNumber"]) for r in rows}
        # The job's counts move with its executions, so it comes with every change.
        return {"job": self.job(), "executions": rows, "gone": [list(k) for k in keys if k not in present]}


class ThingView(View):
    """A thing: its registry entry and its executions of every job."""

    def __init__(self, service: JobsService, thing: str) -> None:
        super().__init__(service)
        self.thing = thing

    def topic(self, change: Change) -> Any:
        kind, name = change
        if kind == "thing" and name == self.thing:
            return "thing"
        if kind == "execution" and name[1] == self.thing:
            return (name[0], name[2])
        return None

    def describe(self) -> dict[str, Any] | None:
        try:
            return self.service.read(self.service.model.describe_thing, self.thing)
        except ApiError:
            return None

    def snapshot(self) -> dict[str, Any]:
        try:
            runs = self.service.read(self.service.model.list_job_executions_for_thing, self.thing)
        except ApiError:
            runs = []
        keys = [(r["jobId"], r["jobExecutionSummary"]["executionNumber"]) for r in runs]
        rows = self.each(keys, lambda key: self.execution(self.thing, key[0], key[1]))
        return {"thing": self.describe(), "executions": rows}

    def delta(self, topics: list[Any]) -> dict[str, Any]:
        keys = [t for t in topics if t != "thing"]
        rows = self.each(keys, lambda key: self.execution(self.thing, key[0], key[1]))
        present = {(r["jobId"], r["executionNumber"]) for r in rows}
        return {"thing": self.describe(), "executions": rows, "gone": [list(k) for k in keys if k not in present]}


def send(handler: BaseHTTPRequestHandler, event: str, data: dict[str, Any]) -> None:
    handler.wfile.write(b"event: %s\ndata: %s\n\n" % (event.encode(), json.dumps(data).encode()))
    handler.wfile.flush()
