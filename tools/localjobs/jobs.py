"""Jobs and their management calls: create, update, cancel, delete and describe jobs and their executions."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .checks import (
    MAX_TARGETS,
    REASON_CODE,
    THING_NAME,
    check_abort_config,
    check_document,
    check_enum,
    check_job_id,
    check_parameters,
    check_presigned_url_config,
    check_rollout_config,
    check_status_details,
    check_status_filter,
    check_text,
    check_thing_name,
    check_timeout_config,
)
from .executions import check_version, execution_state
from .resources import (
    CANCELED,
    EXECUTION_STATUSES,
    FAILED,
    GROUP_ARN_PREFIX,
    IN_PROGRESS,
    JOB_COMPLETED,
    JOB_IN_PROGRESS,
    JOB_STATUS_VALUES,
    PARAMETER,
    QUEUED,
    REJECTED,
    REMOVED,
    RESOURCE_ALREADY_EXISTS,
    SUCCEEDED,
    TARGET_SELECTIONS,
    TERMINAL,
    THING_ARN_PREFIX,
    TIMED_OUT,
    ApiError,
    Job,
    JobExecution,
    substitute,
)
from .scheduler import Scheduler
from .state import execution_key


class JobManagement(Scheduler):
    """The management API's job calls, and the views it answers with."""

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
        check_enum(target_selection, TARGET_SELECTIONS, "targetSelection")
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
        self._processing[job_id] = []
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
        if status is not None:
            check_enum(status, JOB_STATUS_VALUES, "status")
        if target_selection is not None:
            check_enum(target_selection, TARGET_SELECTIONS, "targetSelection")
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
        check_version(run, expected_version)
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
        del self._processing[job_id]
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
            self._tally(run, run.status, None)
            if len(runs) > 1:
                self._tally(runs[-2], None, runs[-2].status)
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

    # ---- internals --------------------------------------------------------------------------

    def _resolve_targets(self, targets: Iterable[str]) -> tuple[list[str], list[str]]:
        """(target ARNs, the things they name): each target a thing ARN or a thing-group ARN, as AWS takes them."""
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
            elif target.startswith(THING_ARN_PREFIX):
                name = target[len(THING_ARN_PREFIX) :]
                arn = self._thing(name).arn
                names[name] = None
            else:
                raise ApiError("InvalidRequest", not_a_target(target))
            if arn not in arns:
                arns.append(arn)
        if not arns:
            raise ApiError("InvalidRequest", "a job needs at least one target")
        if len(arns) > MAX_TARGETS:
            raise ApiError("LimitExceeded", f"a job has at most {MAX_TARGETS} targets")
        return arns, list(names)

    def _fetch(self, source: Any) -> str:
        if not isinstance(source, str) or not 1 <= len(source) <= 1350:
            raise ApiError("InvalidRequest", "documentSource must be a URL of 1-1350 characters")
        if self.fetch_document is None:
            raise ApiError("InvalidRequest", "this service has no document store for documentSource")
        return self.fetch_document(source)

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
        details: dict[str, Any] = {
            "numberOfCanceledThings": counts[CANCELED],
            "numberOfSucceededThings": counts[SUCCEEDED],
            "numberOfFailedThings": counts[FAILED],
            "numberOfRejectedThings": counts[REJECTED],
            "numberOfQueuedThings": counts[QUEUED],
            "numberOfInProgressThings": counts[IN_PROGRESS],
            "numberOfRemovedThings": counts[REMOVED],
            "numberOfTimedOutThings": counts[TIMED_OUT],
        }
        # The things executing the job now (IN_PROGRESS), in the order the job queued them; absent, as in
        # AWS's output, while none is.
        processing = self._processing[job.job_id]
        if processing:
            details["processingTargets"] = [THING_ARN_PREFIX + thing for _, thing in processing]
        view["jobProcessDetails"] = details
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


def not_a_target(target: str) -> str:
    """Why `target` is refused, and the ARN that was probably meant."""
    if target.startswith("arn:"):
        return (
            f"Invalid target {target}: targets are ARNs of things ({THING_ARN_PREFIX}NAME) "
            f"or thing groups ({GROUP_ARN_PREFIX}NAME) of this account"
        )
    message = f"Invalid target {target}: targets are thing or thing group ARNs, not names"
    if THING_NAME.fullmatch(target):
        message += f" (thing {target} is {THING_ARN_PREFIX}{target})"
    return message


def management_summary(run: JobExecution) -> dict[str, Any]:
    """The management API's JobExecutionSummary (it has a status and no version)."""
    view: dict[str, Any] = {"status": run.status, "queuedAt": int(run.queued_at)}
    if run.started_at is not None:
        view["startedAt"] = int(run.started_at)
    view["lastUpdatedAt"] = int(run.last_updated_at)
    view["executionNumber"] = run.execution_number
    return view
