"""Request checks: each rejects what the spec rejects with ApiError InvalidRequest, or returns the value to keep."""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from .resources import ABORT_ACTIONS, ABORT_FAILURES, EXECUTION_STATUSES, ApiError

MAX_TARGETS = 100
MAX_DOCUMENT_BYTES = 32 * 1024
MAX_DETAILS = 10
MAX_TIMEOUT_MINUTES = 10080

THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
GROUP_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
REASON_CODE = re.compile(r"[A-Z0-9_]{1,128}")
JOB_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
DETAILS_KEY = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
CRITERION_MEMBERS = ("failureType", "action", "thresholdPercentage", "minNumberOfExecutedThings")


def check_enum(value: Any, allowed: Sequence[str], where: str) -> None:
    """An unknown value is refused with AWS's own validation wording, which lists the values it takes."""
    if value not in allowed:
        shown = "null" if value is None else f"'{value}'"
        raise ApiError(
            "InvalidRequest",
            f"1 validation error detected: Value {shown} at '{where}' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(allowed)}]",
        )


def check_members(config: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    """A key the structure does not have is refused in botocore's wording (a typo would otherwise be ignored)."""
    for key in config:
        if key not in allowed:
            raise ApiError(
                "InvalidRequest", f'Unknown parameter in {where}: "{key}", must be one of: {", ".join(allowed)}'
            )


def check_thing_name(name: Any) -> None:
    if not isinstance(name, str) or not THING_NAME.fullmatch(name):
        raise ApiError("InvalidRequest", f"thing name {name!r} must be 1-128 characters of [a-zA-Z0-9:_-]")


def check_group_name(name: Any) -> None:
    if not isinstance(name, str) or not GROUP_NAME.fullmatch(name):
        raise ApiError("InvalidRequest", f"thing group name {name!r} must be 1-128 of [a-zA-Z0-9:_-]")


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
    check_members(config, ("inProgressTimeoutInMinutes",), "timeoutConfig")
    minutes = config.get("inProgressTimeoutInMinutes")
    if minutes is None:
        return None
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_TIMEOUT_MINUTES:
        raise ApiError(
            "InvalidRequest", f"timeoutConfig.inProgressTimeoutInMinutes must be 1-{MAX_TIMEOUT_MINUTES}"
        )
    return {"inProgressTimeoutInMinutes": minutes}


def check_status_filter(status: str | None) -> None:
    if status is not None:
        check_enum(status, EXECUTION_STATUSES, "status")


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


def integer_in(config: Mapping[str, Any], key: str, low: float, high: float, where: str) -> None:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ApiError("InvalidRequest", f"{where}.{key} must be a number from {low} to {high}")


def check_presigned_url_config(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise ApiError("InvalidRequest", "presignedUrlConfig must be an object")
    check_members(config, ("roleArn", "expiresInSec"), "presignedUrlConfig")
    result = dict(config)
    if "expiresInSec" in result:
        integer_in(result, "expiresInSec", 60, 3600, "presignedUrlConfig")
    return result


def check_rollout_config(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise ApiError("InvalidRequest", "jobExecutionsRolloutConfig must be an object")
    check_members(config, ("maximumPerMinute", "exponentialRate"), "jobExecutionsRolloutConfig")
    result = copy.deepcopy(dict(config))
    if "maximumPerMinute" in result:
        integer_in(result, "maximumPerMinute", 1, 1000, "jobExecutionsRolloutConfig")
    rate = result.get("exponentialRate")
    if rate is not None:
        where = "jobExecutionsRolloutConfig.exponentialRate"
        if not isinstance(rate, Mapping):
            raise ApiError("InvalidRequest", f"{where} must be an object")
        check_members(rate, ("baseRatePerMinute", "incrementFactor", "rateIncreaseCriteria"), where)
        integer_in(rate, "baseRatePerMinute", 1, 1000, where)
        integer_in(rate, "incrementFactor", 1.1, 5, where)
        criteria = rate.get("rateIncreaseCriteria")
        kinds = ("numberOfNotifiedThings", "numberOfSucceededThings")
        if isinstance(criteria, Mapping):
            check_members(criteria, kinds, f"{where}.rateIncreaseCriteria")
        if not isinstance(criteria, Mapping) or len(criteria) != 1:
            raise ApiError("InvalidRequest", f"{where}.rateIncreaseCriteria needs exactly one of {', '.join(kinds)}")
        (key,) = criteria
        integer_in(criteria, key, 1, 10**9, f"{where}.rateIncreaseCriteria")
    return result


def check_abort_config(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    if isinstance(config, Mapping):
        check_members(config, ("criteriaList",), "abortConfig")
    criteria = config.get("criteriaList") if isinstance(config, Mapping) else None
    if not isinstance(criteria, list) or not criteria:
        raise ApiError("InvalidRequest", "abortConfig.criteriaList must be a non-empty list")
    for n, criterion in enumerate(criteria, 1):
        if not isinstance(criterion, Mapping):
            raise ApiError("InvalidRequest", "each abort criterion must be an object")
        check_members(criterion, CRITERION_MEMBERS, f"abortConfig.criteriaList[{n - 1}]")
        # AWS names a list member by its 1-based position: criteriaList.1.member.action
        where = f"abortConfig.criteriaList.{n}.member"
        check_enum(criterion.get("action"), ABORT_ACTIONS, f"{where}.action")
        check_enum(criterion.get("failureType"), tuple(ABORT_FAILURES), f"{where}.failureType")
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
