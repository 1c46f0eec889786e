"""The Jobs device API over MQTT: the four calls, clientToken correlation, timeouts, notifications, resends."""

import json
import os
import time

from micropython import const

from iotjobs import payloads, topics
from iotjobs.document import JobDocument, Stored, keep, read_envelope
from iotjobs.errors import INVALID_STATE_TRANSITION, VERSION_MISMATCH, JobsError, RequestTimeout, from_rejected
from iotjobs.session import Session

_API_NAMES = {
    topics.GET_PENDING: "get",
    topics.START_NEXT: "start-next",
    topics.DESCRIBE: "describe",
    topics.UPDATE: "update",
}
_RESYNC = const(7)  # our own describe("$next") after a reconnect, answered to the notify-next callback
OUTBOX_FULL = "OutboxFull"
_VERSIONS_KEPT = const(4)

# A request in flight: [token, kind, job_id, topic, payload, sent_at or None, status, details, caller_waits, args,
# sends, expected_version] (an update's payload is made when it is first sent, with the expectedVersion known then:
# see update(); sends counts the publishes begun, whether or not they got through).
_TOKEN = const(0)
_KIND = const(1)
_JOB = const(2)
_TOPIC = const(3)
_PAYLOAD = const(4)
_SENT_AT = const(5)
_STATUS = const(6)
_DETAILS = const(7)
_WAITED = const(8)
_ARGS = const(9)
_SENDS = const(10)
_EXPECTED = const(11)


def _request(token, kind, job_id, topic, payload, waited=1):
    return [token, kind, job_id, topic, payload, None, None, None, waited, None, 0, None]


def _report(reason, detail):
    print("iotjobs: %s: %s" % (reason, detail))


class JobsClient:
    def __init__(self, mqtt, thing_name, timeout_ms=10000, qos=1, wlan=None, outbox_max=4, document_budget=4096,
                 **link):
        self.thing_name = topics.check_thing_name(thing_name)
        self.timeout_ms = timeout_ms
        self.outbox_max = outbox_max
        # A job document bigger than this, in a message too big for the receive buffer, is not parsed: it
        # comes as a JobDocument on flash, to be read a field or a chunk at a time.
        self.document_budget = document_budget
        self.session = Session(mqtt, qos, wlan=wlan, **link)
        self.session.on_connect = self._resume
        self.session.on_drop = self._drop
        self.dropped = 0
        self.resent = 0
        self._requests = []  # every request still waiting for its response, in the order it was made
        self._arrived = {}  # clientToken -> (ACCEPTED or REJECTED, payload) not yet taken by its call
        self._versions = []  # [job_id, versionNumber] of the last few executions seen, to send expectedVersion
        self._on_notify = None
        self._on_notify_next = None
        self._on_error = _report
        # A random prefix per boot, so a response to a request sent before a reset cannot match a new one.
        self._token_prefix = "".join("%02x" % b for b in os.urandom(4))
        self._count = 0

    @property
    def connected(self):
        return self.session.connected

    def connect(self):
        """Connect MQTT and subscribe to this thing's response and notification topics; OSError if that fails."""
        self.session.connect(topics.subscriptions(self.thing_name))

    def disconnect(self):
        self.session.disconnect()

    def on_notify(self, callback):
        """callback(payload) for each JobExecutionsChanged (jobs/notify) message."""
        self._on_notify = callback

    def on_notify_next(self, callback):
        """callback(payload) for each NextJobExecutionChanged (jobs/notify-next) message, and after a reconnect."""
        self._on_notify_next = callback

    def on_error(self, callback):
        """callback(reason, detail) for each message dropped and each callback that raised."""
        self._on_error = callback

    # ---- the four calls --------------------------------------------------------------------------

    def get_pending(self):
        """The thing's pending executions: {"inProgressJobs": [...], "queuedJobs": [...], ...}."""
        token = self._token()
        topic = topics.get_pending(self.thing_name)
        payload = payloads.get_pending(token)
        return self._call(_request(token, topics.GET_PENDING, None, topic, payload))

    def start_next(self, status_details=None, step_timeout_min=None):
        """Start the next pending execution and return it, or None when nothing is pending."""
        token = self._token()
        payload = payloads.start_next(token, status_details, step_timeout_min)
        topic = topics.start_next(self.thing_name)
        return self._call(_request(token, topics.START_NEXT, None, topic, payload)).get("execution")

    def describe(self, job_id=topics.NEXT, execution_number=None, include_document=True):
        """The execution of job_id (default: the next pending one), or None for $next with nothing pending."""
        topic = topics.describe(self.thing_name, job_id)
        token = self._token()
        payload = payloads.describe(token, execution_number, include_document)
        return self._call(_request(token, topics.DESCRIBE, job_id, topic, payload)).get("execution")

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
        """Report status for job_id's execution and return the accepted payload.

        Updates go out one at a time, in order, with the expectedVersion last seen for the job (unless
        given), and are re-sent after a reconnect; a re-sent update that an earlier copy had already applied
        comes back as a success. Any other rejection raises JobsError, with the execution's state where the
        service sent it. One that times out stays queued and is still delivered: do not send it again.
        """
        topic = topics.update(self.thing_name, job_id)
        token = self._token()
        args = (status_details, expected_version, execution_number, include_document, step_timeout_min)
        self._update_payload(token, status, args, 0)  # refuses bad input before anything is queued
        self._make_room(job_id)
        request = _request(token, topics.UPDATE, job_id, topic, None)
        request[_STATUS] = status
        request[_DETAILS] = status_details
        request[_ARGS] = args
        request[_EXPECTED] = expected_version
        return self._call(request)

    def _update_payload(self, token, status, args, expected_version):
        details, explicit_version, execution_number, include_document, step_timeout_min = args
        if explicit_version is not None:
            expected_version = explicit_version
        # The state always comes back, so that the version is known for the next update.
        return payloads.update(
            token, status, details, expected_version, execution_number, True, include_document, step_timeout_min
        )

    def poll(self):
        """Handle whatever has arrived, without blocking on the broker; reconnects when that is due."""
        # Bounded, so that a flood of messages cannot keep the caller's loop from running.
        for _ in range(32):
            if not self.session.wait(0):
                break
            self._handle_inbox()
        self._handle_inbox()
        self._send_due()

    def wait(self, timeout_ms):
        """Like poll(), but first wait up to timeout_ms for something to arrive; True if anything did."""
        arrived = self.session.wait(timeout_ms)
        self.poll()
        return arrived

    @property
    def outbox(self):
        """How many updates are waiting to be sent or answered."""
        return sum(1 for r in self._requests if r[_KIND] == topics.UPDATE)

    # ---- requests and their responses ------------------------------------------------------------

    def _token(self):
        self._count += 1
        return "%s-%d" % (self._token_prefix, self._count)

    def _call(self, request):
        token = request[_TOKEN]
        self._requests.append(request)
        try:
            self._send_due()
            deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
            while token not in self._arrived:
                self._handle_inbox()
                if token in self._arrived:
                    break
                remaining = time.ticks_diff(deadline, time.ticks_ms())
                if remaining <= 0:
                    raise RequestTimeout(
                        "no response to %s within %d ms" % (_API_NAMES[request[_KIND]], self.timeout_ms)
                    )
                self.session.wait(remaining)
                self._send_due()
            outcome, body = self._arrived.pop(token)
        finally:
            if request[_KIND] == topics.UPDATE and token not in self._arrived:
                # Still owed to the service: kept and delivered, but nobody waits for the answer now.
                request[_WAITED] = 0
            elif request in self._requests:
                self._requests.remove(request)
        if outcome == topics.REJECTED:
            raise from_rejected(body)
        return body

    def _send_due(self):
        """Publish what is due: new requests, and the head of the update queue (again, if its answer is overdue)."""
        if not self.session.connected:
            return
        now = time.ticks_ms()
        head_seen = False
        for request in self._requests:
            if request[_KIND] == topics.UPDATE:
                if head_seen:
                    continue
                head_seen = True
                sent = request[_SENT_AT]
                if sent is not None and time.ticks_diff(now, sent) < self.timeout_ms:
                    continue
            elif request[_SENT_AT] is not None:
                continue
            if request[_SENT_AT] is not None:
                self.resent += 1
            if request[_PAYLOAD] is None:
                # Made now, not when update() was called: updates queued before it may have moved the version.
                if request[_EXPECTED] is None:
                    request[_EXPECTED] = self._version(request[_JOB])
                request[_PAYLOAD] = self._update_payload(
                    request[_TOKEN], request[_STATUS], request[_ARGS], request[_EXPECTED]
                )
            # Marked before: a publish that fails half way may still have reached the service.
            request[_SENT_AT] = now
            request[_SENDS] += 1
            if not self.session.publish(request[_TOPIC], request[_PAYLOAD]):
                return

    def _resume(self):
        """After a (re)connect: everything unanswered goes again, then ask what is next, as notifications were lost."""
        first = self.session.connects == 1
        for request in self._requests[:]:
            if request[_KIND] == _RESYNC:
                self._requests.remove(request)
            elif request[_SENT_AT] is not None:
                self.resent += 1
                request[_SENT_AT] = None
        if not first and self._on_notify_next is not None:
            token = self._token()
            topic = topics.describe(self.thing_name, topics.NEXT)
            resync = _request(token, _RESYNC, topics.NEXT, topic, payloads.describe(token), 0)
            self._requests.append(resync)
        self._send_due()

    def _finish(self, request, outcome, body):
        self._requests.remove(request)
        kind = request[_KIND]
        state = body.get("executionState")
        execution = body.get("execution")
        if isinstance(execution, dict):
            self._track(execution.get("jobId"), execution.get("versionNumber"))
        elif isinstance(state, dict) and kind == topics.UPDATE:
            self._track(request[_JOB], state.get("versionNumber"))
        if outcome == topics.REJECTED and kind == topics.UPDATE and self._already_applied(request, body):
            # What the accepted answer to the earlier attempt would have said.
            outcome = topics.ACCEPTED
            body = {"executionState": state, "timestamp": body.get("timestamp"), "clientToken": body.get("clientToken")}
        if kind == _RESYNC:
            if outcome == topics.ACCEPTED:
                self._dispatch(self._on_notify_next, body)
        elif request[_WAITED]:
            self._keep_document(body)
            self._arrived[request[_TOKEN]] = (outcome, body)
        elif outcome == topics.REJECTED:
            self._on_error("queued update rejected", "%s: %s" % (request[_JOB], body.get("code")))
        self._send_due()

    def _keep_document(self, body):
        # The caller may work on it for long: its file must outlive the next large messages.
        execution = body.get("execution")
        document = execution.get("jobDocument") if isinstance(execution, dict) else body.get("jobDocument")
        if isinstance(document, JobDocument) and self.session.spill is not None:
            keep(document, self.session.spill + "_doc.json")

    def _already_applied(self, request, body):
        # Only an update sent more than once may have been applied by an earlier copy whose answer was lost; it
        # was if the state the service reports is the one this update asked for, at a version past the one it
        # expected. A first send, or one that never said which version it expected and gave no statusDetails
        # to recognise, was refused: the caller hears so.
        state = body.get("executionState")
        if request[_SENDS] < 2 or not isinstance(state, dict):
            return False
        if body.get("code") not in (VERSION_MISMATCH, INVALID_STATE_TRANSITION):
            return False
        if state.get("status") != request[_STATUS]:
            return False
        expected = request[_EXPECTED]
        version = state.get("versionNumber")
        moved = isinstance(expected, int) and isinstance(version, int) and version > expected
        if request[_DETAILS] is None:
            return moved
        return state.get("statusDetails") == request[_DETAILS] and (expected is None or moved)

    def _make_room(self, job_id):
        """Drop queued progress that a newer update replaces; refuse when the queue is full of what must go."""
        for request in self._requests:
            if (
                request[_KIND] == topics.UPDATE
                and not request[_WAITED]
                and request[_SENT_AT] is None
                and request[_JOB] == job_id
                and request[_STATUS] == payloads.IN_PROGRESS
            ):
                self._requests.remove(request)
                break
        if self.outbox >= self.outbox_max:
            raise JobsError(OUTBOX_FULL, "%d updates are still waiting for the service" % self.outbox)

    def _version(self, job_id):
        for entry in self._versions:
            if entry[0] == job_id:
                return entry[1]
        return None

    def _track(self, job_id, version):
        if not isinstance(job_id, str) or not isinstance(version, int):
            return
        for entry in self._versions:
            if entry[0] == job_id:
                self._versions.remove(entry)
                break
        self._versions.append([job_id, version])
        if len(self._versions) > _VERSIONS_KEPT:
            self._versions.pop(0)

    # ---- incoming messages -----------------------------------------------------------------------

    def _handle_inbox(self):
        while True:
            message = self.session.take()
            if message is None:
                return
            self._handle(message[0], message[1])

    def _handle(self, topic, msg):
        matched = topics.match(topic, self.thing_name)
        if matched is None:
            self.session.release()
            self._drop("unknown topic", topic)
            return
        kind, job_id, outcome = matched
        try:
            if isinstance(msg, Stored):
                body = read_envelope(msg.path, msg.size, self.document_budget)
            else:
                body = json.loads(msg)
        except ValueError:
            self._drop("invalid JSON", topic)
            return
        except MemoryError:
            self._drop("message too large to parse", topic)
            return
        finally:
            del msg
            self.session.release()
        if not isinstance(body, dict):
            self._drop("not a JSON object", topic)
            return
        if kind == topics.NOTIFY:
            self._dispatch(self._on_notify, body)
            return
        if kind == topics.NOTIFY_NEXT:
            self._dispatch(self._on_notify_next, body)
            return
        token = body.get("clientToken")
        for request in self._requests:
            if request[_TOKEN] == token:
                expected = topics.DESCRIBE if request[_KIND] == _RESYNC else request[_KIND]
                if expected == kind and request[_JOB] == job_id:
                    self._finish(request, outcome, body)
                    return
                break
        self._drop("no call waits for this response", topic)

    def _dispatch(self, callback, body):
        if callback is None:
            return
        try:
            callback(body)
        except Exception as e:  # one failing callback must not stop the device loop
            self._on_error("callback raised", e)

    def _drop(self, reason, detail):
        self.dropped += 1
        self._on_error(reason, detail)


__all__ = ["JobsClient", "JobsError", "RequestTimeout"]
