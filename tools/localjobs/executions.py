"""Executions' state machine: the device calls, each status change and what it does to its job, and notifications."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from .checks import check_enum, check_job_id, check_status_details, check_step_timeout, check_thing_name
from .resources import (
    ABORT_FAILURES,
    CANCELED,
    DEVICE_STATUSES,
    EXECUTED,
    EXECUTION_STATUSES,
    IN_PROGRESS,
    JOB_CANCELED,
    JOB_COMPLETED,
    JOB_IN_PROGRESS,
    PENDING,
    PRESIGNED,
    QUEUED,
    TERMINAL,
    ApiError,
    Job,
    JobExecution,
    Notification,
    substitute,
)
from .state import META, ModelState, execution_key

# What CancelJob records when an abortConfig criterion fires (AWS fills reasonCode itself then).
ABORT_REASON_CODE = "ABORT_CRITERIA_MET"

Snapshot = tuple[frozenset[tuple[str, int]], tuple[str, int] | None]


class Executions(ModelState):
    """Every change of an execution goes through `_apply`; every call that changes one ends with `_announce`."""

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
        check_enum(status, EXECUTION_STATUSES, "status")
        if status not in DEVICE_STATUSES:
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
        check_version(run, expected_version)
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

    def history(self, thing: str, job_id: str, execution_number: int | None = None) -> list[dict[str, Any]]:
        """Every applied change of the execution (the latest one unless numbered); [] if none."""
        run = self.execution(thing, job_id, execution_number)
        return copy.deepcopy(run.history) if run else []

    def take_notifications(self) -> list[Notification]:
        taken, self.outbox = self.outbox, []
        return taken

    # ---- transitions ------------------------------------------------------------------------

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
        if runs:
            self._tally(runs[-1], runs[-1].status, None)
        self._tally(run, None, QUEUED)
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
                self._tally(run, old, status)
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

    # ---- notifications ----------------------------------------------------------------------

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

    # ---- what a device receives -------------------------------------------------------------

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

    def _render(self, job: Job) -> dict[str, Any]:
        """The document as a device receives it: presigned-URL placeholders replaced, fresh each time."""
        document = copy.deepcopy(job.document)
        if self.presign is None:
            return document
        presign = self.presign
        expires = int((job.presigned_url_config or {}).get("expiresInSec", 3600))
        return substitute(document, PRESIGNED, lambda m: presign(m.group(0), m.group(1), expires))


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


def execution_state(run: JobExecution) -> dict[str, Any]:
    """The device API's JobExecutionState."""
    return {
        "status": run.status,
        "statusDetails": dict(run.status_details),
        "versionNumber": run.version_number,
    }


def check_version(run: JobExecution, expected_version: int | None) -> None:
    """VersionMismatch, with the execution's state, unless expected_version is None or the execution's version."""
    if expected_version is not None and expected_version != run.version_number:
        raise ApiError(
            "VersionMismatch",
            f"expected version {expected_version}, current version is {run.version_number}",
            execution_state(run),
        )
