"""The Jobs device API over MQTT: the four calls, clientToken correlation, timeouts and notifications."""

import json
import os
import time

from iotjobs import payloads, topics
from iotjobs.errors import JobsError, RequestTimeout, from_rejected
from iotjobs.session import Session

_API_NAMES = {
    topics.GET_PENDING: "get",
    topics.START_NEXT: "start-next",
    topics.DESCRIBE: "describe",
    topics.UPDATE: "update",
}


def _report(reason, detail):
    print("iotjobs: dropped message (%s): %s" % (reason, detail))


class JobsClient:
    def __init__(self, mqtt, thing_name, timeout_ms=10000, qos=1):
        self.thing_name = topics.check_thing_name(thing_name)
        self.timeout_ms = timeout_ms
        self.session = Session(mqtt, qos)
        self.dropped = 0
        self._waiting = {}  # clientToken -> (kind, job_id) of each call in progress
        self._arrived = {}  # clientToken -> (ACCEPTED or REJECTED, payload) not yet taken by its call
        self._on_notify = None
        self._on_notify_next = None
        self._on_error = _report
        # A random prefix per boot, so a response to a request sent before a reset cannot match a new one.
        self._token_prefix = "".join("%02x" % b for b in os.urandom(4))
        self._count = 0

    def connect(self):
        """Connect MQTT and subscribe to this thing's response and notification topics."""
        self.session.connect(topics.subscriptions(self.thing_name))

    def disconnect(self):
        self.session.disconnect()

    def on_notify(self, callback):
        """callback(payload) for each JobExecutionsChanged (jobs/notify) message."""
        self._on_notify = callback

    def on_notify_next(self, callback):
        """callback(payload) for each NextJobExecutionChanged (jobs/notify-next) message."""
        self._on_notify_next = callback

    def on_error(self, callback):
        """callback(reason, detail) for each message dropped and each callback that raised."""
        self._on_error = callback

    def get_pending(self):
        """The thing's pending executions: {"inProgressJobs": [...], "queuedJobs": [...], ...}."""
        token = self._token()
        topic = topics.get_pending(self.thing_name)
        return self._call(topics.GET_PENDING, None, topic, payloads.get_pending(token), token)

    def start_next(self, status_details=None, step_timeout_min=None):
        """Start the next pending execution and return it, or None when nothing is pending."""
        token = self._token()
        payload = payloads.start_next(token, status_details, step_timeout_min)
        return self._call(topics.START_NEXT, None, topics.start_next(self.thing_name), payload, token).get("execution")

    def describe(self, job_id=topics.NEXT, execution_number=None, include_document=True):
        """The execution of job_id (default: the next pending one), or None for $next with nothing pending."""
        topic = topics.describe(self.thing_name, job_id)
        token = self._token()
        payload = payloads.describe(token, execution_number, include_document)
        return self._call(topics.DESCRIBE, job_id, topic, payload, token).get("execution")

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
        """Report status for job_id's execution and return the accepted payload."""
        topic = topics.update(self.thing_name, job_id)
        token = self._token()
        payload = payloads.update(
            token,
            status,
            status_details,
            expected_version,
            execution_number,
            include_state,
            include_document,
            step_timeout_min,
        )
        return self._call(topics.UPDATE, job_id, topic, payload, token)

    def poll(self):
        """Handle whatever has arrived, without blocking; notification callbacks run from here."""
        # Bounded, so that a flood of messages cannot keep the caller's loop from running.
        for _ in range(32):
            if not self.session.wait(0):
                break
            self._handle_inbox()
        self._handle_inbox()

    def _token(self):
        self._count += 1
        return "%s-%d" % (self._token_prefix, self._count)

    def _call(self, kind, job_id, topic, payload, token):
        self._waiting[token] = (kind, job_id)
        try:
            self.session.publish(topic, payload)
            deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
            while token not in self._arrived:
                self._handle_inbox()
                if token in self._arrived:
                    break
                remaining = time.ticks_diff(deadline, time.ticks_ms())
                if remaining <= 0:
                    raise RequestTimeout("no response to %s within %d ms" % (_API_NAMES[kind], self.timeout_ms))
                self.session.wait(remaining)
            outcome, body = self._arrived.pop(token)
        finally:
            del self._waiting[token]
        if outcome == topics.REJECTED:
            raise from_rejected(body)
        return body

    def _handle_inbox(self):
        while True:
            message = self.session.take()
            if message is None:
                return
            self._handle(message[0], message[1])

    def _handle(self, topic, msg):
        matched = topics.match(topic, self.thing_name)
        if matched is None:
            self._drop("unknown topic", topic)
            return
        kind, job_id, outcome = matched
        try:
            body = json.loads(msg)
        except ValueError:
            self._drop("invalid JSON", topic)
            return
        if not isinstance(body, dict):
            self._drop("not a JSON object", topic)
            return
        if kind == topics.NOTIFY:
            self._dispatch(self._on_notify, body)
        elif kind == topics.NOTIFY_NEXT:
            self._dispatch(self._on_notify_next, body)
        else:
            token = body.get("clientToken")
            if self._waiting.get(token) != (kind, job_id):
                self._drop("no call waits for this response", topic)
            else:
                self._arrived[token] = (outcome, body)

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
