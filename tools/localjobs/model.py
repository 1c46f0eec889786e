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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .clock import Clock

REGION = "us-east-1"
ACCOUNT = "123456789012"
THING_ARN_PREFIX = f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/"
JOB_ARN_PREFIX = f"arn:aws:iot:{REGION}:{ACCOUNT}:job/"
GROUP_ARN_PREFIX = f"arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/"

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
# What CancelJob records when an abortConfig criterion fires (AWS fills reasonCode itself then).
ABORT_REASON_CODE = "ABORT_CRITERIA_MET"
ABORT_FAILURES = {
    "FAILED": frozenset({FAILED}),
    "REJECTED": frozenset({REJECTED}),
    "TIMED_OUT": frozenset({TIMED_OUT}),
    "ALL": frozenset({FAILED, REJECTED, TIMED_OUT}),
}
EXECUTED = frozenset({SUCCEEDED, FAILED, REJECTED, TIMED_OUT})
MAX_TARGETS = 100
DEFAULT_MAX_PER_MINUTE = 1000
ROLLOUT_WINDOW_SECONDS = 60.0

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
GROUP_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
PARAMETER = re.compile(r"\$\{aws:iot:parameter:([a-zA-Z0-9:_-]{1,128})\}")
PRESIGNED = re.compile(r"\$\{aws:iot:s3-presigned-url(?:-v2)?:([^}]*)\}")
REASON_CODE = re.compile(r"[A-Z0-9_]{1,128}")
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
    attributes: dict[str, str] = field(default_factory=dict)
    version: int = 1

    @property
    def arn(self) -> str:
        return THING_ARN_PREFIX + self.name


@dataclass
class ThingGroup:
    name: str
    group_id: str
    created_at: float
    description: str | None = None
    members: list[str] = field(default_factory=list)  # thing names, in the order they were added
    version: int = 1

    @property
    def arn(self) -> str:
        return GROUP_ARN_PREFIX + self.name


@dataclass
class Job:
    job_id: str
    document: dict[str, Any]
    document_text: str  # after documentParameters substitution: what GetJobDocument returns
    targets: list[str]  # thing and thing-group ARNs, as AWS reports them
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
    raw_document_text: str | None = None  # before substitution, when documentParameters changed it
    document_source: str | None = None
    document_parameters: dict[str, str] | None = None
    presigned_url_config: dict[str, Any] | None = None
    rollout_config: dict[str, Any] | None = None
    abort_config: dict[str, Any] | None = None
    # Staged rollout: things still waiting for an execution, and the current one-minute window.
    backlog: list[str] = field(default_factory=list)
    window_start: float | None = None
    window_count: int = 0
    rate: int | None = None
    notified_since_increase: int = 0
    succeeded_at_increase: int = 0

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
    # where cause is created, start-next, update, canceled, timed-out or removed.
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        return (self.job_id, self.execution_number)

    @property
    def deadline(self) -> float | None:
        deadlines = [d for d in (self.step_deadline, self.in_progress_deadline) if d is not None]
        return min(deadlines) if deadlines else None


Snapshot = tuple[frozenset[tuple[str, int]], tuple[str, int] | None]
META = ("meta", "model")


def execution_key(run: JobExecution) -> tuple[str, str]:
    """The execution's record key in `to_records`."""
    return ("execution", json.dumps([run.job_id, run.thing_name, run.execution_number]))


class JobsModel:
    """Things, jobs and executions, and every rule of the device and management APIs."""

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
        # many things' latest execution of a job is in each status, and each job's pending executions.
        self._pending: dict[str, list[JobExecution]] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._open: dict[str, int] = {}
        # Records changed since take_changes(): (kind, key) -> the object whose record to write, None when it
        # is gone. Marking an object once per call is enough: its record is made when the changes are taken.
        self.changed: dict[tuple[str, str], object | None] = {META: self}

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
            response["jobDocument"] = self._render(self.jobs[job_id])
        return response

    # ---- management API ---------------------------------------------------------------------

    def create_thing(self, name: str, attributes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Idempotent, as in AWS: the same name again returns the thing, unless the attributes differ."""
        check_thing_name(name)
        if attributes is not None and (
            not isinstance(attributes, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items())
        ):
            raise ApiError("InvalidRequest", "attributes must be an object of string values")
        thing = self.things.get(name)
        if thing is None:
            thing = Thing(name, str(uuid.uuid4()), self.clock.now(), dict(attributes or {}))
            self.things[name] = thing
            self.changed[("thing", name)] = thing
        elif attributes is not None and dict(attributes) != thing.attributes:
            raise ApiError(RESOURCE_ALREADY_EXISTS, f"thing {name} exists with other attributes")
        return {"thingName": thing.name, "thingArn": thing.arn, "thingId": thing.thing_id}

    def create_job(
        self,
        job_id: str,
        targets: Iterable[str],
        document: str | Mapping[str, Any] | None = None,
        target_selection: str = "SNAPSHOT",
        description: str | None = None,
        timeout_config: Mapping[str, Any] | None = None,
        document_source: str | None = None,
        document_parameters: Mapping[str, Any] | None = None,
        presigned_url_config: Mapping[str, Any] | None = None,
        rollout_config: Mapping[str, Any] | None = None,
        abort_config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        check_job_id(job_id)
        if job_id in self.jobs:
            raise ApiError(RESOURCE_ALREADY_EXISTS, f"job {job_id} already exists")
        if (document is None) == (document_source is None):
            raise ApiError("InvalidRequest", "give exactly one of document and documentSource")
        if document_source is not None:
            document = self._fetch(document_source)
        parameters = check_parameters(document_parameters)
        raw_parsed, raw_text = check_document(document)
        parsed, text = raw_parsed, raw_text
        if parameters:
            parsed = substitute(raw_parsed, PARAMETER, lambda m: parameters.get(m.group(1), m.group(0)))
            text = json.dumps(parsed)
        if target_selection not in ("SNAPSHOT", "CONTINUOUS"):
            raise ApiError("InvalidRequest", "targetSelection must be SNAPSHOT or CONTINUOUS")
        check_text("description", description)
        timeouts = check_timeout_config(timeout_config)
        presigned = check_presigned_url_config(presigned_url_config)
        rollout = check_rollout_config(rollout_config)
        abort = check_abort_config(abort_config)
        arns, names = self._resolve_targets(targets)
        now = self.clock.now()
        job = Job(
            job_id=job_id,
            document=parsed,
            document_text=text,
            targets=arns,
            target_selection=target_selection,
            created_at=now,
            last_updated_at=now,
            description=description,
            timeout_config=timeouts,
            raw_document_text=raw_text if parameters else None,
            document_source=document_source,
            document_parameters=parameters or None,
            presigned_url_config=presigned,
            rollout_config=rollout,
            abort_config=abort,
        )
        self.jobs[job_id] = job
        self.executions[job_id] = {}
        self._counts[job_id] = dict.fromkeys(EXECUTION_STATUSES, 0)
        self._open[job_id] = 0
        self.changed[("job", job_id)] = job
        before = self._watch(names)
        self._queue(job, names)
        self._settle_job(job)
        self._announce(before)
        response = {"jobArn": job.arn, "jobId": job_id}
        if description is not None:
            response["description"] = description
        return response

    def describe_job(self, job_id: str, before_substitution: bool = False) -> dict[str, Any]:
        """The Job (management API shape)."""
        view = self._job_view(self._job(job_id))
        if before_substitution:
            view.pop("documentParameters", None)
        return view

    def get_job_document(self, job_id: str, before_substitution: bool = False) -> str:
        """The document as given to create_job (as JSON text), documentParameters filled in unless asked not to.

        Presigned-URL placeholders stay as they are: they are replaced only when a device receives the document.
        """
        job = self._job(job_id)
        if before_substitution and job.raw_document_text is not None:
            return job.raw_document_text
        return job.document_text

    def list_jobs(
        self,
        status: str | None = None,
        target_selection: str | None = None,
        thing_group_name: str | None = None,
        thing_group_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """JobSummary objects in creation order."""
        if status is not None and status not in JOB_STATUSES:
            raise ApiError("InvalidRequest", f"unknown job status {status!r}")
        if target_selection is not None and target_selection not in ("SNAPSHOT", "CONTINUOUS"):
            raise ApiError("InvalidRequest", f"unknown targetSelection {target_selection!r}")
        group_arns: set[str] | None = None
        if thing_group_name is not None or thing_group_id is not None:
            group_arns = {
                g.arn
                for g in self.groups.values()
                if thing_group_name in (None, g.name) and thing_group_id in (None, g.group_id)
            }
        return [
            self._job_summary(j)
            for j in self.jobs.values()
            if (status is None or j.status == status)
            and (target_selection is None or j.target_selection == target_selection)
            and (group_arns is None or group_arns.intersection(j.targets))
        ]

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
        if reason_code is not None and not REASON_CODE.fullmatch(reason_code):
            raise ApiError("InvalidRequest", "reasonCode must be 1-128 of [A-Z0-9_]")
        check_text("comment", comment)
        before = self._watch(dict.fromkeys(r.thing_name for r in self._doomed(job, force)))
        self._cancel(job, force, comment, reason_code)
        self._announce(before)
        response = {"jobArn": job.arn, "jobId": job_id}
        if job.description is not None:
            response["description"] = job.description
        return response

    def _doomed(self, job: Job, force: bool) -> list[JobExecution]:
        return [r for r in self._job_runs(job.job_id) if r.status == QUEUED or (force and r.status == IN_PROGRESS)]

    def _cancel(self, job: Job, force: bool, comment: str | None, reason_code: str | None) -> None:
        self.changed[("job", job.job_id)] = job
        job.status = JOB_CANCELED
        job.force_canceled = job.force_canceled or force
        job.comment = comment if comment is not None else job.comment
        job.reason_code = reason_code if reason_code is not None else job.reason_code
        job.last_updated_at = self.clock.now()
        job.backlog = []
        job.window_start = None
        for run in self._doomed(job, force):
            run.force_canceled = force
            self._apply(run, CANCELED, None, "canceled")

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
        # Deletion completes within the call, so DELETION_IN_PROGRESS is never observed: a second
        # delete or a cancel of the same job finds nothing (ResourceNotFound).
        job = self._job(job_id)
        if job.status == JOB_IN_PROGRESS and not force:
            raise ApiError("InvalidStateTransition", f"job {job_id} is IN_PROGRESS: delete it with force")
        runs = self._job_runs(job_id)
        before = self._watch(dict.fromkeys(r.thing_name for r in runs))
        for run in runs:
            self._by_thing[run.thing_name].remove(run)
            if run in self._pending[run.thing_name]:
                self._pending[run.thing_name].remove(run)
            self.changed[execution_key(run)] = None
        del self.executions[job_id]
        del self.jobs[job_id]
        del self._counts[job_id]
        del self._open[job_id]
        self.changed[("job", job_id)] = None
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
        runs = self.executions[job_id][thing]
        if runs[-1] is run:
            self._counts[job_id][run.status] -= 1
            if len(runs) > 1:
                self._counts[job_id][runs[-2].status] += 1
        runs.remove(run)
        if not runs:
            del self.executions[job_id][thing]
        self._by_thing[thing].remove(run)
        if run in self._pending[thing]:
            self._pending[thing].remove(run)
            self._open[job_id] -= 1
        self.changed[execution_key(run)] = None
        self._settle_job(self.jobs[job_id])
        self._announce(before)

    def update_job(
        self,
        job_id: str,
        description: str | None = None,
        presigned_url_config: Mapping[str, Any] | None = None,
        rollout_config: Mapping[str, Any] | None = None,
        abort_config: Mapping[str, Any] | None = None,
        timeout_config: Mapping[str, Any] | None = None,
    ) -> None:
        """Changes only what is given; a new timeoutConfig applies to executions started from now on."""
        job = self._job(job_id)
        check_text("description", description)
        presigned = check_presigned_url_config(presigned_url_config)
        rollout = check_rollout_config(rollout_config)
        abort = check_abort_config(abort_config)
        timeouts = check_timeout_config(timeout_config)
        if description is not None:
            job.description = description
        if presigned is not None:
            job.presigned_url_config = presigned
        if rollout is not None:
            job.rollout_config = rollout
            job.rate = None
        if abort is not None:
            job.abort_config = abort
        if timeouts is not None:
            job.timeout_config = timeouts
        job.last_updated_at = self.clock.now()
        self.changed[("job", job_id)] = job
        before = self._watch(dict.fromkeys(job.backlog))
        self._settle_job(job)
        self._announce(before)

    def associate_targets_with_job(
        self, job_id: str, targets: Iterable[str], comment: str | None = None
    ) -> dict[str, Any]:
        job = self._job(job_id)
        check_text("comment", comment)
        if job.target_selection != "CONTINUOUS":
            raise ApiError("InvalidRequest", f"job {job_id} is not CONTINUOUS")
        if job.status != JOB_IN_PROGRESS:
            raise ApiError("InvalidRequest", f"job {job_id} is {job.status}, not IN_PROGRESS")
        arns, names = self._resolve_targets(targets)
        new_arns = [a for a in arns if a not in job.targets]
        if len(job.targets) + len(new_arns) > MAX_TARGETS:
            raise ApiError("LimitExceeded", f"a job has at most {MAX_TARGETS} targets")
        job.targets.extend(new_arns)
        self.changed[("job", job_id)] = job
        if comment is not None:
            job.comment = comment
        job.last_updated_at = self.clock.now()
        fresh = [n for n in names if not self._has_pending(job, n)]
        before = self._watch(fresh)
        self._queue(job, fresh)
        self._announce(before)
        response = {"jobArn": job.arn, "jobId": job_id}
        if job.description is not None:
            response["description"] = job.description
        return response

    # ---- registry: things and thing groups ----------------------------------------------------

    def describe_thing(self, name: str) -> dict[str, Any]:
        thing = self._thing(name)
        return {
            "defaultClientId": thing.name,
            "thingName": thing.name,
            "thingId": thing.thing_id,
            "thingArn": thing.arn,
            "attributes": dict(thing.attributes),
            "version": thing.version,
        }

    def list_things(self) -> list[dict[str, Any]]:
        return [
            {"thingName": t.name, "thingArn": t.arn, "attributes": dict(t.attributes), "version": t.version}
            for t in self.things.values()
        ]

    def delete_thing(self, name: str) -> None:
        """Pending executions of the thing become REMOVED; its place in any rollout is dropped."""
        self._thing(name)
        before = self._watch([name])
        for run in list(self._by_thing.get(name, [])):
            if run.status in PENDING:
                self._apply(run, REMOVED, None, "removed")
        for job in self.jobs.values():
            if name in job.backlog:
                job.backlog.remove(name)
                self.changed[("job", job.job_id)] = job
                self._settle_job(job)
        for group in self.groups.values():
            if name in group.members:
                group.members.remove(name)
                self.changed[("group", group.name)] = group
        del self.things[name]
        self.changed[("thing", name)] = None
        self._announce(before)

    def create_thing_group(self, name: str, description: str | None = None) -> dict[str, Any]:
        if not isinstance(name, str) or not GROUP_NAME.fullmatch(name):
            raise ApiError("InvalidRequest", f"thing group name {name!r} must be 1-128 of [a-zA-Z0-9:_-]")
        check_text("thingGroupDescription", description)
        group = self.groups.get(name)
        if group is None:
            group = ThingGroup(name, str(uuid.uuid4()), self.clock.now(), description)
            self.groups[name] = group
            self.changed[("group", name)] = group
        elif group.description != description:
            raise ApiError(RESOURCE_ALREADY_EXISTS, f"thing group {name} exists with other properties")
        return {"thingGroupName": group.name, "thingGroupArn": group.arn, "thingGroupId": group.group_id}

    def describe_thing_group(self, name: str) -> dict[str, Any]:
        group = self._group(name)
        view: dict[str, Any] = {
            "thingGroupName": group.name,
            "thingGroupId": group.group_id,
            "thingGroupArn": group.arn,
            "version": group.version,
            "thingGroupProperties": {},
            "thingGroupMetadata": {"creationDate": int(group.created_at)},
        }
        if group.description is not None:
            view["thingGroupProperties"]["thingGroupDescription"] = group.description
        return view

    def list_things_in_thing_group(self, name: str) -> list[str]:
        return list(self._group(name).members)

    def delete_thing_group(self, name: str) -> None:
        # AWS answers success for a group that does not exist; executions it caused are left alone.
        if self.groups.pop(name, None) is not None:
            self.changed[("group", name)] = None

    def add_thing_to_thing_group(self, group_name: str, thing: str) -> None:
        """A CONTINUOUS job that targets the group queues an execution for the thing (if none is pending)."""
        group = self._group(group_name)
        self._thing(thing)
        if thing in group.members:
            return
        group.members.append(thing)
        group.version += 1
        self.changed[("group", group_name)] = group
        jobs = [
            j
            for j in self.jobs.values()
            if j.target_selection == "CONTINUOUS" and j.status == JOB_IN_PROGRESS and group.arn in j.targets
        ]
        before = self._watch([thing])
        for job in jobs:
            if not self._has_pending(job, thing):
                self._queue(job, [thing])
        self._announce(before)

    def remove_thing_from_thing_group(self, group_name: str, thing: str) -> None:
        """A CONTINUOUS job that reached the thing only through the group marks its execution REMOVED."""
        group = self._group(group_name)
        self._thing(thing)
        if thing not in group.members:
            return
        group.members.remove(thing)
        group.version += 1
        self.changed[("group", group_name)] = group
        before = self._watch([thing])
        for job in list(self.jobs.values()):
            if job.target_selection != "CONTINUOUS" or group.arn not in job.targets:
                continue
            if thing in self._job_things(job):
                continue
            if thing in job.backlog:
                job.backlog.remove(thing)
                self.changed[("job", job.job_id)] = job
            run = self.execution(thing, job.job_id)
            if run is not None and run.status in PENDING:
                self._apply(run, REMOVED, None, "removed")
        self._announce(before)

    # ---- persistence ------------------------------------------------------------------------

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
        self._pending, self._counts, self._open, self.changed = {}, {}, {}, {}
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
        for run in sorted(runs, key=lambda r: (r.seq, r.execution_number)):
            self.executions.setdefault(run.job_id, {}).setdefault(run.thing_name, []).append(run)
            self._by_thing.setdefault(run.thing_name, []).append(run)
            pending = self._pending.setdefault(run.thing_name, [])
            if run.status in PENDING:
                pending.append(run)
                self._open[run.job_id] = self._open.get(run.job_id, 0) + 1
        for job_id, per_thing in self.executions.items():
            counts = self._counts.setdefault(job_id, dict.fromkeys(EXECUTION_STATUSES, 0))
            for thing_runs in per_thing.values():
                counts[thing_runs[-1].status] += 1

    def tick(self) -> list[tuple[str, str]]:
        """Time out every execution whose step or in-progress timer is due; returns (thing, jobId)s."""
        now = self.clock.now()
        due = [
            run
            for runs in self._pending.values()
            for run in runs
            if run.status in PENDING and run.deadline is not None and run.deadline <= now
        ]
        before = self._watch(dict.fromkeys(r.thing_name for r in due))
        for run in due:
            self._apply(run, TIMED_OUT, None, "timed-out")
        self._announce(before)
        for job in list(self.jobs.values()):
            if job.backlog:
                before = self._watch(dict.fromkeys(job.backlog))
                self._release(job)
                self._announce(before)
        return [(r.thing_name, r.job_id) for r in due]

    def next_deadline(self) -> float | None:
        """When the next timer falls due, so a driver knows how long it may wait."""
        deadlines = [
            r.deadline
            for runs in self._pending.values()
            for r in runs
            if r.status in PENDING and r.deadline is not None
        ]
        deadlines += [
            j.window_start + ROLLOUT_WINDOW_SECONDS
            for j in self.jobs.values()
            if j.backlog and j.window_start is not None
        ]
        return min(deadlines) if deadlines else None

    # ---- inspection -------------------------------------------------------------------------

    def pending(self, thing: str) -> list[JobExecution]:
        """The thing's pending executions in `$next` order: IN_PROGRESS first, each by creation."""
        return sorted(self._pending.get(thing, []), key=lambda r: (r.status != IN_PROGRESS, r.seq))

    def execution(self, thing: str, job_id: str, execution_number: int | None = None) -> JobExecution | None:
        runs = self.executions.get(job_id, {}).get(thing, [])
        if execution_number is None:
            return runs[-1] if runs else None
        return next((r for r in runs if r.execution_number == execution_number), None)

    def history(self, thing: str, job_id: str, execution_number: int | None = None) -> list[dict[str, Any]]:
        """Every applied change of the execution (the latest one unless numbered); [] if none."""
        run = self.execution(thing, job_id, execution_number)
        return copy.deepcopy(run.history) if run else []

    def seconds_before_timeout(self, thing: str, job_id: str, execution_number: int | None = None) -> int | None:
        """approximateSecondsBeforeTimedOut of a pending execution with a timer, else None."""
        run = self.execution(thing, job_id, execution_number)
        if run is None or run.status not in PENDING or run.deadline is None:
            return None
        return max(0, int(run.deadline - self.clock.now()))

    def index_errors(self) -> list[str]:
        """Where the kept indexes differ from a recount over every execution ([] when they agree)."""
        errors = []
        for thing, runs in self._by_thing.items():
            pending = [r.key for r in runs if r.status in PENDING]
            if [r.key for r in self._pending.get(thing, [])] != pending:
                errors.append(f"pending executions of {thing}")
        for job_id, per_thing in self.executions.items():
            counts = dict.fromkeys(EXECUTION_STATUSES, 0)
            for runs in per_thing.values():
                counts[runs[-1].status] += 1
            if self._counts.get(job_id) != counts:
                errors.append(f"status counts of {job_id}")
            if self._open.get(job_id) != sum(r.status in PENDING for runs in per_thing.values() for r in runs):
                errors.append(f"pending count of {job_id}")
        if list(self._pending) != list(self._by_thing):
            errors.append("order of things")
        return errors

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

    def _thing(self, name: str) -> Thing:
        check_thing_name(name)
        thing = self.things.get(name)
        if thing is None:
            raise ApiError("ResourceNotFound", f"thing {name} does not exist")
        return thing

    def _group(self, name: str) -> ThingGroup:
        if not isinstance(name, str) or not GROUP_NAME.fullmatch(name):
            raise ApiError("InvalidRequest", f"thing group name {name!r} must be 1-128 of [a-zA-Z0-9:_-]")
        group = self.groups.get(name)
        if group is None:
            raise ApiError("ResourceNotFound", f"thing group {name} does not exist")
        return group

    def _has_pending(self, job: Job, thing: str) -> bool:
        run = self.execution(thing, job.job_id)
        return thing in job.backlog or (run is not None and run.status in PENDING)

    def _job_things(self, job: Job) -> list[str]:
        """The things the job's targets name now (groups expanded), in target order."""
        names: dict[str, None] = {}
        for arn in job.targets:
            if arn.startswith(THING_ARN_PREFIX):
                name = arn[len(THING_ARN_PREFIX) :]
                if name in self.things:
                    names[name] = None
            elif arn.startswith(GROUP_ARN_PREFIX):
                group = self.groups.get(arn[len(GROUP_ARN_PREFIX) :])
                names.update(dict.fromkeys(group.members if group else []))
        return list(names)

    def _resolve_targets(self, targets: Iterable[str]) -> tuple[list[str], list[str]]:
        """(target ARNs, the things they name): thing ARNs, thing-group ARNs, or bare thing names."""
        if isinstance(targets, str) or not isinstance(targets, Iterable):
            raise ApiError("InvalidRequest", "targets must be a list")
        arns: list[str] = []
        names: dict[str, None] = {}
        for target in targets:
            if not isinstance(target, str):
                raise ApiError("InvalidRequest", f"target {target!r} is not a string")
            if target.startswith(GROUP_ARN_PREFIX):
                group = self._group(target[len(GROUP_ARN_PREFIX) :])
                arn = group.arn
                names.update(dict.fromkeys(group.members))
            elif target.startswith("arn:") and not target.startswith(THING_ARN_PREFIX):
                raise ApiError("InvalidRequest", f"target {target} is not a thing or thing group ARN of this account")
            else:
                name = target[len(THING_ARN_PREFIX) :] if target.startswith("arn:") else target
                arn = self._thing(name).arn
                names[name] = None
            if arn not in arns:
                arns.append(arn)
        if not arns:
            raise ApiError("InvalidRequest", "a job needs at least one target")
        if len(arns) > MAX_TARGETS:
            raise ApiError("LimitExceeded", f"a job has at most {MAX_TARGETS} targets")
        return arns, list(names)

    def _queue(self, job: Job, names: Iterable[str]) -> None:
        """Give each thing an execution now, or put it in the rollout's backlog."""
        if job.rollout_config is None:
            for name in names:
                self._add_execution(job, name)
            return
        job.backlog.extend(n for n in names if n not in job.backlog)
        self._release(job)

    def _release(self, job: Job) -> None:
        """Create the executions the rollout allows by now, minute window by minute window."""
        self.changed[("job", job.job_id)] = job
        if job.status != JOB_IN_PROGRESS:
            job.backlog = []
            return
        config = job.rollout_config or {}
        now = self.clock.now()
        if job.window_start is None:
            job.window_start, job.window_count = now, 0
        if job.rate is None:
            self._raise_rate(job, config)
        while job.backlog:
            assert job.rate is not None
            while job.backlog and job.window_count < job.rate:
                self._add_execution(job, job.backlog.pop(0))
                job.window_count += 1
                job.notified_since_increase += 1
            if now < job.window_start + ROLLOUT_WINDOW_SECONDS:
                break
            # A service that was down (or a clock moved by hours) catches up one window at a time.
            # The rate changes only between windows: a minute's allowance is fixed when it starts.
            job.window_start += ROLLOUT_WINDOW_SECONDS
            job.window_count = 0
            self._raise_rate(job, config)
        if not job.backlog:
            job.window_start = None

    def _raise_rate(self, job: Job, config: Mapping[str, Any]) -> None:
        ceiling = config.get("maximumPerMinute", DEFAULT_MAX_PER_MINUTE)
        exponential = config.get("exponentialRate")
        if exponential is None:
            job.rate = ceiling
            return
        if job.rate is None:
            job.rate = min(exponential["baseRatePerMinute"], ceiling)
            job.notified_since_increase = 0
            job.succeeded_at_increase = self._count(job, {SUCCEEDED})
            return
        criteria = exponential["rateIncreaseCriteria"]
        succeeded = self._count(job, {SUCCEEDED})
        if "numberOfNotifiedThings" in criteria:
            met = job.notified_since_increase >= criteria["numberOfNotifiedThings"]
        else:
            met = succeeded - job.succeeded_at_increase >= criteria["numberOfSucceededThings"]
        if met and job.rate < ceiling:
            job.rate = min(ceiling, max(job.rate + 1, int(job.rate * exponential["incrementFactor"])))
            job.notified_since_increase = 0
            job.succeeded_at_increase = succeeded

    def _count(self, job: Job, statuses: Iterable[str]) -> int:
        counts = self._counts.get(job.job_id, {})
        return sum(counts.get(status, 0) for status in set(statuses))

    def _check_abort(self, job: Job) -> None:
        if job.abort_config is None or job.job_id in self._aborts:
            return
        executed = self._count(job, EXECUTED)
        for criterion in job.abort_config["criteriaList"]:
            failed = self._count(job, ABORT_FAILURES[criterion["failureType"]])
            if executed >= criterion["minNumberOfExecutedThings"] and executed > 0:
                if failed * 100.0 / executed >= criterion["thresholdPercentage"]:
                    # Cancelled in _announce, so every thing's notifications come out once, in order.
                    self._aborts.append(job.job_id)
                    self.changed[("job", job.job_id)] = job
                    job.comment = (
                        f"abort criterion met: {failed} of {executed} executed things "
                        f"{criterion['failureType']} (threshold {criterion['thresholdPercentage']}%)"
                    )
                    return

    def _fetch(self, source: Any) -> str:
        if not isinstance(source, str) or not 1 <= len(source) <= 1350:
            raise ApiError("InvalidRequest", "documentSource must be a URL of 1-1350 characters")
        if self.fetch_document is None:
            raise ApiError("InvalidRequest", "this service has no document store for documentSource")
        return self.fetch_document(source)

    def _render(self, job: Job) -> dict[str, Any]:
        """The document as a device receives it: presigned-URL placeholders replaced, fresh each time."""
        document = copy.deepcopy(job.document)
        if self.presign is None:
            return document
        presign = self.presign
        expires = int((job.presigned_url_config or {}).get("expiresInSec", 3600))
        return substitute(document, PRESIGNED, lambda m: presign(m.group(0), m.group(1), expires))

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
        counts = self._counts[job.job_id]
        if runs:
            counts[runs[-1].status] -= 1
        counts[QUEUED] += 1
        runs.append(run)
        self._by_thing.setdefault(thing, []).append(run)
        self._pending.setdefault(thing, []).append(run)
        self._open[job.job_id] += 1
        self.changed[execution_key(run)] = run
        self.changed[META] = self
        return run

    def _apply(self, run: JobExecution, status: str, details: dict[str, str] | None, cause: str) -> None:
        now = self.clock.now()
        if status == IN_PROGRESS and run.started_at is None:
            run.started_at = now
            minutes = self.jobs[run.job_id].in_progress_timeout_min
            if minutes is not None:
                run.in_progress_deadline = now + minutes * 60
        old, run.status = run.status, status
        if old != status:
            if self.executions[run.job_id][run.thing_name][-1] is run:
                self._counts[run.job_id][old] -= 1
                self._counts[run.job_id][status] += 1
            if old in PENDING and status not in PENDING:
                self._pending[run.thing_name].remove(run)
                self._open[run.job_id] -= 1
        if details is not None:
            run.status_details = dict(details)
        run.version_number += 1
        run.last_updated_at = now
        if status in TERMINAL:
            run.step_deadline = None
            run.in_progress_deadline = None
        run.history.append(change(run, cause))
        self.changed[execution_key(run)] = run
        self._settle_job(self.jobs[run.job_id])

    def _set_step_timer(self, run: JobExecution, minutes: int | None) -> None:
        if minutes is None:
            return
        run.step_deadline = None if minutes == -1 else self.clock.now() + minutes * 60
        self.changed[execution_key(run)] = run

    def _settle_job(self, job: Job) -> None:
        if job.status != JOB_IN_PROGRESS:
            return
        self._check_abort(job)
        # A SNAPSHOT job is done once every execution is; a CONTINUOUS one waits for new targets.
        if job.target_selection != "SNAPSHOT" or job.backlog or job.job_id in self._aborts:
            return
        if not self._open.get(job.job_id):
            now = self.clock.now()
            self.changed[("job", job.job_id)] = job
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
        while self._aborts:
            job = self.jobs.get(self._aborts.pop(0))
            if job is not None and job.status == JOB_IN_PROGRESS:
                for run in self._doomed(job, False):
                    before.setdefault(run.thing_name, self._snapshot(run.thing_name))
                self._cancel(job, False, job.comment, ABORT_REASON_CODE)
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
            view["jobDocument"] = self._render(self.jobs[run.job_id])
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
        seconds = self.seconds_before_timeout(run.thing_name, run.job_id, run.execution_number)
        if seconds is not None:
            view["approximateSecondsBeforeTimedOut"] = seconds
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
        counts = self._counts[job.job_id]
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
        for key, config in (
            ("timeoutConfig", job.timeout_config),
            ("presignedUrlConfig", job.presigned_url_config),
            ("jobExecutionsRolloutConfig", job.rollout_config),
            ("abortConfig", job.abort_config),
            ("documentParameters", job.document_parameters),
        ):
            if config is not None:
                view[key] = copy.deepcopy(config)
        if job.document_source is not None:
            view["documentSource"] = job.document_source
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


def check_text(name: str, value: Any, limit: int = 2028) -> None:
    if value is None:
        return
    if not isinstance(value, str) or len(value) > limit or any(unicodedata.category(c) == "Cc" for c in value):
        raise ApiError("InvalidRequest", f"{name} must be a string of at most {limit} printable characters")


def check_parameters(parameters: Any) -> dict[str, str]:
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise ApiError("InvalidRequest", "documentParameters must be an object of string values")
    for key, value in parameters.items():
        if not isinstance(key, str) or not DETAILS_KEY.fullmatch(key):
            raise ApiError("InvalidRequest", f"documentParameters key {key!r} must be 1-128 of [a-zA-Z0-9:_-]")
        if not isinstance(value, str) or not 1 <= len(value) <= 1024:
            raise ApiError("InvalidRequest", f"documentParameters[{key!r}] must be a string of 1-1024 characters")
        check_text(f"documentParameters[{key!r}]", value, 1024)
    return dict(parameters)


def substitute(value: Any, pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str]) -> Any:
    """`value` with every match of `pattern` in its strings (keys too) replaced."""
    if isinstance(value, str):
        return pattern.sub(replace, value)
    if isinstance(value, list):
        return [substitute(v, pattern, replace) for v in value]
    if isinstance(value, dict):
        return {substitute(k, pattern, replace): substitute(v, pattern, replace) for k, v in value.items()}
    return value


def integer_in(config: Mapping[str, Any], key: str, low: float, high: float, where: str) -> None:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ApiError("InvalidRequest", f"{where}.{key} must be a number from {low} to {high}")


def check_presigned_url_config(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise ApiError("InvalidRequest", "presignedUrlConfig must be an object")
    result = dict(config)
    if "expiresInSec" in result:
        integer_in(result, "expiresInSec", 60, 3600, "presignedUrlConfig")
    return result


def check_rollout_config(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise ApiError("InvalidRequest", "jobExecutionsRolloutConfig must be an object")
    result = copy.deepcopy(dict(config))
    if "maximumPerMinute" in result:
        integer_in(result, "maximumPerMinute", 1, 1000, "jobExecutionsRolloutConfig")
    rate = result.get("exponentialRate")
    if rate is not None:
        where = "jobExecutionsRolloutConfig.exponentialRate"
        if not isinstance(rate, Mapping):
            raise ApiError("InvalidRequest", f"{where} must be an object")
        integer_in(rate, "baseRatePerMinute", 1, 1000, where)
        integer_in(rate, "incrementFactor", 1.1, 5, where)
        criteria = rate.get("rateIncreaseCriteria")
        if not isinstance(criteria, Mapping) or len(criteria) != 1:
            raise ApiError(
                "InvalidRequest",
                f"{where}.rateIncreaseCriteria needs one of numberOfNotifiedThings, numberOfSucceededThings",
            )
        (key,) = criteria
        if key not in ("numberOfNotifiedThings", "numberOfSucceededThings"):
            raise ApiError("InvalidRequest", f"unknown rateIncreaseCriteria {key!r}")
        integer_in(criteria, key, 1, 10**9, f"{where}.rateIncreaseCriteria")
    return result


def check_abort_config(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    criteria = config.get("criteriaList") if isinstance(config, Mapping) else None
    if not isinstance(criteria, list) or not criteria:
        raise ApiError("InvalidRequest", "abortConfig.criteriaList must be a non-empty list")
    for criterion in criteria:
        if not isinstance(criterion, Mapping):
            raise ApiError("InvalidRequest", "each abort criterion must be an object")
        if criterion.get("action") != "CANCEL":
            raise ApiError("InvalidRequest", "abort criterion action must be CANCEL")
        if criterion.get("failureType") not in ABORT_FAILURES:
            raise ApiError("InvalidRequest", "abort criterion failureType must be FAILED, REJECTED, TIMED_OUT or ALL")
        integer_in(criterion, "minNumberOfExecutedThings", 1, 10**9, "abortConfig")
        integer_in(criterion, "thresholdPercentage", 0, 100, "abortConfig")
    return copy.deepcopy(dict(config))


def paginate(items: list[Any], max_results: Any, next_token: Any, limit: int = 250) -> tuple[list[Any], str | None]:
    """One page of `items` and the token for the next (an opaque offset), or None on the last page."""
    size = limit if max_results is None else max_results
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= limit:
        raise ApiError("InvalidRequest", f"maxResults must be 1-{limit}")
    start = 0
    if next_token is not None:
        if not isinstance(next_token, str) or not next_token.startswith("offset-") or not next_token[7:].isdigit():
            raise ApiError("InvalidRequest", "nextToken is not one this service gave")
        start = int(next_token[7:])
    page = items[start : start + size]
    return page, (f"offset-{start + size}" if start + size < len(items) else None)
