"""The errors a Jobs call can end with: the service's rejections and the client's own timeout."""

# JobsError.code is one of the Jobs device API's nine ErrorCode values (InvalidTopic, InvalidJson, InvalidRequest,
# InvalidStateTransition, ResourceNotFound, VersionMismatch, InternalError, RequestThrottled, TerminalStateReached),
# or the client's own OutboxFull. No table of them is kept: nothing on the device looks one up.


class JobsError(Exception):
    """A request the Jobs service rejected: .code, .message, and .execution_state where the service sent it."""

    def __init__(self, code, message="", execution_state=None):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.execution_state = execution_state
        # Worth trying again later, unchanged: the request itself was fine.
        self.retryable = code in ("InternalError", "RequestThrottled")

    def __str__(self):
        return "%s: %s" % (self.code, self.message)


class RequestTimeout(Exception):
    """No response with this request's clientToken arrived within the call's timeout."""


def from_rejected(payload):
    """The JobsError that a /rejected payload (a dict) describes."""
    code = payload.get("code")
    message = payload.get("message")
    state = payload.get("executionState")
    return JobsError(
        code if isinstance(code, str) else "",
        message if isinstance(message, str) else "",
        state if isinstance(state, dict) else None,
    )


def already_applied(code, state, status, details, expected_version):
    """Whether the rejection (code, executionState) of a re-sent update says an earlier copy of it was applied.

    It was if the state the service reports is the one the update asked for (status, and details unless None), at
    a version past the one it expected. One that never said which version it expected and gave no statusDetails to
    recognise cannot be told from a refusal: it was refused.
    """
    if code not in ("VersionMismatch", "InvalidStateTransition") or not isinstance(state, dict):
        return False
    if state.get("status") != status:
        return False
    version = state.get("versionNumber")
    moved = isinstance(expected_version, int) and isinstance(version, int) and version > expected_version
    if details is None:
        return moved
    return state.get("statusDetails") == details and (expected_version is None or moved)
