"""What the service holds: things, groups, jobs and executions, their statuses and ARNs, and ApiError."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
# The enums requests are checked against, in AWS's order (botocore's iot model): an unknown value gets them all
# listed. A job is never SCHEDULED or DELETION_IN_PROGRESS here, yet filtering on them is valid, as in AWS.
JOB_STATUS_VALUES = (JOB_IN_PROGRESS, JOB_CANCELED, JOB_COMPLETED, "DELETION_IN_PROGRESS", "SCHEDULED")
TARGET_SELECTIONS = ("CONTINUOUS", "SNAPSHOT")
ABORT_ACTIONS = ("CANCEL",)
ABORT_FAILURES = {
    "FAILED": frozenset({FAILED}),
    "REJECTED": frozenset({REJECTED}),
    "TIMED_OUT": frozenset({TIMED_OUT}),
    "ALL": frozenset({FAILED, REJECTED, TIMED_OUT}),
}
EXECUTED = frozenset({SUCCEEDED, FAILED, REJECTED, TIMED_OUT})

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

# Placeholders a job document may hold: documentParameters fill the first when the job is created; the second
# becomes a presigned URL each time a device receives the document.
PARAMETER = re.compile(r"\$\{aws:iot:parameter:([a-zA-Z0-9:_-]{1,128})\}")
PRESIGNED = re.compile(r"\$\{aws:iot:s3-presigned-url(?:-v2)?:([^}]*)\}")


def thing_arn(name: str) -> str:
    """The ARN a job's `targets` name a thing by (CreateJob refuses bare names, as AWS does)."""
    return THING_ARN_PREFIX + name


def group_arn(name: str) -> str:
    """The ARN a job's `targets` name a thing group by."""
    return GROUP_ARN_PREFIX + name


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


def substitute(value: Any, pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str]) -> Any:
    """`value` with every match of `pattern` in its strings (keys too) replaced."""
    if isinstance(value, str):
        return pattern.sub(replace, value)
    if isinstance(value, list):
        return [substitute(v, pattern, replace) for v in value]
    if isinstance(value, dict):
        return {substitute(k, pattern, replace): substitute(v, pattern, replace) for k, v in value.items()}
    return value
