"""The management (`iot`) and device (`iot-jobs-data`) REST APIs over HTTP, routed by botocore's own service models.

Paths, methods and where each member travels (URI, query string, JSON body) come from
`botocore/data/{iot,iot-jobs-data}/*/service-2.json`, so boto3 and the aws CLI reach this server with
`endpoint_url=` and nothing else. Two paths exist in both APIs (`GET /things/{t}/jobs` and
`GET /things/{t}/jobs/{j}`); the SigV4 credential scope of the request says which one is meant
(`.../iot/aws4_request` or `.../iot-jobs-data/aws4_request`); unsigned requests mean `iot`.
Signatures are not checked: any credentials are accepted.

Errors have the rest-json shape: an `x-amzn-ErrorType` header, a `{"message": ...}` body (plus
`executionState` where the spec puts one) and the spec's status code.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from botocore.loaders import Loader

from .documents import PRESIGNED_PREFIX, Documents
from .model import GROUP_ARN_PREFIX, THING_ARN_PREFIX, ApiError, JobsModel, paginate

log = logging.getLogger(__name__)

OPERATIONS = {
    "iot": (
        "CreateJob",
        "DescribeJob",
        "ListJobs",
        "UpdateJob",
        "CancelJob",
        "DeleteJob",
        "AssociateTargetsWithJob",
        "GetJobDocument",
        "ListJobExecutionsForJob",
        "ListJobExecutionsForThing",
        "DescribeJobExecution",
        "CancelJobExecution",
        "DeleteJobExecution",
        "CreateThing",
        "DescribeThing",
        "DeleteThing",
        "ListThings",
        "CreateThingGroup",
        "DescribeThingGroup",
        "DeleteThingGroup",
        "AddThingToThingGroup",
        "RemoveThingFromThingGroup",
        "ListThingsInThingGroup",
        "DescribeEndpoint",
    ),
    "iot-jobs-data": (
        "GetPendingJobExecutions",
        "StartNextPendingJobExecution",
        "DescribeJobExecution",
        "UpdateJobExecution",
    ),
}

# model error code -> (exception name, HTTP status), from the spec's lists of errors
ERRORS: dict[str, tuple[str, int]] = {
    "InvalidRequest": ("InvalidRequestException", 400),
    "InvalidJson": ("InvalidRequestException", 400),
    "InvalidTopic": ("InvalidRequestException", 400),
    "ResourceNotFound": ("ResourceNotFoundException", 404),
    "ResourceAlreadyExists": ("ResourceAlreadyExistsException", 409),
    "InvalidStateTransition": ("InvalidStateTransitionException", 409),
    "VersionMismatch": ("VersionConflictException", 409),
    "Conflict": ("ConflictException", 409),
    "LimitExceeded": ("LimitExceededException", 410),
    "TerminalStateReached": ("TerminalStateException", 410),
    "RequestThrottled": ("ThrottlingException", 429),
    "InternalError": ("InternalFailureException", 500),
}
# iot-jobs-data models no VersionConflictException: a version mismatch there is an invalid transition
# (409, with executionState), the code its UpdateJobExecution declares for a refused update.
DEVICE_ERRORS = {
    **ERRORS,
    "VersionMismatch": ("InvalidStateTransitionException", 409),
    "InternalError": ("ServiceUnavailableException", 503),
}
SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")

Call = Callable[..., Any]


@dataclass(frozen=True)
class Operation:
    service: str
    name: str
    method: str
    path: re.Pattern[str]
    members: dict[str, tuple[str, str, str]]  # member -> (location, wire name, shape type)


def load_operations(services: tuple[str, ...] = tuple(OPERATIONS)) -> list[Operation]:
    loader = Loader()
    operations = []
    for service in services:
        names = OPERATIONS[service]
        model = loader.load_service_model(service, "service-2")
        shapes = model["shapes"]
        for name in names:
            spec = model["operations"][name]
            uri = spec["http"]["requestUri"]
            # A client may percent-encode the `$` of `$next` (boto3 does in some paths).
            pattern = "".join(
                f"(?P<{part[1:-1].rstrip('+')}>[^/]+)"
                if part.startswith("{")
                else re.escape(part).replace(r"\$", r"(?:\$|%24)")
                for part in re.split(r"(\{[^}]+\})", uri)
            )
            members: dict[str, tuple[str, str, str]] = {}
            if "input" in spec:
                for member, ref in shapes[spec["input"]["shape"]]["members"].items():
                    location = ref.get("location", "body")
                    members[member] = (location, ref.get("locationName", member), shapes[ref["shape"]]["type"])
            operations.append(Operation(service, name, spec["http"]["method"], re.compile(pattern + "$"), members))
    return operations


def convert(value: str, kind: str, member: str) -> Any:
    """A URI or query-string value as its shape's type."""
    if kind in ("integer", "long"):
        if not re.fullmatch(r"-?[0-9]{1,19}", value):
            raise ApiError("InvalidRequest", f"{member} must be an integer")
        return int(value)
    if kind == "boolean":
        if value.lower() not in ("true", "false"):
            raise ApiError("InvalidRequest", f"{member} must be true or false")
        return value.lower() == "true"
    return value




def management_execution(view: dict[str, Any]) -> dict[str, Any]:
    return {**view, "statusDetails": {"detailsMap": view["statusDetails"]}}


def group_name(params: dict[str, Any]) -> str:
    if params.get("thingGroupName"):
        return str(params["thingGroupName"])
    arn = params.get("thingGroupArn") or ""
    if not arn.startswith(GROUP_ARN_PREFIX):
        raise ApiError("InvalidRequest", "give thingGroupName or a thing group ARN of this account")
    return str(arn[len(GROUP_ARN_PREFIX) :])


def thing_name(params: dict[str, Any]) -> str:
    if params.get("thingName"):
        return str(params["thingName"])
    arn = params.get("thingArn") or ""
    if not arn.startswith(THING_ARN_PREFIX):
        raise ApiError("InvalidRequest", "give thingName or a thing ARN of this account")
    return str(arn[len(THING_ARN_PREFIX) :])


def paged(key: str, items: list[Any], params: dict[str, Any]) -> dict[str, Any]:
    page, token = paginate(items, params.get("maxResults"), params.get("nextToken"))
    body: dict[str, Any] = {key: page}
    if token is not None:
        body["nextToken"] = token
    return body


class HttpApi:
    """Answers both REST APIs against `model`; `call(fn, *args)` runs fn under the service lock
    and then publishes the notifications it caused (and persists), as every change must.

    A subclass may serve fewer `services`, no presigned files, over another server (`make_server`),
    and refuse a request before it is handled (`refuse`): see https_api.py.
    """

    services: tuple[str, ...] = tuple(OPERATIONS)
    serves_files = True
    scheme = "http"

    def __init__(
        self,
        model: JobsModel,
        call: Call,
        documents: Documents,
        host: str = "127.0.0.1",
        port: int = 0,
        endpoints: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.call = call
        self.documents = documents
        self.endpoints = endpoints if endpoints is not None else {}
        self.operations = load_operations(self.services)
        self.server = self.make_server(host, port)
        self.server.daemon_threads = True
        self.host, self.port = str(self.server.server_address[0]), int(self.server.server_address[1])
        self._thread: threading.Thread | None = None
        self._closed = False
        # Path prefix -> fn(handler, url, body) that answers every request under it (the console).
        self.mounts: dict[str, Callable[[BaseHTTPRequestHandler, SplitResult, bytes], None]] = {}

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    def make_server(self, host: str, port: int) -> ThreadingHTTPServer:
        return ThreadingHTTPServer((host, port), make_handler(self))

    def refuse(self, op: Operation, labels: dict[str, str], connection: Any) -> tuple[str, int, str] | None:
        """(error type, status, message) to refuse this request with, before it is parsed; None to go on."""
        return None

    def start(self) -> None:
        if self._closed:
            # Started again after stop(): the same address, so URLs handed out before stay valid.
            self.server = self.make_server(self.host, self.port)
            self.server.daemon_threads = True
            self._closed = False
        # A short poll keeps stop() quick; serve_forever wakes for requests regardless.
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="localjobs-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
            self._thread = None
        self.server.server_close()
        self._closed = True

    # ---- routing -------------------------------------------------------------------------------

    def route(self, method: str, path: str, authorization: str) -> tuple[Operation, dict[str, str]] | None:
        scope = SCOPE.search(authorization)
        wanted = scope.group(1) if scope else "iot"
        found = []
        for op in self.operations:
            match = op.path.match(path) if op.method == method else None
            if match:
                found.append((op, {k: unquote(v) for k, v in match.groupdict().items()}))
        # An operation with a literal segment ($next) beats one with a label in its place.
        found.sort(key=lambda item: (item[0].service != wanted, len(item[1])))
        return found[0] if found else None

    def parse(self, op: Operation, labels: dict[str, str], query: dict[str, str], body: bytes) -> dict[str, Any]:
        document: dict[str, Any] = {}
        if body.strip():
            try:
                document = json.loads(body)
            except ValueError:
                raise ApiError("InvalidRequest", "the request body is not JSON") from None
            if not isinstance(document, dict):
                raise ApiError("InvalidRequest", "the request body must be a JSON object")
        params: dict[str, Any] = {}
        for member, (location, wire, kind) in op.members.items():
            if location == "uri" and wire in labels:
                params[member] = convert(labels[wire], kind, member)
            elif location == "querystring" and wire in query:
                params[member] = convert(query[wire], kind, member)
            elif location == "body" and wire in document:
                params[member] = document[wire]
        return params

    def handle(self, op: Operation, params: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"{'data' if op.service == 'iot-jobs-data' else 'iot'}_{op.name}")
        result: dict[str, Any] = handler(params)
        return result

    # ---- iot: jobs -----------------------------------------------------------------------------

    def iot_CreateJob(self, p: dict[str, Any]) -> dict[str, Any]:
        if "targets" not in p:
            raise ApiError("InvalidRequest", "targets is required")
        if p.get("jobTemplateArn") is not None:
            raise ApiError("InvalidRequest", "job templates are not supported by the local service")
        return dict(
            self.call(
                self.model.create_job,
                p["jobId"],
                p["targets"],
                p.get("document"),
                target_selection=p.get("targetSelection", "SNAPSHOT"),
                description=p.get("description"),
                timeout_config=p.get("timeoutConfig"),
                document_source=p.get("documentSource"),
                document_parameters=p.get("documentParameters"),
                presigned_url_config=p.get("presignedUrlConfig"),
                rollout_config=p.get("jobExecutionsRolloutConfig"),
                abort_config=p.get("abortConfig"),
            )
        )

    def iot_DescribeJob(self, p: dict[str, Any]) -> dict[str, Any]:
        job = self.call(self.model.describe_job, p["jobId"], bool(p.get("beforeSubstitution")))
        body: dict[str, Any] = {"job": job}
        if "documentSource" in job:
            body["documentSource"] = job.pop("documentSource")
        return body

    def iot_ListJobs(self, p: dict[str, Any]) -> dict[str, Any]:
        jobs = self.call(
            self.model.list_jobs,
            p.get("status"),
            p.get("targetSelection"),
            p.get("thingGroupName"),
            p.get("thingGroupId"),
        )
        return paged("jobs", jobs, p)

    def iot_UpdateJob(self, p: dict[str, Any]) -> dict[str, Any]:
        self.call(
            self.model.update_job,
            p["jobId"],
            description=p.get("description"),
            presigned_url_config=p.get("presignedUrlConfig"),
            rollout_config=p.get("jobExecutionsRolloutConfig"),
            abort_config=p.get("abortConfig"),
            timeout_config=p.get("timeoutConfig"),
        )
        return {}

    def iot_CancelJob(self, p: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.call(self.model.cancel_job, p["jobId"], bool(p.get("force")), p.get("comment"), p.get("reasonCode"))
        )

    def iot_DeleteJob(self, p: dict[str, Any]) -> dict[str, Any]:
        self.call(self.model.delete_job, p["jobId"], bool(p.get("force")))
        return {}

    def iot_AssociateTargetsWithJob(self, p: dict[str, Any]) -> dict[str, Any]:
        if "targets" not in p:
            raise ApiError("InvalidRequest", "targets is required")
        return dict(self.call(self.model.associate_targets_with_job, p["jobId"], p["targets"], p.get("comment")))

    def iot_GetJobDocument(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"document": self.call(self.model.get_job_document, p["jobId"], bool(p.get("beforeSubstitution")))}

    def iot_ListJobExecutionsForJob(self, p: dict[str, Any]) -> dict[str, Any]:
        runs = self.call(self.model.list_job_executions_for_job, p["jobId"], p.get("status"))
        return paged("executionSummaries", runs, p)

    def iot_ListJobExecutionsForThing(self, p: dict[str, Any]) -> dict[str, Any]:
        runs = self.call(self.model.list_job_executions_for_thing, p["thingName"], p.get("status"))
        if p.get("jobId") is not None:
            runs = [r for r in runs if r["jobId"] == p["jobId"]]
        return paged("executionSummaries", runs, p)

    def iot_DescribeJobExecution(self, p: dict[str, Any]) -> dict[str, Any]:
        view = self.call(self.model.describe_job_execution, p["thingName"], p["jobId"], p.get("executionNumber"))
        return {"execution": management_execution(view)}

    def iot_CancelJobExecution(self, p: dict[str, Any]) -> dict[str, Any]:
        self.call(
            self.model.cancel_job_execution,
            p["jobId"],
            p["thingName"],
            bool(p.get("force")),
            p.get("expectedVersion"),
            p.get("statusDetails"),
        )
        return {}

    def iot_DeleteJobExecution(self, p: dict[str, Any]) -> dict[str, Any]:
        self.call(
            self.model.delete_job_execution, p["jobId"], p["thingName"], p["executionNumber"], bool(p.get("force"))
        )
        return {}

    # ---- iot: registry -------------------------------------------------------------------------

    def iot_CreateThing(self, p: dict[str, Any]) -> dict[str, Any]:
        attributes = (p.get("attributePayload") or {}).get("attributes")
        return dict(self.call(self.model.create_thing, p["thingName"], attributes))

    def iot_DescribeThing(self, p: dict[str, Any]) -> dict[str, Any]:
        return dict(self.call(self.model.describe_thing, p["thingName"]))

    def iot_DeleteThing(self, p: dict[str, Any]) -> dict[str, Any]:
        expected = p.get("expectedVersion")
        if expected is not None and self.call(self.model.describe_thing, p["thingName"])["version"] != expected:
            raise ApiError("VersionMismatch", f"thing {p['thingName']} is not at version {expected}")
        self.call(self.model.delete_thing, p["thingName"])
        return {}

    def iot_ListThings(self, p: dict[str, Any]) -> dict[str, Any]:
        things = self.call(self.model.list_things)
        name, value = p.get("attributeName"), p.get("attributeValue")
        if name is not None:
            things = [t for t in things if name in t["attributes"] and value in (None, t["attributes"][name])]
        return paged("things", things, p)

    def iot_CreateThingGroup(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("parentGroupName") is not None:
            raise ApiError("InvalidRequest", "nested thing groups are not supported by the local service")
        description = (p.get("thingGroupProperties") or {}).get("thingGroupDescription")
        return dict(self.call(self.model.create_thing_group, p["thingGroupName"], description))

    def iot_DescribeThingGroup(self, p: dict[str, Any]) -> dict[str, Any]:
        return dict(self.call(self.model.describe_thing_group, p["thingGroupName"]))

    def iot_DeleteThingGroup(self, p: dict[str, Any]) -> dict[str, Any]:
        self.call(self.model.delete_thing_group, p["thingGroupName"])
        return {}

    def iot_AddThingToThingGroup(self, p: dict[str, Any]) -> dict[str, Any]:
        self.call(self.model.add_thing_to_thing_group, group_name(p), thing_name(p))
        return {}

    def iot_RemoveThingFromThingGroup(self, p: dict[str, Any]) -> dict[str, Any]:
        self.call(self.model.remove_thing_from_thing_group, group_name(p), thing_name(p))
        return {}

    def iot_ListThingsInThingGroup(self, p: dict[str, Any]) -> dict[str, Any]:
        return paged("things", self.call(self.model.list_things_in_thing_group, p["thingGroupName"]), p)

    def iot_DescribeEndpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        kind = p.get("endpointType") or "iot:Data"
        if kind not in self.endpoints:
            raise ApiError("InvalidRequest", f"endpointType must be one of {', '.join(sorted(self.endpoints))}")
        return {"endpointAddress": self.endpoints[kind]}

    # ---- iot-jobs-data -------------------------------------------------------------------------

    def device_execution(self, view: dict[str, Any]) -> dict[str, Any]:
        """The JobExecution as iot-jobs-data sends it: the document a JSON string, the timer's countdown added."""
        view = dict(view)
        if "jobDocument" in view:
            view["jobDocument"] = json.dumps(view["jobDocument"])
        seconds = self.call(
            self.model.seconds_before_timeout, view["thingName"], view["jobId"], view["executionNumber"]
        )
        if seconds is not None:
            view["approximateSecondsBeforeTimedOut"] = seconds
        return view

    def data_GetPendingJobExecutions(self, p: dict[str, Any]) -> dict[str, Any]:
        return dict(self.call(self.model.get_pending, p["thingName"]))

    def data_StartNextPendingJobExecution(self, p: dict[str, Any]) -> dict[str, Any]:
        reply = self.call(self.model.start_next, p["thingName"], p.get("statusDetails"), p.get("stepTimeoutInMinutes"))
        return {"execution": self.device_execution(reply["execution"])} if reply else {}

    def data_DescribeJobExecution(self, p: dict[str, Any]) -> dict[str, Any]:
        include = p.get("includeJobDocument", True)
        reply = self.call(self.model.describe, p["thingName"], p["jobId"], p.get("executionNumber"), include)
        if not reply:
            raise ApiError("ResourceNotFound", f"thing {p['thingName']} has no pending job execution")
        return {"execution": self.device_execution(reply["execution"])}

    def data_UpdateJobExecution(self, p: dict[str, Any]) -> dict[str, Any]:
        if "status" not in p:
            raise ApiError("InvalidRequest", "status is required")
        reply = dict(
            self.call(
                self.model.update,
                p["thingName"],
                p["jobId"],
                p["status"],
                status_details=p.get("statusDetails"),
                expected_version=p.get("expectedVersion"),
                execution_number=p.get("executionNumber"),
                include_state=bool(p.get("includeJobExecutionState")),
                include_document=bool(p.get("includeJobDocument")),
                step_timeout_min=p.get("stepTimeoutInMinutes"),
            )
        )
        if "jobDocument" in reply:
            reply["jobDocument"] = json.dumps(reply["jobDocument"])
        return reply


def reply(
    handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None
) -> None:
    """Answer a request with body, of content type kind, and any extra headers."""
    handler.send_response(status)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)


def make_handler(api: HttpApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body are separate writes: with Nagle on, each reply waits ~40 ms for a delayed ACK.
        disable_nagle_algorithm = True
        server_version = "iotjobs-local"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def do_GET(self) -> None:
            self.dispatch()

        def do_PUT(self) -> None:
            self.dispatch()

        def do_POST(self) -> None:
            self.dispatch()

        def do_PATCH(self) -> None:
            self.dispatch()

        def do_DELETE(self) -> None:
            self.dispatch()

        def dispatch(self) -> None:
            url = urlsplit(self.path)
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if api.serves_files and self.command == "GET" and url.path.startswith(PRESIGNED_PREFIX):
                status, data = api.documents.open(url.path, query)
                self.reply(status, data, "application/octet-stream")
                return
            for prefix, serve in api.mounts.items():
                if url.path == prefix or url.path.startswith(prefix + "/"):
                    serve(self, url, body)
                    return
            found = api.route(self.command, url.path, self.headers.get("Authorization", ""))
            if found is None:
                self.error("UnknownOperationException", 404, f"no operation for {self.command} {url.path}")
                return
            op, labels = found
            refusal = api.refuse(op, labels, self.connection)
            if refusal is not None:
                self.error(*refusal)
                return
            errors = DEVICE_ERRORS if op.service == "iot-jobs-data" else ERRORS
            try:
                result = api.handle(op, api.parse(op, labels, query, body))
            except ApiError as err:
                name, status = errors.get(err.code, ("InvalidRequestException", 400))
                extra = {"executionState": err.execution_state} if err.execution_state is not None else {}
                self.error(name, status, err.message, extra)
                return
            except Exception as exc:
                log.exception("%s failed", op.name)
                name, status = errors["InternalError"]
                self.error(name, status, repr(exc))
                return
            self.reply(200, json.dumps(result).encode(), "application/json")

        def error(self, name: str, status: int, message: str, extra: dict[str, Any] | None = None) -> None:
            body = json.dumps({"message": message, **(extra or {})}).encode()
            self.reply(status, body, "application/json", {"x-amzn-ErrorType": name})

        def reply(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            reply(self, status, body, content_type, headers)

    return Handler
