"""The Jobs device API over MQTT: the four calls, clientToken correlation, timeouts, notifications, resends."""

import json
import os
import time

from micropython import const

from iotjobs import payloads, topics
from iotjobs.errors import JobsError, RequestTimeout, already_applied, from_rejected
from iotjobs.session import Session

# Our own describe("$next") after a reconnect, answered to the notify-next callback.
_RESYNC = const("resync")

# A request in flight: [token, kind (the request's name in its topic, or _RESYNC), job_id, topic, payload, sent_at or
# None, status, details, caller_waits, (execution_number, include_document, step_timeout_min), sends,
# expected_version, answer] (an update's payload is made when it is first sent, with the expectedVersion known then:
# see update(); sends counts the publishes begun, whether or not they got through; answer is (accepted, payload) once
# it came).
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
_ANSWER = const(12)


def _report(reason, detail):
    print("iotjobs: %s: %s" % (reason, detail))


def _update_body(request):
    number, include_document, step_timeout_min = request[_ARGS]
    # The state always comes back, so that the version is known for the next update.
    return payloads.update(request[_TOKEN], request[_STATUS], request[_DETAILS], request[_EXPECTED], number, True,
                           include_document, step_timeout_min)


class JobsClient:
    notifies = True  # a Runner waits for notify-next, and looks itself only now and then

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
        self._versions = []  # [job_id, versionNumber] of the last few executions seen, to send expectedVersion
        self._on_notify = None
        self._on_notify_next = None
        self._on_error = _report
        # A random prefix per boot, so a response to a request sent before a reset cannot match a new one.
        self._token_prefix = "%08x" % int.from_bytes(os.urandom(4), "big")
        self._count = 0

    @property
    def connected(self):
        return self.session.connected

    def connect(self):
        """Connect MQTT and subscribe to this thing's response and notification topics; OSError if that fails."""
        self.session.connect(self._subscriptions)

    def _subscriptions(self):
        return topics.subscriptions(self.thing_name)

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
        request = self._new("get", None, topics.get_pending(self.thing_name))
        request[_PAYLOAD] = payloads.describe(request[_TOKEN])
        return self._call(request)

    def start_next(self, status_details=None, step_timeout_min=None):
        """Start the next pending execution and return it, or None when nothing is pending."""
        request = self._new("start-next", None, topics.start_next(self.thing_name))
        request[_PAYLOAD] = payloads.start_next(request[_TOKEN], status_details, step_timeout_min)
        return self._call(request).get("execution")

    def describe(self, job_id=topics.NEXT, execution_number=None, include_document=True):
        """The execution of job_id (default: the next pending one), or None for $next with nothing pending."""
        request = self._new("describe", job_id, topics.describe(self.thing_name, job_id))
        request[_PAYLOAD] = payloads.describe(request[_TOKEN], execution_number, include_document)
        return self._call(request).get("execution")

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
        request = self._new("update", job_id, topics.update(self.thing_name, job_id))
        request[_STATUS] = status
        request[_DETAILS] = status_details
        request[_ARGS] = (execution_number, include_document, step_timeout_min)
        request[_EXPECTED] = expected_version
        _update_body(request)  # refuses bad input before anything is queued
        # Queued progress that was never sent is replaced by this update: only the latest details matter.
        for queued in self._requests:
            if (
                queued[_KIND] == "update"
                and not queued[_WAITED]
                and queued[_SENT_AT] is None
                and queued[_JOB] == job_id
                and queued[_STATUS] == payloads.IN_PROGRESS
            ):
                self._requests.remove(queued)
                break
        if self.outbox >= self.outbox_max:
            raise JobsError("OutboxFull", "%d updates are still waiting for the service" % self.outbox)
        return self._call(request)

    def poll(self):
        """Handle whatever has arrived, without blocking on the broker; reconnects when that is due."""
        # Bounded, so that a flood of messages cannot keep the caller's loop from running.
        for _ in range(32):
            if not self.session.wait(0):
                break
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
        n = 0
        for request in self._requests:
            if request[_KIND] == "update":
                n += 1
        return n

    # ---- requests and their responses ------------------------------------------------------------

    def _new(self, kind, job_id, topic, waited=1):
        self._count += 1
        token = "%s-%d" % (self._token_prefix, self._count)
        return [token, kind, job_id, topic, None, None, None, None, waited, None, 0, None, None]

    def _call(self, request):
        self._requests.append(request)
        try:
            self._send_due()
            deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
            while True:
                self._handle_inbox()
                if request[_ANSWER] is not None:
                    break
                remaining = time.ticks_diff(deadline, time.ticks_ms())
                if remaining <= 0:
                    raise RequestTimeout("no response to %s within %d ms" % (request[_KIND], self.timeout_ms))
                self.session.wait(remaining)
                self._send_due()
        finally:
            if request[_ANSWER] is None and request[_KIND] == "update":
                # Still owed to the service: kept and delivered, but nobody waits for the answer now.
                request[_WAITED] = 0
            elif request in self._requests:
                self._requests.remove(request)
        accepted, body = request[_ANSWER]
        if not accepted:
            raise from_rejected(body)
        return body

    def _send_due(self):
        """Publish what is due: new requests, and the head of the update queue (again, if its answer is overdue)."""
        if not self.session.connected:
            return
        now = time.ticks_ms()
        head_seen = False
        for request in self._requests:
            sent = request[_SENT_AT]
            if request[_KIND] == "update":
                if head_seen:
                    continue
                head_seen = True
                if sent is not None and time.ticks_diff(now, sent) < self.timeout_ms:
                    continue
            elif sent is not None:
                continue
            if sent is not None:
                self.resent += 1
            if request[_PAYLOAD] is None:
                # Made now, not when update() was called: updates queued before it may have moved the version.
                if request[_EXPECTED] is None:
                    request[_EXPECTED] = payloads.version_of(self._versions, request[_JOB])
                request[_PAYLOAD] = _update_body(request)
            # Marked before: a publish that fails half way may still have reached the service.
            request[_SENT_AT] = now
            try:
                published = self.session.publish(request[_TOPIC], request[_PAYLOAD])
            except MemoryError:
                # Nothing went out and the link is fine: an update goes again when its answer would be overdue,
                # any other call ends in RequestTimeout; neither counts as a send the service may have applied.
                self._on_error("request not sent", "out of memory: %s" % request[_TOPIC])
                return
            request[_SENDS] += 1
            if not published:
                return

    def _resume(self):
        """After a (re)connect: everything unanswered goes again, then ask what is next, as notifications were lost."""
        for request in self._requests[:]:
            if request[_KIND] == _RESYNC:
                self._requests.remove(request)
            elif request[_SENT_AT] is not None:
                self.resent += 1
                request[_SENT_AT] = None
        if self.session.connects > 1 and self._on_notify_next is not None:
            resync = self._new(_RESYNC, topics.NEXT, topics.describe(self.thing_name, topics.NEXT), 0)
            resync[_PAYLOAD] = payloads.describe(resync[_TOKEN])
            self._requests.append(resync)
        self._send_due()

    def _finish(self, request, accepted, body, stored):
        self._requests.remove(request)
        kind = request[_KIND]
        state = body.get("executionState")
        execution = body.get("execution")
        if isinstance(execution, dict):
            payloads.track(self._versions, execution.get("jobId"), execution.get("versionNumber"))
        elif isinstance(state, dict) and kind == "update":
            payloads.track(self._versions, request[_JOB], state.get("versionNumber"))
        # Only an update sent more than once may have been applied by an earlier copy whose answer was lost.
        if (
            not accepted
            and kind == "update"
            and request[_SENDS] > 1
            and already_applied(body.get("code"), state, request[_STATUS], request[_DETAILS], request[_EXPECTED])
        ):
            # What the accepted answer to the earlier attempt would have said.
            accepted = True
            body = {"executionState": state, "timestamp": body.get("timestamp"), "clientToken": body.get("clientToken")}
        if kind == _RESYNC:
            if accepted:
                self._dispatch(self._on_notify_next, body)
        elif request[_WAITED]:
            if stored and self.session.spill is not None:
                # The caller may work on its document for long: its file must outlive the next large messages.
                from iotjobs.document import JobDocument, keep

                document = (execution if isinstance(execution, dict) else body).get("jobDocument")
                if isinstance(document, JobDocument):
                    keep(document, self.session.spill + "_doc.json")
            request[_ANSWER] = (accepted, body)
        elif not accepted:
            self._on_error("queued update rejected", "%s: %s" % (request[_JOB], body.get("code")))
        self._send_due()

    # ---- incoming messages -----------------------------------------------------------------------

    def _handle_inbox(self):
        session = self.session
        while True:
            message = session.take()
            if message is None:
                return
            topic, msg = message
            del message
            matched = topics.match(topic, self.thing_name)
            stored = isinstance(msg, tuple)
            body = None
            try:
                if matched is None:
                    reason = "unknown topic"
                else:
                    if stored:
                        # Too large for the receive buffer, it is in a file (see Session.take).
                        from iotjobs.document import read_envelope

                        body = read_envelope(msg[0], msg[1], self.document_budget)
                    else:
                        body = json.loads(msg)
                    reason = "not a JSON object"
            except ValueError:
                reason = "invalid JSON"
            except MemoryError:
                reason = "message too large to parse"
            finally:
                del msg
                session.release()
            if not isinstance(body, dict):
                self._drop(reason, topic)
                continue
            kind, job_id, accepted = matched
            if kind == "notify":
                self._dispatch(self._on_notify, body)
            elif kind == "notify-next":
                self._dispatch(self._on_notify_next, body)
            else:
                token = body.get("clientToken")
                for request in self._requests:
                    if request[_TOKEN] == token:
                        break
                else:
                    request = None
                if request is not None and request[_JOB] == job_id and \
                        ("describe" if request[_KIND] == _RESYNC else request[_KIND]) == kind:
                    self._finish(request, accepted, body, stored)
                else:
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
