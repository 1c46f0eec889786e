"""The Jobs state machine: things, jobs and job executions, with no I/O and no threads.

The device API methods return the reply as a plain dict (the transport adds `clientToken` and
`timestamp`). The management methods return the resource itself, unwrapped (`describe_job_execution`
returns the JobExecution, not `{"execution": ...}`) and with `statusDetails` as the plain map (the
HTTP API nests it as `{"detailsMap": ...}`). Errors raise `ApiError`. Timestamps in views are integer
seconds since the epoch. Each state change appends the `notify` / `notify-next` messages it causes to
`outbox`; the transport drains them with `take_notifications()` and publishes them after its reply.
"""

from __future__ import annotations

import copy
import json
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock

REGION = "us-east-1"
ACCOUNT = "123456789012"
THING_ARN_PREFIX = f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/"
JOB_ARN_PREFIX = f"arn:aws:iot:{REGION}:{ACCOUNT}:job/"

QUEUED = "QUEUED"
IN_PROGRESS = "IN_PROGRESS"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
REJECTED = "REJECTED"
CANCELED = "CANCELED"
TIMED_OUT = "TIMED_OUT"
REMOVED = "REMOVED"
EXECUTION_STATUSES = (QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED, CANCELED)
PENDING = frozenset({QUEUED, IN_PROGRESS})
TERMINAL = frozenset({SUCCEEDED, FAILED, REJECTED, CANCELED, TIMED_OUT, REMOVED})
DEVICE_STATUSES = frozenset({IN_PROGRESS, FAILED, SUCCEEDED, REJECTED})

JOB_IN_PROGRESS = "IN_PROGRESS"
JOB_CANCELED = "CANCELED"
JOB_COMPLETED = "COMPLETED"
JOB_STATUSES = (JOB_IN_PROGRESS, JOB_CANCELED, JOB_COMPLETED)

# The device API's ErrorCode values (spec: ErrorResponse).
ERROR_CODES = (
    "InvalidTopic",
    "InvalidJson",
    "InvalidRequest",
    "InvalidStateTransition",
    "ResourceNotFound",
    "VersionMismatch",
    "InternalError",
    "RequestThrottled",
    "TerminalStateReached",
)
# The management API also needs this one (CreateJob with a job id in use).
RESOURCE_ALREADY_EXISTS = "ResourceAlreadyExists"

MAX_DOCUMENT_BYTES = 32 * 1024
MAX_DETAILS = 10
MAX_TIMEOUT_MINUTES = 10080

THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
JOB_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
DETAILS_KEY = re.compile(r"[a-zA-Z0-9:_-]{1,128}")


class ApiError(Exception):
    """A rejected request: `code` is one of ERROR_CODES (or RESOURCE_ALREADY_EXISTS)."""

    def __init__(self, code: str, message: str, execution_state: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.execution_state = execution_state

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.execution_state is not None:
            body["executionState"] = self.execution_state
        return body


@dataclass(frozen=True)
class Notification:
    """A `notify` or `notify-next` message for one thing; the transport adds `timestamp`."""

    thing: str
    kind: str  # "notify" or "notify-next"
    payload: dict[str, Any]

    @property
    def topic(self) -> str:
        return f"$aws/things/{self.thing}/jobs/{self.kind}"


@dataclass
class Thing:
    name: str
    thing_id: str
    created_at: float

    @property
    def arn(self) -> str:
        return THING_ARN_PREFIX + self.name


@dataclass
class Job:
    job_id: str
    document: dict[str, Any]
    document_text: str
    targets: list[str]  # thing ARNs, as AWS reports them
    target_selection: str
    created_at: float
    last_updated_at: float
    description: str | None = None
    timeout_config: dict[str, int] | None = None
    status: str = JOB_IN_PROGRESS
    force_canceled: bool = False
    comment: str | None = None
    reason_code: str | None = None
    completed_at: float | None = None

    @property
    def arn(self) -> str:
        return JOB_ARN_PREFIX + self.job_id

    @property
    def in_progress_timeout_min(self) -> int | None:
        return (self.timeout_config or {}).get("inProgressTimeoutInMinutes")


@dataclass
class JobExecution:
    job_id: str
    thing_name: str
    execution_number: int
    seq: int  # creation order across the model: the pending list is ordered by it
    queued_at: float
    last_updated_at: float
    status: str = QUEUED
    status_details: dict[str, str] = field(default_factory=dict)
    started_at: float | None = None
    version_number: int = 1
    force_canceled: bool = False
    step_deadline: float | None = None
    in_progress_deadline: float | None = None
    # Every applied change, oldest first: {"status", "statusDetails", "versionNumber", "time", "cause"}
    # where cause is created, start-next, update, canceled or timed-out.
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        return (self.job_id, self.execution_number)

    @property
    def deadline(self) -> float | None:
        deadlines = [d for d in (self.step_deadline, self.in_progress_deadline) if d is not None]
        return min(deadlines) if deadlines else None


Snapshot = tuple[frozenset[tuple[str, int]], tuple[str, int] | None]


class JobsModel:
    """Things, jobs and executions, and every rule of the device and management APIs."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.things: dict[str, Thing] = {}
        self.jobs: dict[str, Job] = {}
        # job id -> thing name -> executions of that job on that thing, by executionNumber
        self.executions: dict[str, dict[str, list[JobExecution]]] = {}
        self.outbox: list[Notification] = []
        self._by_thing: dict[str, list[JobExecution]] = {}
        self._seq = 0

    # ---- device API -------------------------------------------------------------------------

    def get_pending(self, thing: str) -> dict[str, Any]:
        check_thing_name(thing)
        pending = self.pending(thing)
        return {
            "inProgressJobs": [summary(r) for r in pending if r.status == IN_PROGRESS],
            "queuedJobs": [summary(r) for r in pending if r.status == QUEUED],
        }

    def start_next(
        self,
        thing: str,
        status_details: Mapping[str, Any] | None = None,
        step_timeout_min: int | None = None,
    ) -> dict[str, Any]:
        check_thing_name(thing)
        details = check_status_details(status_details)
        check_step_timeout(step_timeout_min)
        pending = self.pending(thing)
        if not pending:
            return {}
        run = pending[0]
        before = self._watch([thing])
        if run.status == QUEUED:
            self._apply(run, IN_PROGRESS, details, "start-next")
        # An execution already IN_PROGRESS keeps its details and version but still takes the new
        # step timer: the device asking again is the device saying it is still at work.
        self._set_step_timer(run, step_timeout_min)
        self._announce(before)
        return {"execution": self._device_view(run, include_document=True)}

    def describe(
        self,
        thing: str,
        job_id: str,
        execution_number: int | None = None,
        include_document: bool = True,
    ) -> dict[str, Any]:
        check_thing_name(thing)
        if job_id == "$next":
            pending = self.pending(thing)
            if not pending:
                return {}
            return {"execution": self._device_view(pending[0], include_document)}
        check_job_id(job_id)
        run = self._find(thing, job_id, execution_number)
        if run.status in TERMINAL:
            raise ApiError("TerminalStateReached", f"job execution {job_id} is {run.status}")
        return {"execution": self._device_view(run, include_document)}

    def update(
        self,
        thing: str,
        job_id: str,
        status: Any,
        status_details: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
        execution_number: int | None = None,
        include_state: bool = False,
        include_document: bool = False,
        step_timeout_min: int | None = None,
    ) -> dict[str, Any]:
        check_thing_name(thing)
        check_job_id(job_id)
        if not isinstance(status, str) or status not in DEVICE_STATUSES:
            raise ApiError(
                "InvalidRequest",
                f"status must be one of IN_PROGRESS, FAILED, SUCCEEDED, REJECTED, not {status!r}",
            )
        details = check_status_details(status_details)
        check_step_timeout(step_timeout_min)
        run = self._find(thing, job_id, execution_number)
        if run.status in TERMINAL:
            raise ApiError(
                "InvalidStateTransition",
                f"job execution {job_id} is {run.status} and cannot become {status}",
                execution_state(run),
            )
        if expected_version is not None and expected_version != run.version_number:
            raise ApiError(
                "VersionMismatch",
                f"expected version {expected_version}, current version is {run.version_number}",
                execution_state(run),
            )
        before = self._watch([thing])
        self._apply(run, status, details, "update")
        if status == IN_PROGRESS:
            self._set_step_timer(run, step_timeout_min)
        self._announce(before)
        response: dict[str, Any] = {}
        if include_state:
            response["executionState"] = execution_state(run)
        if include_document:
            response["jobDocument"] = copy.deepcopy(self.jobs[job_id].document)
        return response

    # ---- management API ---------------------------------------------------------------------

    def create_thing(self, name: str) -> dict[str, Any]:
        check_thing_name(name)
        thing = self.things.get(name)
        if thing is None:
            thing = Thing(name, str(uuid.uuid4()), self.clock.now())
            self.things[name] = thing
        return {"thingName": thing.name, "thingArn": thing.arn, "thingId": thing.thing_id}

    def create_job(
        self,
        job_id: str,
        targets: Iterable[str],
        document: str | Mapping[str, Any],
        target_selection: str = "SNAPSHOT",
        description: str | None = None,
        timeout_config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        check_job_id(job_id)
        if job_id in self.jobs:
            raise ApiError(RESOURCE_ALREADY_EXISTS, f"job {job_id} already exists")
        parsed, text = check_document(document)
        if target_selection not in ("SNAPSHOT", "CONTINUOUS"):
            raise ApiError("InvalidRequest", "targetSelection must be SNAPSHOT or CONTINUOUS")
        if description is not None and (not isinstance(description, str) or len(description) > 2028):
            raise ApiError("InvalidRequest", "description must be a string of at most 2028 characters")
        timeouts = check_timeout_config(timeout_config)
        names = self._target_things(targets)
        now = self.clock.now()
        job = Job(
            job_id=job_id,
            document=parsed,
            document_text=text,
            targets=[self.things[n].arn for n in names],
            target_selection=target_selection,
            created_at=now,
            last_updated_at=now,
            description=description,
            timeout_config=timeouts,
        )
        self.jobs[job_id] = job
        self.executions[job_id] = {}
        before = self._watch(names)
        for name in names:
            self._add_execution(job, name)
        self._announce(before)
        response = {"jobArn": job.arn, "jobId": job_id}
        if description is not None:
            response["description"] = description
        return response

    def describe_job(self, job_id: str) -> dict[str, Any]:
        """The Job (management API shape)."""
        return self._job_view(self._job(job_id))

    def get_job_document(self, job_id: str) -> str:
        """The document exactly as it was given to create_job (as JSON text)."""
        return self._job(job_id).document_text

    def list_jobs(self, status: str | None = None) -> list[dict[str, Any]]:
        """JobSummary objects in creation order."""
        if status is not None and status not in JOB_STATUSES:
            raise ApiError("InvalidRequest", f"unknown job status {status!r}")
        return [self._job_summary(j) for j in self.jobs.values() if status is None or j.status == status]

    def describe_job_execution(
        self, thing: str, job_id: str, execution_number: int | None = None
    ) -> dict[str, Any]:
        """The JobExecution in any status (management API shape, statusDetails as a plain map)."""
        check_thing_name(thing)
        check_job_id(job_id)
        return self._management_view(self._find(thing, job_id, execution_number))

    def list_job_executions_for_thing(self, thing: str, status: str | None = None) -> list[dict[str, Any]]:
        """JobExecutionSummaryForThing objects in creation order."""
        check_thing_name(thing)
        check_status_filter(status)
        runs = [r for r in self._by_thing.get(thing, []) if status is None or r.status == status]
        return [{"jobId": r.job_id, "jobExecutionSummary": management_summary(r)} for r in runs]

    def list_job_executions_for_job(self, job_id: str, status: str | None = None) -> list[dict[str, Any]]:
        """JobExecutionSummaryForJob objects in creation order."""
        self._job(job_id)
        check_status_filter(status)
        runs = [r for r in self._job_runs(job_id) if status is None or r.status == status]
        return [
            {"thingArn": THING_ARN_PREFIX + r.thing_name, "jobExecutionSummary": management_summary(r)}
            for r in runs
        ]

    def cancel_job(
        self,
        job_id: str,
        force: bool = False,
        comment: str | None = None,
        reason_code: str | None = None,
    ) -> dict[str, Any]:
        job = self._job(job_id)
        if job.status == JOB_COMPLETED:
            raise ApiError("InvalidRequest", f"job {job_id} is already COMPLETED")
        now = self.clock.now()
        job.status = JOB_CANCELED
        job.force_canceled = job.force_canceled or force
        job.comment = comment if comment is not None else job.comment
        job.reason_code = reason_code if reason_code is not None else job.reason_code
        job.last_updated_at = now
        doomed = [
            r for r in self._job_runs(job_id) if r.status == QUEUED or (force and r.status == IN_PROGRESS)
        ]
        before = self._watch(dict.fromkeys(r.thing_name for r in doomed))
        for run in doomed:
            run.force_canceled = force
            self._apply(run, CANCELED, None, "canceled")
        self._announce(before)
        response = {"jobArn": job.arn, "jobId": job_id}
        if job.description is not None:
            response["description"] = job.description
        return response

    def cancel_job_execution(
        self,
        job_id: str,
        thing: str,
        force: bool = False,
        expected_version: int | None = None,
        status_details: Mapping[str, Any] | None = None,
    ) -> None:
        check_thing_name(thing)
        check_job_id(job_id)
        details = check_status_details(status_details)
        run = self._find(thing, job_id, None)
        if run.status in TERMINAL:
            raise ApiError(
                "InvalidStateTransition", f"job execution is already {run.status}", execution_state(run)
            )
        if run.status == IN_PROGRESS and not force:
            raise ApiError(
                "InvalidStateTransition",
                "an IN_PROGRESS job execution can be canceled only with force",
                execution_state(run),
            )
        if expected_version is not None and expected_version != run.version_number:
            raise ApiError(
                "VersionMismatch",
                f"expected version {expected_version}, current version is {run.version_number}",
                execution_state(run),
            )
        before = self._watch([thing])
        run.force_canceled = force
        self._apply(run, CANCELED, details, "canceled")
        self._announce(before)

    def delete_job(self, job_id: str, force: bool = False) -> None:
        job = self._job(job_id)
        if job.status == JOB_IN_PROGRESS and not force:
            raise ApiError("InvalidStateTransition", f"job {job_id} is IN_PROGRESS: delete it with force")
        runs = self._job_runs(job_id)
        before = self._watch(dict.fromkeys(r.thing_name for r in runs))
        for run in runs:
            self._by_thing[run.thing_name].remove(run)
        del self.executions[job_id]
        del self.jobs[job_id]
        self._announce(before)

    def delete_job_execution(
        self, job_id: str, thing: str, execution_number: int, force: bool = False
    ) -> None:
        check_thing_name(thing)
        check_job_id(job_id)
        run = self._find(thing, job_id, execution_number)
        if run.status not in TERMINAL and not force:
            raise ApiError(
                "InvalidStateTransition",
                f"job execution is {run.status}: delete it with force",
                execution_state(run),
            )
        before = self._watch([thing])
        self.executions[job_id][thing].remove(run)
        if not self.executions[job_id][thing]:
            del self.executions[job_id][thing]
        self._by_thing[thing].remove(run)
        self._settle_job(self.jobs[job_id])
        self._announce(before)

    def tick(self) -> list[tuple[str, str]]:
        """Time out every execution whose step or in-progress timer is due; returns (thing, jobId)s."""
        now = self.clock.now()
        due = [
            run
            for runs in self._by_thing.values()
            for run in runs
            if run.status in PENDING and run.deadline is not None and run.deadline <= now
        ]
        before = self._watch(dict.fromkeys(r.thing_name for r in due))
        for run in due:
            self._apply(run, TIMED_OUT, None, "timed-out")
        self._announce(before)
        return [(r.thing_name, r.job_id) for r in due]

    def next_deadline(self) -> float | None:
        """When the next timer falls due, so a driver knows how long it may wait."""
        deadlines = [
            r.deadline
            for runs in self._by_thing.values()
            for r in runs
            if r.status in PENDING and r.deadline is not None
        ]
        return min(deadlines) if deadlines else None

    # ---- inspection -------------------------------------------------------------------------

    def pending(self, thing: str) -> list[JobExecution]:
        """The thing's pending executions in `$next` order: IN_PROGRESS first, each by creation."""
        runs = [r for r in self._by_thing.get(thing, []) if r.status in PENDING]
        return sorted(runs, key=lambda r: (r.status != IN_PROGRESS, r.seq))

    def execution(self, thing: str, job_id: str, execution_number: int | None = None) -> JobExecution | None:
        runs = self.executions.get(job_id, {}).get(thing, [])
        if execution_number is None:
            return runs[-1] if runs else None
        return next((r for r in runs if r.execution_number == execution_number), None)

    def history(self, thing: str, job_id: str, execution_number: int | None = None) -> list[dict[str, Any]]:
        """Every applied change of the execution (the latest one unless numbered); [] if none."""
        run = self.execution(thing, job_id, execution_number)
        return copy.deepcopy(run.history) if run else []

    def take_notifications(self) -> list[Notification]:
        taken, self.outbox = self.outbox, []
        return taken

    # ---- internals --------------------------------------------------------------------------

    def _job(self, job_id: str) -> Job:
        check_job_id(job_id)
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError("ResourceNotFound", f"job {job_id} does not exist")
        return job

    def _job_runs(self, job_id: str) -> list[JobExecution]:
        runs = [r for per_thing in self.executions.get(job_id, {}).values() for r in per_thing]
        return sorted(runs, key=lambda r: r.seq)

    def _find(self, thing: str, job_id: str, execution_number: int | None) -> JobExecution:
        run = self.execution(thing, job_id, execution_number)
        if run is None:
            which = "" if execution_number is None else f" number {execution_number}"
            raise ApiError("ResourceNotFound", f"no execution{which} of job {job_id} for thing {thing}")
        return run

    def _target_things(self, targets: Iterable[str]) -> list[str]:
        if isinstance(targets, str):
            raise ApiError("InvalidRequest", "targets must be a list")
        names: list[str] = []
        for target in targets:
            if not isinstance(target, str):
                raise ApiError("InvalidRequest", f"target {target!r} is not a string")
            if target.startswith("arn:"):
                if not target.startswith(THING_ARN_PREFIX):
                    raise ApiError("InvalidRequest", f"target {target} is not a thing ARN of this account")
                name = target[len(THING_ARN_PREFIX) :]
            else:
                name = target
            if name not in self.things:
                raise ApiError("ResourceNotFound", f"thing {name} does not exist")
            if name not in names:
                names.append(name)
        if not names:
            raise ApiError("InvalidRequest", "a job needs at least one target")
        return names

    def _add_execution(self, job: Job, thing: str) -> JobExecution:
        runs = self.executions[job.job_id].setdefault(thing, [])
        now = self.clock.now()
        self._seq += 1
        run = JobExecution(
            job_id=job.job_id,
            thing_name=thing,
            execution_number=len(runs) + 1,
            seq=self._seq,
            queued_at=now,
            last_updated_at=now,
        )
        run.history.append(change(run, "created"))
        runs.append(run)
        self._by_thing.setdefault(thing, []).append(run)
        return run

    def _apply(self, run: JobExecution, status: str, details: dict[str, str] | None, cause: str) -> None:
        now = self.clock.now()
        if status == IN_PROGRESS and run.started_at is None:
            run.started_at = now
            minutes = self.jobs[run.job_id].in_progress_timeout_min
            if minutes is not None:
                run.in_progress_deadline = now + minutes * 60
        run.status = status
        if details is not None:
            run.status_details = dict(details)
        run.version_number += 1
        run.last_updated_at = now
        if status in TERMINAL:
            run.step_deadline = None
            run.in_progress_deadline = None
        run.history.append(change(run, cause))
        self._settle_job(self.jobs[run.job_id])

    def _set_step_timer(self, run: JobExecution, minutes: int | None) -> None:
        if minutes is None:
            return
        run.step_deadline = None if minutes == -1 else self.clock.now() + minutes * 60

    def _settle_job(self, job: Job) -> None:
        # A SNAPSHOT job is done once every execution is; a CONTINUOUS one waits for new targets.
        if job.status != JOB_IN_PROGRESS or job.target_selection != "SNAPSHOT":
            return
        if all(r.status in TERMINAL for r in self._job_runs(job.job_id)):
            now = self.clock.now()
            job.status = JOB_COMPLETED
            job.completed_at = now
            job.last_updated_at = now

    def _snapshot(self, thing: str) -> Snapshot:
        pending = self.pending(thing)
        return frozenset(r.key for r in pending), (pending[0].key if pending else None)

    def _watch(self, things: Iterable[str]) -> dict[str, Snapshot]:
        # Callers pass ordered collections (never sets) so notifications go out in a stable order.
        return {thing: self._snapshot(thing) for thing in things}

    def _announce(self, before: dict[str, Snapshot]) -> None:
        # notify: the set of pending executions changed; notify-next: what `$next` returns changed.
        for thing, (members, head) in before.items():
            after_members, after_head = self._snapshot(thing)
            pending = self.pending(thing)
            if after_members != members:
                jobs: dict[str, list[dict[str, Any]]] = {}
                for run in pending:
                    jobs.setdefault(run.status, []).append(summary(run))
                self.outbox.append(Notification(thing, "notify", {"jobs": jobs}))
            if after_head != head:
                payload = {"execution": self._device_view(pending[0], True)} if pending else {}
                self.outbox.append(Notification(thing, "notify-next", payload))

    def _device_view(self, run: JobExecution, include_document: bool) -> dict[str, Any]:
        view: dict[str, Any] = {"jobId": run.job_id, "thingName": run.thing_name}
        if include_document:
            view["jobDocument"] = copy.deepcopy(self.jobs[run.job_id].document)
        view["status"] = run.status
        view["statusDetails"] = dict(run.status_details)
        view["queuedAt"] = int(run.queued_at)
        if run.started_at is not None:
            view["startedAt"] = int(run.started_at)
        view["lastUpdatedAt"] = int(run.last_updated_at)
        view["versionNumber"] = run.version_number
        view["executionNumber"] = run.execution_number
        return view

    def _management_view(self, run: JobExecution) -> dict[str, Any]:
        view: dict[str, Any] = {
            "jobId": run.job_id,
            "status": run.status,
            "forceCanceled": run.force_canceled,
            "statusDetails": dict(run.status_details),
            "thingArn": THING_ARN_PREFIX + run.thing_name,
            "queuedAt": int(run.queued_at),
        }
        if run.started_at is not None:
            view["startedAt"] = int(run.started_at)
        view["lastUpdatedAt"] = int(run.last_updated_at)
        view["executionNumber"] = run.execution_number
        view["versionNumber"] = run.version_number
        if run.status in PENDING and run.deadline is not None:
            view["approximateSecondsBeforeTimedOut"] = max(0, int(run.deadline - self.clock.now()))
        return view

    def _job_summary(self, job: Job) -> dict[str, Any]:
        view: dict[str, Any] = {
            "jobArn": job.arn,
            "jobId": job.job_id,
            "targetSelection": job.target_selection,
            "status": job.status,
            "createdAt": int(job.created_at),
            "lastUpdatedAt": int(job.last_updated_at),
        }
        if job.completed_at is not None:
            view["completedAt"] = int(job.completed_at)
        return view

    def _job_view(self, job: Job) -> dict[str, Any]:
        view = self._job_summary(job)
        view["forceCanceled"] = job.force_canceled
        view["targets"] = list(job.targets)
        for key, value in (
            ("description", job.description),
            ("comment", job.comment),
            ("reasonCode", job.reason_code),
        ):
            if value is not None:
                view[key] = value
        counts = dict.fromkeys(EXECUTION_STATUSES, 0)
        for per_thing in self.executions.get(job.job_id, {}).values():
            counts[per_thing[-1].status] += 1
        view["jobProcessDetails"] = {
            "numberOfCanceledThings": counts[CANCELED],
            "numberOfSucceededThings": counts[SUCCEEDED],
            "numberOfFailedThings": counts[FAILED],
            "numberOfRejectedThings": counts[REJECTED],
            "numberOfQueuedThings": counts[QUEUED],
            "numberOfInProgressThings": counts[IN_PROGRESS],
            "numberOfRemovedThings": counts[REMOVED],
            "numberOfTimedOutThings": counts[TIMED_OUT],
        }
        if job.timeout_config is not None:
            view["timeoutConfig"] = dict(job.timeout_config)
        return view


# ---- views and validation (module level so the transports can reuse them) -------------------


def change(run: JobExecution, cause: str) -> dict[str, Any]:
    return {
        "status": run.status,
        "statusDetails": dict(run.status_details),
        "versionNumber": run.version_number,
        "time": run.last_updated_at,
        "cause": cause,
    }


def summary(run: JobExecution) -> dict[str, Any]:
    """The device API's JobExecutionSummary."""
    view: dict[str, Any] = {"jobId": run.job_id, "queuedAt": int(run.queued_at)}
    if run.started_at is not None:
        view["startedAt"] = int(run.started_at)
    view["lastUpdatedAt"] = int(run.last_updated_at)
    view["versionNumber"] = run.version_number
    view["executionNumber"] = run.execution_number
    return view


def management_summary(run: JobExecution) -> dict[str, Any]:
    """The management API's JobExecutionSummary (it has a status and no version)."""
    view: dict[str, Any] = {"status": run.status, "queuedAt": int(run.queued_at)}
    if run.started_at is not None:
        view["startedAt"] = int(run.started_at)
    view["lastUpdatedAt"] = int(run.last_updated_at)
    view["executionNumber"] = run.execution_number
    return view


def execution_state(run: JobExecution) -> dict[str, Any]:
    """The device API's JobExecutionState."""
    return {
        "status": run.status,
        "statusDetails": dict(run.status_details),
        "versionNumber": run.version_number,
    }


def check_thing_name(name: Any) -> None:
    if not isinstance(name, str) or not THING_NAME.fullmatch(name):
        raise ApiError("InvalidRequest", f"thing name {name!r} must be 1-128 characters of [a-zA-Z0-9:_-]")


def check_job_id(job_id: Any) -> None:
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise ApiError("InvalidRequest", f"job id {job_id!r} must be 1-64 characters of [a-zA-Z0-9_-]")


def check_status_details(details: Any) -> dict[str, str] | None:
    if details is None:
        return None
    if not isinstance(details, Mapping):
        raise ApiError("InvalidRequest", "statusDetails must be an object of string values")
    if len(details) > MAX_DETAILS:
        raise ApiError("InvalidRequest", f"statusDetails has {len(details)} entries, at most {MAX_DETAILS}")
    for key, value in details.items():
        if not isinstance(key, str) or not DETAILS_KEY.fullmatch(key):
            raise ApiError("InvalidRequest", f"statusDetails key {key!r} must be 1-128 of [a-zA-Z0-9:_-]")
        if not isinstance(value, str) or not 1 <= len(value) <= 1024:
            raise ApiError("InvalidRequest", f"statusDetails[{key!r}] must be a string of 1-1024 characters")
        if any(unicodedata.category(ch).startswith("C") for ch in value):
            raise ApiError("InvalidRequest", f"statusDetails[{key!r}] contains a control character")
    return dict(details)


def check_step_timeout(minutes: Any) -> None:
    if minutes is None:
        return
    if isinstance(minutes, bool) or not isinstance(minutes, int):
        raise ApiError("InvalidRequest", "stepTimeoutInMinutes must be an integer")
    if minutes != -1 and not 1 <= minutes <= MAX_TIMEOUT_MINUTES:
        raise ApiError("InvalidRequest", f"stepTimeoutInMinutes must be 1-{MAX_TIMEOUT_MINUTES}, or -1")


def check_timeout_config(config: Any) -> dict[str, int] | None:
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise ApiError("InvalidRequest", "timeoutConfig must be an object")
    minutes = config.get("inProgressTimeoutInMinutes")
    if minutes is None:
        return None
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_TIMEOUT_MINUTES:
        raise ApiError(
            "InvalidRequest", f"timeoutConfig.inProgressTimeoutInMinutes must be 1-{MAX_TIMEOUT_MINUTES}"
        )
    return {"inProgressTimeoutInMinutes": minutes}


def check_status_filter(status: str | None) -> None:
    if status is not None and status not in EXECUTION_STATUSES:
        raise ApiError("InvalidRequest", f"unknown job execution status {status!r}")


def check_document(document: Any) -> tuple[dict[str, Any], str]:
    """Returns the document parsed (what devices receive) and as text (what GetJobDocument returns)."""
    if isinstance(document, str):
        text = document
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise ApiError("InvalidRequest", f"the job document is not JSON: {exc}") from None
    elif isinstance(document, Mapping):
        parsed = copy.deepcopy(dict(document))
        text = json.dumps(parsed)
    else:
        raise ApiError("InvalidRequest", "the job document must be a JSON object or its text")
    if not isinstance(parsed, dict):
        raise ApiError("InvalidRequest", "the job document must be a JSON object")
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise ApiError("InvalidRequest", f"the job document is larger than {MAX_DOCUMENT_BYTES} bytes")
    return parsed, text
