"""The device API over MQTT: request topics in, accepted/rejected replies and notifications out.

Wire conventions (the same for every reply and notification this service publishes):
- Timestamps (`timestamp`, `queuedAt`, `startedAt`, `lastUpdatedAt`) are integer seconds since the
  epoch. The spec's field descriptions say seconds; two of its examples show milliseconds. We follow
  the descriptions, and take the time from the service's clock (a ManualClock in tests).
- `jobDocument` is a JSON object, not a string holding JSON.
- Replies go to `<request topic>/accepted` or `<request topic>/rejected` at QoS 1, followed by the
  `notify` / `notify-next` messages the request caused.
- `clientToken` is echoed whenever the request carried one; an empty payload means `{}`.
- `expectedVersion`, `executionNumber` and `stepTimeoutInMinutes` may be JSON numbers or digit
  strings (SDK v1 sends strings); `includeJobDocument` / `includeJobExecutionState` may be booleans
  or "true"/"false".
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .clock import Clock
from .model import ApiError, JobsModel, Notification

log = logging.getLogger(__name__)

SUBSCRIPTION = "$aws/things/+/jobs/#"
PREFIX = "$aws/things/"
REPLY_SUFFIXES = ("accepted", "rejected")
NOTIFICATION_KINDS = ("notify", "notify-next")
APIS = ("get_pending", "start_next", "describe", "update")
INVALID_TOPIC = "invalid_topic"
DROP = "drop"

Publish = Callable[[str, bytes], None]
# interceptor(thing, api, topic, request, publish) -> None, or {"code": ..., "message": ...} to reject,
# or DROP to leave the request unanswered (a service that died before replying)
Interceptor = Callable[[str, str, str, dict[str, Any], Publish], dict[str, Any] | str | None]


@dataclass(frozen=True)
class Route:
    """What a request topic asks for: `api` is one of APIS or INVALID_TOPIC."""

    thing: str
    api: str
    job_id: str | None = None


@dataclass(frozen=True)
class Exchange:
    """One device request and the reply it got, recorded for tests."""

    thing: str
    api: str
    topic: str
    request: dict[str, Any] | None
    outcome: str  # "accepted" or "rejected"
    response: dict[str, Any]


def parse_topic(topic: str) -> Route | None:
    """Route a topic under `$aws/things/T/jobs`; None for topics this service must not answer.

    None covers topics outside the jobs namespace and the service's own publishes (replies and
    notifications), which come back to it through its own wildcard subscription.
    """
    if not topic.startswith(PREFIX):
        return None
    parts = topic[len(PREFIX) :].split("/")
    if len(parts) < 2 or parts[1] != "jobs" or not parts[0]:
        return None
    thing, rest = parts[0], parts[2:]
    if rest and (rest[-1] in REPLY_SUFFIXES or (len(rest) == 1 and rest[0] in NOTIFICATION_KINDS)):
        return None
    if rest == ["get"]:
        return Route(thing, "get_pending")
    if rest == ["start-next"]:
        return Route(thing, "start_next")
    if len(rest) == 2 and rest[0] and rest[1] == "get":
        return Route(thing, "describe", rest[0])
    if len(rest) == 2 and rest[0] and rest[0] != "$next" and rest[1] == "update":
        return Route(thing, "update", rest[0])
    return Route(thing, INVALID_TOPIC)


def parse_payload(payload: bytes | bytearray) -> dict[str, Any]:
    if not payload:
        return {}
    try:
        request = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError("InvalidJson", "the request is not UTF-8 encoded JSON") from None
    if not isinstance(request, dict):
        raise ApiError("InvalidRequest", "the request must be a JSON object")
    return request


def integer_field(request: dict[str, Any], key: str) -> int | None:
    value = request.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        return value
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}", value):
        return int(value)
    raise ApiError("InvalidRequest", f"{key} must be an integer, not {value!r}")


def boolean_field(request: dict[str, Any], key: str, default: bool) -> bool:
    value = request.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ApiError("InvalidRequest", f"{key} must be a boolean, not {value!r}")


def call_model(model: JobsModel, route: Route, request: dict[str, Any]) -> dict[str, Any]:
    """Translate one parsed request into the model call it names."""
    if route.api == "get_pending":
        return model.get_pending(route.thing)
    if route.api == "start_next":
        return model.start_next(
            route.thing,
            status_details=request.get("statusDetails"),
            step_timeout_min=integer_field(request, "stepTimeoutInMinutes"),
        )
    assert route.job_id is not None
    if route.api == "describe":
        return model.describe(
            route.thing,
            route.job_id,
            execution_number=integer_field(request, "executionNumber"),
            include_document=boolean_field(request, "includeJobDocument", True),
        )
    if route.api == "update":
        if "status" not in request:
            raise ApiError("InvalidRequest", "status is required")
        return model.update(
            route.thing,
            route.job_id,
            request["status"],
            status_details=request.get("statusDetails"),
            expected_version=integer_field(request, "expectedVersion"),
            execution_number=integer_field(request, "executionNumber"),
            include_state=boolean_field(request, "includeJobExecutionState", False),
            include_document=boolean_field(request, "includeJobDocument", False),
            step_timeout_min=integer_field(request, "stepTimeoutInMinutes"),
        )
    raise ApiError("InvalidTopic", f"no API for {route.api}")


def no_delay(client: mqtt.Client) -> None:
    """Turn Nagle off: a reply held back for a delayed ACK costs ~40 ms (paho leaves it on)."""
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class MqttApi:
    """Owns the paho client; answers device requests against `model` under `lock`.

    `lock` is the service's Condition: every handled request holds it and notifies it, so a
    management call, the timer thread and paho's network thread see one consistent model.
    """

    def __init__(
        self,
        host: str,
        port: int,
        model: JobsModel,
        clock: Clock,
        lock: threading.Condition,
        client_id: str | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.model = model
        self.clock = clock
        self.lock = lock
        self.interceptor: Interceptor | None = None
        self.on_exchange: Callable[[Exchange], None] | None = None
        self.subscribed = threading.Event()
        self._connect_error: str | None = None
        # MQTT 5 for its no-local subscriptions: under 3.1.1 every reply and notification the service
        # publishes comes back to it through its own wildcard (and is acknowledged), over half of what it reads.
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"iotjobs-local-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        # paho accepts float delays though its hints say int. Short ones keep broker-fault tests fast and
        # stop() prompt (paho finishes its reconnect sleep before the thread ends).
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)  # type: ignore[arg-type]
        self.client.max_inflight_messages_set(0)  # unlimited: a burst of replies must not queue
        if credentials is not None:
            self.client.username_pw_set(*credentials)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # ---- connection ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Connect and return once the broker has acknowledged the subscription."""
        # A clean start every time, with no session kept after a disconnect: 3.1.1's clean session.
        self.client.connect(self.host, self.port, keepalive=30, clean_start=True)
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            reason = self._connect_error or "no SUBACK"
            self.stop()
            raise RuntimeError(f"could not subscribe at {self.host}:{self.port}: {reason}")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.subscribed.clear()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        if reason.is_failure:
            self._connect_error = str(reason)
            return
        no_delay(client)
        client.subscribe(SUBSCRIPTION, options=SubscribeOptions(qos=1, noLocal=True))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        self.subscribed.clear()
        with self.lock:
            self.lock.notify_all()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Any,
    ) -> None:
        if all(not r.is_failure for r in reasons):
            self.subscribed.set()
            with self.lock:
                self.lock.notify_all()
        else:
            self._connect_error = f"subscription refused: {reasons}"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self.handle(message.topic, message.payload)
        except Exception:
            # An exception escaping a paho callback would end the network thread, and the service.
            log.exception("failed to handle %s", message.topic)

    # ---- publishing ----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes | str | dict[str, Any]) -> None:
        if isinstance(payload, dict):
            payload = encode(payload)
        self.client.publish(topic, payload, qos=1)

    def publish_notifications(self, notifications: list[Notification]) -> None:
        for note in notifications:
            self.publish(note.topic, {**note.payload, "timestamp": self.timestamp()})

    def timestamp(self) -> int:
        return int(self.clock.now())

    # ---- requests ------------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes | bytearray) -> None:
        """Answer one message from the subscription (the broker's network thread calls this)."""
        route = parse_topic(topic)
        if route is None:
            return
        with self.lock:
            request: dict[str, Any] | None = None
            error: ApiError | None = None
            try:
                request = parse_payload(payload)
            except ApiError as err:
                error = err
            if route.api == INVALID_TOPIC:
                response, outcome = (
                    ApiError("InvalidTopic", f"{topic} names no Jobs API").payload(),
                    "rejected",
                )
            elif error is not None:
                response, outcome = error.payload(), "rejected"
            else:
                assert request is not None
                response, outcome = self._answer(route, topic, request)
                if outcome == DROP:
                    return
            if request is not None and request.get("clientToken") is not None:
                response["clientToken"] = request["clientToken"]
            response["timestamp"] = self.timestamp()
            self.publish(f"{topic}/{outcome}", response)
            # Notifications go out after the reply, in the order the model recorded them.
            self.publish_notifications(self.model.take_notifications())
            if self.on_exchange is not None:
                self.on_exchange(Exchange(route.thing, route.api, topic, request, outcome, response))
            self.lock.notify_all()

    def _answer(self, route: Route, topic: str, request: dict[str, Any]) -> tuple[dict[str, Any], str]:
        try:
            if self.interceptor is not None:
                forced = self.interceptor(route.thing, route.api, topic, request, self.publish)
                if forced == DROP:
                    return {}, DROP
                if isinstance(forced, dict):
                    return {"message": "forced by the test interceptor", **forced}, "rejected"
            return call_model(self.model, route, request), "accepted"
        except ApiError as err:
            return err.payload(), "rejected"
        except Exception as exc:
            log.exception("request on %s failed", topic)
            return {"code": "InternalError", "message": repr(exc)}, "rejected"
