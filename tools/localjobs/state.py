"""The model's state: things, groups, jobs and executions, the indexes kept over them, and their records."""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, fields
from typing import Any

from .checks import check_group_name, check_job_id, check_thing_name
from .clock import Clock
from .resources import (
    EXECUTION_STATUSES,
    IN_PROGRESS,
    PENDING,
    ApiError,
    Job,
    JobExecution,
    Notification,
    Thing,
    ThingGroup,
)

META = ("meta", "model")


def execution_key(run: JobExecution) -> tuple[str, str]:
    """The execution's record key in `to_records`."""
    return ("execution", json.dumps([run.job_id, run.thing_name, run.execution_number]))


class ModelState:
    """What every part of the model reads and writes, with lookups that raise ResourceNotFound."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.things: dict[str, Thing] = {}
        self.groups: dict[str, ThingGroup] = {}
        self.jobs: dict[str, Job] = {}
        # Hooks for documents, set by the service: read a documentSource URL as text; make the URL
        # that replaces an s3-presigned-url placeholder (placeholder, its URL, expiresInSec). The model does no I/O.
        self.fetch_document: Callable[[str], str] | None = None
        self.presign: Callable[[str, str, int], str] | None = None
        self._aborts: list[str] = []
        # job id -> thing name -> executions of that job on that thing, by executionNumber
        self.executions: dict[str, dict[str, list[JobExecution]]] = {}
        self.outbox: list[Notification] = []
        self._by_thing: dict[str, list[JobExecution]] = {}
        self._seq = 0
        # Indexes kept as executions change, so a request costs the same however many the model holds:
        # each thing's pending executions by seq (same key order as _by_thing, which tick() relies on), how
        # many things' latest execution of a job is in each status, each job's pending executions, and
        # (seq, thing) of each job's latest executions that are IN_PROGRESS, sorted (processingTargets).
        self._pending: dict[str, list[JobExecution]] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._open: dict[str, int] = {}
        self._processing: dict[str, list[tuple[int, str]]] = {}
        # Records changed since take_changes(): (kind, key) -> the object whose record to write, None when it
        # is gone. Marking an object once per call is enough: its record is made when the changes are taken.
        self.changed: dict[tuple[str, str], object | None] = {META: self}

    # ---- lookups ----------------------------------------------------------------------------

    def pending(self, thing: str) -> list[JobExecution]:
        """The thing's pending executions in `$next` order: IN_PROGRESS first, each by creation."""
        return sorted(self._pending.get(thing, []), key=lambda r: (r.status != IN_PROGRESS, r.seq))

    def execution(self, thing: str, job_id: str, execution_number: int | None = None) -> JobExecution | None:
        runs = self.executions.get(job_id, {}).get(thing, [])
        if execution_number is None:
            return runs[-1] if runs else None
        return next((r for r in runs if r.execution_number == execution_number), None)

    def _find(self, thing: str, job_id: str, execution_number: int | None) -> JobExecution:
        run = self.execution(thing, job_id, execution_number)
        if run is None:
            which = "" if execution_number is None else f" number {execution_number}"
            raise ApiError("ResourceNotFound", f"no execution{which} of job {job_id} for thing {thing}")
        return run

    def _job(self, job_id: str) -> Job:
        check_job_id(job_id)
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError("ResourceNotFound", f"job {job_id} does not exist")
        return job

    def _job_runs(self, job_id: str) -> list[JobExecution]:
        runs = [r for per_thing in self.executions.get(job_id, {}).values() for r in per_thing]
        return sorted(runs, key=lambda r: r.seq)

    def _thing(self, name: str) -> Thing:
        check_thing_name(name)
        thing = self.things.get(name)
        if thing is None:
            raise ApiError("ResourceNotFound", f"thing {name} does not exist")
        return thing

    def _group(self, name: str) -> ThingGroup:
        check_group_name(name)
        group = self.groups.get(name)
        if group is None:
            raise ApiError("ResourceNotFound", f"thing group {name} does not exist")
        return group

    def _count(self, job: Job, statuses: Iterable[str]) -> int:
        counts = self._counts.get(job.job_id, {})
        return sum(counts.get(status, 0) for status in set(statuses))

    def _tally(self, run: JobExecution, old: str | None, new: str | None) -> None:
        """Keep the job's counts as its thing's latest execution `run` goes from status `old` to `new`.

        None stands for "not the latest": the execution becomes or stops being the one its thing is counted by.
        """
        counts, processing = self._counts[run.job_id], self._processing[run.job_id]
        entry = (run.seq, run.thing_name)
        if old is not None:
            counts[old] -= 1
            if old == IN_PROGRESS:
                del processing[bisect.bisect_left(processing, entry)]
        if new is not None:
            counts[new] += 1
            if new == IN_PROGRESS:
                bisect.insort(processing, entry)

    # ---- records for the store --------------------------------------------------------------

    def to_records(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The whole state as (kind, key) -> JSON-able record: what a store writes and `load_records` reads."""
        records: dict[tuple[str, str], dict[str, Any]] = {META: {"seq": self._seq}}
        for thing in self.things.values():
            records[("thing", thing.name)] = asdict(thing)
        for group in self.groups.values():
            records[("group", group.name)] = asdict(group)
        for job in self.jobs.values():
            records[("job", job.job_id)] = asdict(job)
        for runs in self._by_thing.values():
            for run in runs:
                records[execution_key(run)] = asdict(run)
        return records

    def take_changes(self) -> dict[tuple[str, str], dict[str, Any] | None]:
        """The records changed since the last call, as `to_records` has them; None for one that is gone.

        Shallow: they share lists and maps with the model, so encode them before the model changes again
        (asdict's deep copy was most of a request's cost).
        """
        changed, self.changed = self.changed, {}
        return {key: None if obj is None else self._record(key, obj) for key, obj in changed.items()}

    def _record(self, key: tuple[str, str], obj: object) -> dict[str, Any]:
        if key == META:
            return {"seq": self._seq}
        return {f.name: getattr(obj, f.name) for f in fields(obj)}  # type: ignore[arg-type]

    def load_records(self, records: Mapping[tuple[str, str], Mapping[str, Any]]) -> None:
        """Replace the state with what `to_records` produced (in any order)."""
        self.things, self.groups, self.jobs, self.executions, self._by_thing = {}, {}, {}, {}, {}
        self._pending, self._counts, self._open, self._processing, self.changed = {}, {}, {}, {}, {}
        self._seq = 0
        runs: list[JobExecution] = []
        for (kind, _key), body in records.items():
            if kind == "meta":
                self._seq = int(body["seq"])
            elif kind == "thing":
                self.things[body["name"]] = Thing(**body)
            elif kind == "group":
                self.groups[body["name"]] = ThingGroup(**body)
            elif kind == "job":
                self.jobs[body["job_id"]] = Job(**body)
            elif kind == "execution":
                runs.append(JobExecution(**body))
        # Dicts keep insertion order and the views rely on it: restore creation order.
        self.things = dict(sorted(self.things.items(), key=lambda kv: kv[1].created_at))
        self.groups = dict(sorted(self.groups.items(), key=lambda kv: kv[1].created_at))
        self.jobs = dict(sorted(self.jobs.items(), key=lambda kv: kv[1].created_at))
        for job_id in self.jobs:
            self.executions[job_id] = {}
            self._counts[job_id] = dict.fromkeys(EXECUTION_STATUSES, 0)
            self._open[job_id] = 0
            self._processing[job_id] = []
        for run in sorted(runs, key=lambda r: (r.seq, r.execution_number)):
            self.executions.setdefault(run.job_id, {}).setdefault(run.thing_name, []).append(run)
            self._by_thing.setdefault(run.thing_name, []).append(run)
            pending = self._pending.setdefault(run.thing_name, [])
            if run.status in PENDING:
                pending.append(run)
                self._open[run.job_id] = self._open.get(run.job_id, 0) + 1
        for job_id, per_thing in self.executions.items():
            self._counts[job_id], self._processing[job_id] = recount(per_thing)

    def index_errors(self) -> list[str]:
        """Where the kept indexes differ from a recount over every execution ([] when they agree)."""
        errors = []
        for thing, runs in self._by_thing.items():
            pending = [r.key for r in runs if r.status in PENDING]
            if [r.key for r in self._pending.get(thing, [])] != pending:
                errors.append(f"pending executions of {thing}")
        for job_id, per_thing in self.executions.items():
            counts, processing = recount(per_thing)
            if self._counts.get(job_id) != counts:
                errors.append(f"status counts of {job_id}")
            if self._processing.get(job_id) != processing:
                errors.append(f"processing targets of {job_id}")
            if self._open.get(job_id) != sum(r.status in PENDING for runs in per_thing.values() for r in runs):
                errors.append(f"pending count of {job_id}")
        if list(self._pending) != list(self._by_thing):
            errors.append("order of things")
        return errors


def recount(per_thing: Mapping[str, list[JobExecution]]) -> tuple[dict[str, int], list[tuple[int, str]]]:
    """A job's status counts and processing targets, counted afresh from its executions (thing -> by number)."""
    counts = dict.fromkeys(EXECUTION_STATUSES, 0)
    processing = []
    for thing, runs in per_thing.items():
        counts[runs[-1].status] += 1
        if runs[-1].status == IN_PROGRESS:
            processing.append((runs[-1].seq, thing))
    return counts, sorted(processing)
