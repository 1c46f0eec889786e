"""The Jobs state machine: things, jobs and job executions, with no I/O and no threads.

The device API methods return the reply as a plain dict (the transport adds `clientToken` and
`timestamp`). The management methods return the resource itself, unwrapped (`describe_job_execution`
returns the JobExecution, not `{"execution": ...}`) and with `statusDetails` as the plain map (the
HTTP API nests it as `{"detailsMap": ...}`). Errors raise `ApiError`. Timestamps in views are integer
seconds since the epoch. Each state change appends the `notify` / `notify-next` messages it causes to
`outbox`; the transport drains them with `take_notifications()` and publishes them after its reply.

The rules live in layers, each a module that uses only those above it in this list: `resources` (the records,
statuses and ApiError) and `checks` (request validation); `state` (the records held, their indexes, lookups and
store records); `executions` (the state machine and the device calls); `scheduler` (timers and rollouts);
`registry` (things and groups) and `jobs` (the management calls), side by side. This module composes them into
`JobsModel`, the one object every door (MQTT, HTTP, and whatever comes next) drives, and re-exports the names
the adapters and tests import from `localjobs.model`.
"""

from __future__ import annotations

from .checks import (
    DETAILS_KEY,
    GROUP_NAME,
    JOB_ID,
    MAX_DETAILS,
    MAX_DOCUMENT_BYTES,
    MAX_TARGETS,
    MAX_TIMEOUT_MINUTES,
    REASON_CODE,
    THING_NAME,
    check_abort_config,
    check_document,
    check_enum,
    check_job_id,
    check_members,
    check_parameters,
    check_presigned_url_config,
    check_rollout_config,
    check_status_details,
    check_status_filter,
    check_step_timeout,
    check_text,
    check_thing_name,
    check_timeout_config,
    integer_in,
    paginate,
)
from .executions import (
    ABORT_REASON_CODE,
    Snapshot,
    change,
    execution_state,
    summary,
)
from .jobs import (
    JobManagement,
    management_summary,
)
from .registry import Registry
from .resources import (
    ABORT_ACTIONS,
    ABORT_FAILURES,
    ACCOUNT,
    CANCELED,
    DEVICE_STATUSES,
    ERROR_CODES,
    EXECUTED,
    EXECUTION_STATUSES,
    FAILED,
    GROUP_ARN_PREFIX,
    IN_PROGRESS,
    JOB_ARN_PREFIX,
    JOB_CANCELED,
    JOB_COMPLETED,
    JOB_IN_PROGRESS,
    JOB_STATUS_VALUES,
    JOB_STATUSES,
    PARAMETER,
    PENDING,
    PRESIGNED,
    QUEUED,
    REGION,
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
    Notification,
    Thing,
    ThingGroup,
    group_arn,
    substitute,
    thing_arn,
)
from .scheduler import (
    DEFAULT_MAX_PER_MINUTE,
    ROLLOUT_WINDOW_SECONDS,
)
from .state import (
    META,
    execution_key,
)


class JobsModel(Registry, JobManagement):
    """Things, jobs and executions, and every rule of the device and management APIs."""


__all__ = [
    "JobsModel",
    "REGION",
    "ACCOUNT",
    "THING_ARN_PREFIX",
    "JOB_ARN_PREFIX",
    "GROUP_ARN_PREFIX",
    "QUEUED",
    "IN_PROGRESS",
    "SUCCEEDED",
    "FAILED",
    "REJECTED",
    "CANCELED",
    "TIMED_OUT",
    "REMOVED",
    "EXECUTION_STATUSES",
    "PENDING",
    "TERMINAL",
    "DEVICE_STATUSES",
    "JOB_IN_PROGRESS",
    "JOB_CANCELED",
    "JOB_COMPLETED",
    "JOB_STATUSES",
    "JOB_STATUS_VALUES",
    "TARGET_SELECTIONS",
    "ABORT_ACTIONS",
    "ABORT_REASON_CODE",
    "ABORT_FAILURES",
    "EXECUTED",
    "MAX_TARGETS",
    "DEFAULT_MAX_PER_MINUTE",
    "ROLLOUT_WINDOW_SECONDS",
    "ERROR_CODES",
    "RESOURCE_ALREADY_EXISTS",
    "MAX_DOCUMENT_BYTES",
    "MAX_DETAILS",
    "MAX_TIMEOUT_MINUTES",
    "THING_NAME",
    "GROUP_NAME",
    "PARAMETER",
    "PRESIGNED",
    "REASON_CODE",
    "JOB_ID",
    "DETAILS_KEY",
    "ApiError",
    "Notification",
    "Thing",
    "ThingGroup",
    "Job",
    "JobExecution",
    "Snapshot",
    "META",
    "execution_key",
    "change",
    "summary",
    "management_summary",
    "execution_state",
    "check_thing_name",
    "check_enum",
    "check_members",
    "thing_arn",
    "group_arn",
    "check_job_id",
    "check_status_details",
    "check_step_timeout",
    "check_timeout_config",
    "check_status_filter",
    "check_document",
    "check_text",
    "check_parameters",
    "substitute",
    "integer_in",
    "check_presigned_url_config",
    "check_rollout_config",
    "check_abort_config",
    "paginate",
]
