"""Jobs request payloads, the limits the service enforces on them, and timestamps, with no I/O."""

import json

from micropython import const

from iotjobs.topics import name_ok

IN_PROGRESS = "IN_PROGRESS"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
REJECTED = "REJECTED"
# The only statuses a device may report; the others are set by the service.
_DEVICE_STATUSES = const(("IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED"))
_VERSIONS_KEPT = const(4)


def is_control_code(o):
    """Whether the service refuses the character of code point o in a statusDetails value."""
    # The service's pattern is [^\p{C}]*: no control, format, private-use or unassigned characters.
    # MicroPython has no unicodedata, so this covers the control and format ranges devices can produce.
    return (
        o < 0x20
        or 0x7F <= o <= 0x9F
        or o == 0xAD
        or 0x200B <= o <= 0x200F
        or 0x2028 <= o <= 0x202E
        or 0x2060 <= o <= 0x206F
        or o == 0xFEFF
        or 0xE000 <= o <= 0xF8FF
        or 0xFFF0 <= o <= 0xFFFF
    )


def code_point(raw, i):
    """(code point, length) of the UTF-8 character at raw[i]: a str's bytes, read without a str per character.

    MicroPython interns every one-character str that iterating or indexing a str makes, and interning can
    need the qstr pool to double (~7 KB in one piece on the unix port) at any moment: reading bytes never does.
    """
    b = raw[i]
    if b < 0x80:
        return b, 1
    if b < 0xE0:
        return (b & 0x1F) << 6 | raw[i + 1] & 0x3F, 2
    if b < 0xF0:
        return (b & 0x0F) << 12 | (raw[i + 1] & 0x3F) << 6 | raw[i + 2] & 0x3F, 3
    return (b & 0x07) << 18 | (raw[i + 1] & 0x3F) << 12 | (raw[i + 2] & 0x3F) << 6 | raw[i + 3] & 0x3F, 4


def check_status_details(details):
    """Raise ValueError unless details fits the service's statusDetails limits."""
    if not isinstance(details, dict):
        raise ValueError("statusDetails must be a dict of str to str")
    if len(details) > 10:
        raise ValueError("statusDetails has %d pairs; at most 10" % len(details))
    for key, value in details.items():
        if not name_ok(key, 128):
            raise ValueError("statusDetails key %r: 1-128 characters of a-z A-Z 0-9 : _ -" % (key,))
        if not isinstance(value, str) or not 0 < len(value) <= 1024:
            raise ValueError("statusDetails[%r] must be a str of 1-1024 characters" % (key,))
        raw = value.encode()
        i = 0
        while i < len(raw):
            o, n = code_point(raw, i)
            if is_control_code(o):
                raise ValueError("statusDetails[%r] has control character %r" % (key, raw[i : i + n].decode()))
            i += n
    return details


def check_step_timeout(minutes, allow_cancel=False):
    """Raise ValueError unless minutes is a step timeout: 1-10080, or -1 (cancel) where allowed."""
    if isinstance(minutes, bool) or not isinstance(minutes, int):
        raise ValueError("stepTimeoutInMinutes must be an int")
    if not (1 <= minutes <= 10080 or (allow_cancel and minutes == -1)):
        raise ValueError("stepTimeoutInMinutes %d: 1-10080%s" % (minutes, " or -1 to cancel" if allow_cancel else ""))
    return minutes


def check_count(name, value):
    """Raise ValueError unless value is a non-negative int (an executionNumber or expectedVersion)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("%s must be a non-negative int" % name)
    return value


# Over MQTT each request carries a clientToken; over HTTPS (token None) there is none to send.


def start_next(token, status_details=None, step_timeout_min=None):
    request = {} if token is None else {"clientToken": token}
    if status_details is not None:
        request["statusDetails"] = check_status_details(status_details)
    if step_timeout_min is not None:
        request["stepTimeoutInMinutes"] = check_step_timeout(step_timeout_min)
    return json.dumps(request, separators=(",", ":"))


def describe(token, execution_number=None, include_document=True):
    """describe's request; with the defaults, get_pending's too (a clientToken alone)."""
    request = {"clientToken": token}
    if execution_number is not None:
        request["executionNumber"] = check_count("executionNumber", execution_number)
    if not include_document:
        request["includeJobDocument"] = False
    return json.dumps(request, separators=(",", ":"))


def update(
    token,
    status,
    status_details=None,
    expected_version=None,
    execution_number=None,
    include_state=False,
    include_document=False,
    step_timeout_min=None,
):
    if status not in _DEVICE_STATUSES:
        raise ValueError("invalid status %r: a device reports one of %s" % (status, ", ".join(_DEVICE_STATUSES)))
    request = {"status": status} if token is None else {"clientToken": token, "status": status}
    if status_details is not None:
        request["statusDetails"] = check_status_details(status_details)
    # Numbers, as SDK v2 sends them; the service accepts digit strings too, but a device need not.
    if expected_version is not None:
        request["expectedVersion"] = check_count("expectedVersion", expected_version)
    if execution_number is not None:
        request["executionNumber"] = check_count("executionNumber", execution_number)
    if include_state:
        request["includeJobExecutionState"] = True
    if include_document:
        request["includeJobDocument"] = True
    if step_timeout_min is not None:
        request["stepTimeoutInMinutes"] = check_step_timeout(step_timeout_min, True)
    return json.dumps(request, separators=(",", ":"))


def version_of(versions, job_id):
    """The versionNumber last seen for job_id in versions (a list of [job_id, version]), or None."""
    for entry in versions:
        if entry[0] == job_id:
            return entry[1]
    return None


def track(versions, job_id, version):
    """Record job_id's versionNumber in versions, keeping the last few jobs seen."""
    if not isinstance(job_id, str) or not isinstance(version, int):
        return
    for entry in versions:
        if entry[0] == job_id:
            versions.remove(entry)
            break
    versions.append([job_id, version])
    if len(versions) > _VERSIONS_KEPT:
        versions.pop(0)


def epoch_seconds(timestamp):
    """Whole seconds since the epoch (an int) from a Jobs timestamp, which the spec gives in seconds or milliseconds."""
    if timestamp is None:
        return None
    # 1e11 seconds is the year 5138; 1e11 milliseconds is 1973: the two ranges cannot be confused.
    # int() first: an int past 2**30 (a long int on a 32-bit board) divides exactly, and a float gives an int.
    if timestamp >= 100000000000:
        return int(timestamp) // 1000
    return int(timestamp)
