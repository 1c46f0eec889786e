"""The Jobs device API over HTTPS (iot-jobs-data): JobsClient's four calls, each one mutual-TLS request."""

import json
import select
import time

import usocket
from micropython import const

from iotjobs import net, payloads, topics
from iotjobs.document import JobDocument, read_envelope
from iotjobs.errors import JobsError, RequestTimeout, already_applied
from iotjobs.tls import context, read_der

# iot-jobs-data's error types (x-amzn-ErrorType, less "Exception") and the MQTT API's code for each.
_ERROR_TYPES = (
    ("InvalidRequest", "InvalidRequest"),
    ("ResourceNotFound", "ResourceNotFound"),
    ("InvalidStateTransition", "InvalidStateTransition"),
    ("VersionConflict", "VersionMismatch"),
    ("TerminalState", "TerminalStateReached"),
    ("Throttling", "RequestThrottled"),
    ("ServiceUnavailable", "InternalError"),
    ("InternalFailure", "InternalError"),
)
# The code a status means when the response names no error type.
_STATUSES = (
    (400, "InvalidRequest"),
    (404, "ResourceNotFound"),
    (409, "InvalidStateTransition"),
    (410, "TerminalStateReached"),
    (429, "RequestThrottled"),
)
_ESCAPES = {
    0x22: b'"',
    0x5C: b"\\",
    0x2F: b"/",
    0x62: b"\x08",
    0x66: b"\x0c",
    0x6E: b"\n",
    0x72: b"\r",
    0x74: b"\t",
}
_U = const(0x75)


def error_of(status, error_type, body):
    """The JobsError of an error response: its HTTP status, x-amzn-ErrorType header (or None) and JSON body."""
    if not isinstance(body, dict):
        body = {}
    name = error_type or body.get("__type") or ""
    if not isinstance(name, str):
        name = ""
    # AWS may add ":<documentation URL>" to the header, and a namespace ("...#Name") to __type.
    name = name.split(":")[0].split("#")[-1]
    if name.endswith("Exception"):
        name = name[:-9]
    code = None
    for known, mapped in _ERROR_TYPES:
        if name == known:
            code = mapped
    if code is None and not name:
        for number, mapped in _STATUSES:
            if status == number:
                code = mapped
        if code is None and status >= 500:
            code = "InternalError"
    state = body.get("executionState")
    if not isinstance(state, dict):
        state = None
    # iot-jobs-data has no version conflict error: it refuses a stale expectedVersion as an invalid transition.
    # An execution still QUEUED or IN_PROGRESS takes any status a device reports, so then that is what it was.
    if code == "InvalidStateTransition" and state is not None and state.get("status") in ("QUEUED", "IN_PROGRESS"):
        code = "VersionMismatch"
    message = body.get("message") or body.get("Message")
    return JobsError(code or name or "HTTP%d" % status, message if isinstance(message, str) else "HTTP %d" % status,
                     state)


class _Response:
    """An HTTP response read through one buffer: header lines, then the body in pieces."""

    def __init__(self, sock, buf, deadline, poller):
        self.sock = sock
        self.buf = buf
        self.view = memoryview(buf)
        self.deadline = deadline
        self.poller = poller
        self.start = 0
        self.end = 0

    def _fill(self):
        # More bytes after end; False at the end of the response.
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buf):
            if self.start == 0:
                raise ValueError("HTTP header line longer than %d bytes" % len(self.buf))
            # Only a line cut by the buffer's end moves: a few bytes.
            left = self.end - self.start
            self.buf[:left] = self.buf[self.start : self.end]
            self.start, self.end = 0, left
        got = net.transfer(self.sock.readinto, self.view[self.end :], self.deadline, self.poller, 1)
        self.end += got
        return got > 0

    def line(self, limit=256):
        """The next line without its line end, cut to its first limit bytes: a long header costs no more."""
        while True:
            i = self.buf.find(b"\n", self.start, self.end)
            if i >= 0:
                line = bytes(self.view[self.start : min(i, self.start + limit)])
                self.start = i + 1
                return line.rstrip(b"\r")
            if not self._fill():
                raise OSError("the response ended early")

    def piece(self, limit):
        """Up to limit bytes of what follows, as a view of the buffer; empty at the end of the response."""
        if self.start == self.end and not self._fill():
            return self.view[0:0]
        n = min(limit, self.end - self.start)
        piece = self.view[self.start : self.start + n]
        self.start += n
        return piece

    def head(self):
        """(status, Content-Length or None, chunked, x-amzn-ErrorType or None)."""
        parts = self.line().split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ValueError("not an HTTP response")
        status = int(parts[1])
        length = None
        chunked = False
        error_type = None
        while True:
            line = self.line()
            if not line:
                return status, length, chunked, error_type
            colon = line.find(b":")
            if colon < 0:
                continue
            name = line[:colon].strip().lower()
            value = line[colon + 1 :].strip()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"x-amzn-errortype":
                error_type = value.decode()


class JobsHttpsClient:
    """The four calls of JobsClient, with the same arguments, results and errors, over iot-jobs-data's HTTPS API.

    host is the name in the service's certificate (AWS IoT: the account's data endpoint); cert, key and ca are
    paths of DER files, as for iotjobs.tls.make_client. Each call opens a connection of its own and closes it.
    There are no notifications: a Runner polls with start_next instead.
    """

    notifies = False

    def __init__(
        self,
        host,
        thing_name,
        cert,
        key,
        ca,
        port=443,
        timeout_ms=10000,
        document_budget=4096,
        rx_buffer=4096,
        max_response=131072,
        spill="iotjobs_rx",
        wlan=None,
        wlan_ms=15000,
        backoff_floor_ms=1000,
        backoff_ceiling_ms=120000,
        backoff_factor=2,
    ):
        self.thing_name = topics.check_thing_name(thing_name)
        self.host = host
        self.port = port
        self.timeout_ms = timeout_ms
        # A job document bigger than this, in a response bigger than the buffer, is not parsed: it comes as a
        # JobDocument on flash, to be read a field or a chunk at a time.
        self.document_budget = document_budget
        self.max_response = max_response
        # Responses bigger than the buffer go to this file, the job document in them to spill + "_doc.json".
        self.spill = spill
        # With the station interface, a call first brings WiFi back, waiting up to wlan_ms (within its time).
        self.wlan = wlan
        self.wlan_ms = wlan_ms
        self.backoff_floor_ms = backoff_floor_ms
        self.backoff_ceiling_ms = backoff_ceiling_ms
        self.backoff_factor = backoff_factor
        # Read once: each connection's handshake reuses the parsed certificates.
        self._context = context(read_der(cert, "cert"), read_der(key, "key"), read_der(ca, "ca"))
        self._rx = bytearray(rx_buffer)
        self._host_header = host if port == 443 else "%s:%d" % (host, port)
        self._path = "/things/%s/jobs" % self.thing_name
        self._versions = []  # [job_id, versionNumber] of the last few executions seen, to send expectedVersion
        self._on_error = _report
        self._attempt = 0
        self._next_attempt = time.ticks_ms()
        self._sends = 0  # how many times the current call's request went out
        self.connections = 0
        self.resent = 0
        self.dropped = 0
        self.last_error = None

    # ---- what JobsClient has and HTTPS does not need ----------------------------------------------

    def connect(self):
        """Nothing to open: each call makes its own connection."""

    def disconnect(self):
        """Nothing to close: each call closes its own connection."""

    def on_notify(self, callback):
        """Accepted and never called: the HTTPS API has no notifications."""

    def on_notify_next(self, callback):
        """Accepted and never called: the HTTPS API has no notifications."""

    def on_error(self, callback):
        """callback(reason, detail) for each attempt that failed (the call tries again while its time lasts)."""
        self._on_error = callback

    def poll(self):
        """Nothing arrives unasked over HTTPS."""

    def wait(self, timeout_ms):
        """Sleep timeout_ms: nothing arrives unasked over HTTPS. Always False."""
        time.sleep_ms(timeout_ms)
        return False

    # ---- the four calls --------------------------------------------------------------------------

    def get_pending(self):
        """The thing's pending executions: {"inProgressJobs": [...], "queuedJobs": [...]}."""
        return self._call("get", "GET", "")

    def start_next(self, status_details=None, step_timeout_min=None):
        """Start the next pending execution and return it, or None when nothing is pending."""
        body = payloads.start_next(None, status_details, step_timeout_min)
        return self._call("start-next", "PUT", "/$next", body).get("execution")

    def describe(self, job_id=topics.NEXT, execution_number=None, include_document=True):
        """The execution of job_id (default: the next pending one), or None for $next with nothing pending."""
        path = "/" + topics.check_job_id(job_id, True)
        query = []
        if execution_number is not None:
            query.append("executionNumber=%d" % payloads.check_count("executionNumber", execution_number))
        if not include_document:
            query.append("includeJobDocument=false")
        if query:
            path += "?" + "&".join(query)
        try:
            return self._call("describe", "GET", path).get("execution")
        except JobsError as e:
            # Over HTTPS "nothing pending" is a 404; over MQTT it is an answer without an execution.
            if job_id == topics.NEXT and e.code == "ResourceNotFound":
                return None
            raise

    def update(
        self,
        job_id,
        status,
        status_details=None,
        expected_version=None,
        execution_number=None,
        include_state=False,
        include_document=False,
        step_timeout_min=None,
    ):
        """Report status for job_id's execution and return the accepted answer ({"executionState": ...}).

        It goes with the expectedVersion last seen for the job (unless given). Sent again after a lost answer, an
        update that an earlier copy had already applied comes back as a success; any other rejection raises
        JobsError, with the execution's state where the service sent it. One that times out is not kept: send it
        again if it matters.
        """
        path = "/" + topics.check_job_id(job_id)
        if expected_version is None:
            expected_version = payloads.version_of(self._versions, job_id)
        # The state always comes back, so that the version is known for the next update.
        body = payloads.update(
            None, status, status_details, expected_version, execution_number, True, include_document, step_timeout_min
        )
        try:
            reply = self._call("update", "POST", path, body)
        except JobsError as e:
            state = e.execution_state
            if state is not None:
                payloads.track(self._versions, job_id, state.get("versionNumber"))
            # Only an update sent more than once may have been applied by an earlier copy whose answer was lost.
            if self._sends < 2 or not already_applied(e.code, state, status, status_details, expected_version):
                raise
            # What the answer to the earlier attempt would have said.
            return {"executionState": state}
        state = reply.get("executionState")
        if isinstance(state, dict):
            payloads.track(self._versions, job_id, state.get("versionNumber"))
        return reply

    # ---- requests --------------------------------------------------------------------------------

    def _call(self, name, method, path, body=None):
        """The response to one request as a dict; tries again (on a new connection) while timeout_ms lasts."""
        request = self._request(method, path, body)
        deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
        self._sends = 0
        while True:
            now = time.ticks_ms()
            due = time.ticks_diff(self._next_attempt, now) if self._attempt else 0
            if due > self.backoff_ceiling_ms:
                # No backoff is that long: the ticks clock (2**29 ms on a 32-bit board) wrapped while nothing ran.
                due = 0
            if due >= time.ticks_diff(deadline, now):
                # No attempt is allowed (or left) before the deadline: failing now is what waiting would do.
                raise RequestTimeout(
                    "no response to %s within %d ms (last error: %s)" % (name, self.timeout_ms, self.last_error)
                )
            if due > 0:
                time.sleep_ms(due)
            try:
                status, error_type, reply = self._exchange(request, deadline)
            except (OSError, ValueError) as e:  # no connection, a broken one, a certificate refused, a bad answer
                self._failed(e)
                continue
            self._attempt = 0
            if status // 100 != 2:
                raise error_of(status, error_type, reply)
            if not isinstance(reply, dict):
                self.dropped += 1
                self._failed(ValueError("%s: the response is not a JSON object" % name))
                continue
            execution = reply.get("execution")
            if isinstance(execution, dict):
                payloads.track(self._versions, execution.get("jobId"), execution.get("versionNumber"))
                self._document(execution)
            else:
                self._document(reply)
            return reply

    def _failed(self, error):
        self.last_error = error
        self._on_error("request failed", error)
        delay = net.backoff_ms(self._attempt, self.backoff_floor_ms, self.backoff_ceiling_ms, self.backoff_factor)
        self._attempt += 1
        self._next_attempt = time.ticks_add(time.ticks_ms(), delay)

    def _request(self, method, path, body):
        head = "%s %s%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n" % (method, self._path, path, self._host_header)
        if body is None:
            return (head + "\r\n").encode()
        body = body.encode()  # MicroPython's json.dumps leaves non-ASCII characters as they are
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        return head.encode() + body

    def _open(self, deadline):
        wait_ms = min(self.wlan_ms, time.ticks_diff(deadline, time.ticks_ms()))
        if not net.wlan_up(self.wlan, wait_ms):
            raise OSError("WiFi did not come up: waited %d ms" % wait_ms)
        address = usocket.getaddrinfo(self.host, self.port)[0][-1]
        raw = usocket.socket()
        try:
            # Connect and handshake on the plain socket's timeout; afterwards the deadline bounds each wait.
            raw.settimeout(max(1, time.ticks_diff(deadline, time.ticks_ms())) / 1000)
            raw.connect(address)
            sock = self._context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.connections += 1
        sock.setblocking(False)
        return sock

    def _exchange(self, request, deadline):
        """(status, x-amzn-ErrorType, body) of one request on a connection of its own."""
        sock = self._open(deadline)
        try:
            poller = select.poll()
            poller.register(sock, select.POLLOUT)
            net.transfer(sock.write, memoryview(request), deadline, poller)
            self._sends += 1
            if self._sends > 1:
                self.resent += 1
            poller.modify(sock, select.POLLIN)
            response = _Response(sock, self._rx, deadline, poller)
            status, length, chunked, error_type = response.head()
            try:
                body = self._body(response, length, chunked)
            except ValueError:
                if status // 100 == 2:
                    self.dropped += 1
                    raise
                body = None  # an error page that is not JSON: its status says enough
            return status, error_type, body
        finally:
            sock.close()

    def _body(self, response, length, chunked):
        room = len(self._rx) - response.start
        if length is not None and not chunked and length <= room:
            # The common case: the whole body in the buffer, parsed from there.
            while response.end - response.start < length:
                if not response._fill():
                    raise OSError("the response ended early")
            return json.loads(response.view[response.start : response.start + length])
        if length is not None and length > self.max_response:
            raise ValueError("a %d-byte response is more than max_response" % length)
        path = self.spill + "0.bin"
        size = 0
        with open(path, "wb") as f:
            if not chunked:
                size = self._copy(response, f, length)
            else:
                while True:
                    n = int(response.line().split(b";")[0], 16)
                    if not n:
                        break
                    size += self._copy(response, f, n)
                    response.line()
        return read_envelope(path, size, self.document_budget)

    def _copy(self, response, f, n):
        # n bytes (None: up to the end) of the response to f, a buffer at a time.
        copied = 0
        while n is None or copied < n:
            piece = response.piece(len(self._rx) if n is None else n - copied)
            if not piece:
                if n is None:
                    break
                raise OSError("the response ended early")
            copied += len(piece)
            if copied > self.max_response:
                raise ValueError("the response is longer than max_response")
            f.write(piece)
        return copied

    def _document(self, holder):
        # Over HTTPS the job document is a JSON string that holds the document's JSON text.
        document = holder.get("jobDocument")
        if isinstance(document, str):
            try:
                holder["jobDocument"] = json.loads(document)
            except ValueError:
                pass  # handed over as it came: a runner rejects it as "not JSON"
        elif isinstance(document, JobDocument):
            with open(document.path, "rb") as f:
                f.seek(document.offset)
                quoted = f.read(1) == b'"'
            if quoted:
                document = _unquote(document, self.spill + "_doc.json", self._rx)
                holder["jobDocument"] = document.load() if document.size <= self.document_budget else document


def _unquote(document, path, buf):
    """The text of the JSON string that document spans, written to path as a JobDocument of its own.

    Escapes of characters past ASCII stay escapes: they can only stand inside the document's own strings, where
    they mean the same.
    """
    view = memoryview(buf)
    pos = document.offset + 1
    end = document.offset + document.size - 1
    size = 0
    with open(document.path, "rb") as src, open(path, "wb") as out:
        while pos < end:
            src.seek(pos)
            n = src.readinto(view[: min(len(buf), end - pos)])
            i = 0
            while i < n:
                j = buf.find(b"\\", i, n)
                if j < 0:
                    j = n
                if j > i:
                    out.write(view[i:j])
                    size += j - i
                if j == n:
                    i = n
                    break
                if j + 1 >= n or (buf[j + 1] == _U and j + 6 > n):
                    i = j
                    break  # an escape cut by the buffer's end: read again from it
                kind = buf[j + 1]
                if kind == _U:
                    code = int(bytes(view[j + 2 : j + 6]), 16)
                    if code < 0x80:
                        out.write(bytes((code,)))
                        size += 1
                    else:
                        out.write(view[j : j + 6])
                        size += 6
                    i = j + 6
                else:
                    if kind not in _ESCAPES:
                        raise ValueError("bad escape in the job document string")
                    out.write(_ESCAPES[kind])
                    size += 1
                    i = j + 2
            if i == 0:
                raise ValueError("the job document string ends inside an escape")
            pos += i
    return JobDocument(path, 0, size)


def _report(reason, detail):
    print("iotjobs https: %s: %s" % (reason, detail))
