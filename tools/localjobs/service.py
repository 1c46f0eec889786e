"""The local Jobs service: one model behind one lock, answering over MQTT, HTTP and Python, kept in SQLite."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .authz import SERVICE_USER, BrokerAdmin, Principals, broker_config, thing_commands
from .broker import Mosquitto
from .certs import CertificateFolder
from .changefeed import ChangeFeed
from .clock import Clock, ManualClock
from .console import Console
from .documents import Documents
from .http_api import HttpApi
from .https_api import DeviceHttpsApi
from .model import ApiError, JobExecution, JobsModel
from .mqtt_api import Exchange, Interceptor, MqttApi, parse_topic
from .store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")
TICK_SECONDS = 1.0
# How often a TLS service looks for things recorded in its folder since it started (`certs thing`).
ADMIT_SECONDS = 0.5
# A file name: after every save, compare what was written with the whole state and the model's indexes with a
# recount, appending any difference there (slow: for running the tests against the incremental paths).
CHECK_ENV = "IOTJOBS_LOCAL_CHECK"
# The device API's calls as the activity lines name them (model method -> name); the MQTT adapter's names too.
DEVICE_CALLS = {"get_pending": "get-pending", "start_next": "start-next", "describe": "describe", "update": "update"}
# Changes a device request makes itself: its own activity line already tells them.
DEVICE_CAUSES = ("start-next", "update")


class JobsService:
    """The device API over MQTT at host:port, plus the management API as Python methods.

    Management calls publish the notifications they cause, exactly as device requests do. Tests
    await state with `wait_until`, which wakes on every change. With a real `Clock` a background
    thread fires due timers about once a second; with a `ManualClock` call `tick()` yourself.

    `http=(host, port)` also serves the management and iot-jobs-data REST APIs there (port 0 picks a
    free one: see `http_url`). `db` is a SQLite file that keeps the whole state across restarts (None
    keeps it in memory only). `files` is the folder that stands in for S3: `s3://BUCKET/KEY` is
    `files/BUCKET/KEY`, for documentSource and for the presigned URLs devices receive.

    `tls=DIR` (a folder made by `iotjobs-local certs init`) serves devices as AWS does: the service
    starts its own mosquitto (`broker`) whose only device listener is MQTT over TLS at host:port
    (`mqtts`), for client certificates of DIR's CA, each reaching only its own thing's topics; the
    service's own connection uses a loopback listener with a password made at each start.
    `https=(host, port)` (needs `tls`) also serves the four device calls over HTTPS (`https_url`), for
    the same certificates, each allowed only its own thing. Things recorded in DIR while it runs are
    admitted within a second (`admitted`).

    `activity(line)` is told one line per device request (MQTT or HTTP) and per other change of an
    execution's state: `14:02:11 thing-7 start-next -> job-3 IN_PROGRESS v2`, `14:02:15 thing-7 job-4 CANCELED v3
    (canceled)`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        clock: Clock | None = None,
        client_id: str | None = None,
        ticker: bool | None = None,
        http: tuple[str, int] | None = None,
        db: str | Path | None = None,
        files: str | Path | None = None,
        tls: str | Path | None = None,
        https: tuple[str, int] | None = None,
        activity: Callable[[str], None] | None = None,
    ) -> None:
        self.host = host
        self.activity = activity
        self.port = port
        self.clock = clock if clock is not None else Clock()
        self.model = JobsModel(self.clock)
        self.requests: list[Exchange] = []
        # Reentrant, so an interceptor (run under the lock) may call the management methods.
        self._changed = threading.Condition(threading.RLock())
        self.broker: Mosquitto | None = None
        self.principals: Principals | None = None
        self._admitted: set[str] = set()
        self._password = secrets.token_urlsafe(24)
        credentials: tuple[str, str] | None = None
        if tls is not None:
            self.principals = Principals(CertificateFolder(Path(tls)).check())
            self.broker = self._tls_broker(self.principals)
            credentials = (SERVICE_USER, self._password)
        elif https is not None:
            raise ValueError("https= needs tls=: devices show certificates of the folder's CA")
        self._api = MqttApi(host, port, self.model, self.clock, self._changed, client_id, credentials)
        self._api.on_exchange = self._exchanged
        # The keys of the records each call changes, for the console's live streams.
        self.changes = ChangeFeed()
        self._db = db
        self.store = Store(db) if db is not None else None
        if self.store is not None:
            self.model.load_records(self.store.load())
            self.store.save(self.model.to_records())
        self._check = os.environ.get(CHECK_ENV)
        # Kept in the database so presigned URLs handed out before a restart still work after it.
        secret = self.store.setting("presign-secret", secrets.token_bytes(32)) if self.store else None
        self.documents = Documents(files, self.clock, secret=secret)
        self.model.fetch_document = self.documents.fetch
        self.http: HttpApi | None = None
        self._endpoints = {"iot:Data": f"{host}:{port}", "iot:Data-ATS": f"{host}:{port}"}
        if http is not None:
            self.http = HttpApi(self.model, self._call, self.documents, http[0], http[1], self._endpoints)
            self._endpoints["iot:Jobs"] = self.http.address
            self.documents.base_url = self.http.url
            self.model.presign = self.documents.presign
            self.http.mounts[Console.PATH] = Console(self).serve
        self.https: DeviceHttpsApi | None = None
        if https is not None:
            assert self.principals is not None
            self.https = DeviceHttpsApi(self.model, self._call, self.documents, self.principals, https[0], https[1])
        self._ticker_wanted = ticker if ticker is not None else not isinstance(self.clock, ManualClock)
        self._ticker: threading.Thread | None = None
        self._admitter: threading.Thread | None = None
        self._stopping = threading.Event()

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> JobsService:
        """Returns once the broker has acknowledged the service's subscription."""
        self._stopping.clear()
        if self.store is None and self._db is not None:
            # Started again after stop(): the model is still in memory; the file only needs opening.
            self.store = Store(self._db)
        if self.broker is not None:
            self._start_tls_broker()
        try:
            self._api.start(timeout)
        except BaseException:
            if self.broker is not None:
                self.broker.stop()
            raise
        if self.http is not None:
            self.http.start()
        if self.https is not None:
            self.https.start()
        if self._ticker_wanted:
            self._ticker = threading.Thread(target=self._tick_forever, name="localjobs-ticker", daemon=True)
            self._ticker.start()
        if self.broker is not None:
            self._admitter = threading.Thread(target=self._admit_forever, name="localjobs-admit", daemon=True)
            self._admitter.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.changes.close()
        for thread in (self._ticker, self._admitter):
            if thread is not None:
                thread.join()
        self._ticker = self._admitter = None
        if self.http is not None:
            self.http.stop()
        if self.https is not None:
            self.https.stop()
        self._api.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.store is not None:
            with self._changed:
                self.store.close()
            self.store = None

    @property
    def http_url(self) -> str:
        """http://HOST:PORT of the REST APIs (for boto3's endpoint_url)."""
        if self.http is None:
            raise RuntimeError("this service was started without http=")
        return self.http.url

    @property
    def mqtts(self) -> tuple[str, int]:
        """(host, port) of the broker's device listener: MQTT over TLS with a client certificate."""
        if self.broker is None:
            raise RuntimeError("this service was started without tls=")
        return self.broker.host, self.broker.port

    @property
    def https_url(self) -> str:
        """https://HOST:PORT of the device API over HTTPS."""
        if self.https is None:
            raise RuntimeError("this service was started without https=")
        return self.https.url

    @property
    def admitted(self) -> frozenset[str]:
        """The things whose certificates the broker lets in (those recorded in the folder, once seen)."""
        with self._changed:
            return frozenset(self._admitted)

    def __enter__(self) -> JobsService:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def subscribed(self) -> bool:
        return self._api.subscribed.is_set()

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        """After a broker restart: wait until the service has reconnected and resubscribed."""
        return self._api.subscribed.wait(timeout)

    # ---- test hooks ----------------------------------------------------------------------------

    @property
    def interceptor(self) -> Interceptor | None:
        """fn(thing, api, topic, request, publish), called before each device request is answered.

        `api` is get_pending, start_next, describe or update. `publish(topic, payload_bytes)` goes
        out on the service's connection ahead of the reply. Returning {"code": ..., "message": ...}
        rejects the request with that instead of processing it.
        """
        return self._api.interceptor

    @interceptor.setter
    def interceptor(self, fn: Interceptor | None) -> None:
        self._api.interceptor = fn

    def wait_until(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Wait until predicate() is truthy (it runs under the service lock); returns its last value."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def read(self, method: Callable[..., T], *args: Any) -> T:
        """Run a model query under the service lock, without the persisting and announcing a change needs."""
        with self._changed:
            return method(*args)

    def publish(self, topic: str, payload: bytes | str | dict[str, Any]) -> None:
        """Publish anything on the service's own connection (QoS 1)."""
        self._api.publish(topic, payload)

    def history(self, thing: str, job_id: str, execution_number: int | None = None) -> list[dict[str, Any]]:
        """Every applied change of the execution (the latest one unless numbered), oldest first.

        Entries are {"status", "statusDetails", "versionNumber", "time", "cause"}; cause is one of
        created, start-next, update, canceled, timed-out, removed. [] when there is no such execution.
        """
        with self._changed:
            return self.model.history(thing, job_id, execution_number)

    def status(self, thing: str, job_id: str) -> str | None:
        """The status of the thing's latest execution of the job, None if it has none."""
        with self._changed:
            run = self.model.execution(thing, job_id)
            return run.status if run else None

    def execution(self, thing: str, job_id: str, execution_number: int | None = None) -> JobExecution | None:
        """The model's execution object itself: read it under `wait_until` or after the fact."""
        with self._changed:
            return self.model.execution(thing, job_id, execution_number)

    def tick(self) -> list[tuple[str, str]]:
        """Fire due timers now; returns the (thing, jobId) executions that timed out."""
        return self._call(self.model.tick)

    # ---- management API (delegated to the model, notifications published) ----------------------

    def create_thing(self, name: str, attributes: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self._call(self.model.create_thing, name, attributes)

    def delete_thing(self, name: str) -> None:
        self._call(self.model.delete_thing, name)

    def create_thing_group(self, name: str, description: str | None = None) -> dict[str, Any]:
        return self._call(self.model.create_thing_group, name, description)

    def delete_thing_group(self, name: str) -> None:
        self._call(self.model.delete_thing_group, name)

    def add_thing_to_thing_group(self, group: str, thing: str) -> None:
        self._call(self.model.add_thing_to_thing_group, group, thing)

    def remove_thing_from_thing_group(self, group: str, thing: str) -> None:
        self._call(self.model.remove_thing_from_thing_group, group, thing)

    def create_job(
        self,
        job_id: str,
        targets: Iterable[str],
        document: str | Mapping[str, Any] | None = None,
        target_selection: str = "SNAPSHOT",
        description: str | None = None,
        timeout_config: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """`options`: document_source, document_parameters, presigned_url_config, rollout_config, abort_config."""
        return self._call(
            self.model.create_job,
            job_id,
            list(targets),
            document,
            target_selection=target_selection,
            description=description,
            timeout_config=timeout_config,
            **options,
        )

    def update_job(self, job_id: str, **changes: Any) -> None:
        """`changes`: description, presigned_url_config, rollout_config, abort_config, timeout_config."""
        self._call(self.model.update_job, job_id, **changes)

    def associate_targets_with_job(
        self, job_id: str, targets: Iterable[str], comment: str | None = None
    ) -> dict[str, Any]:
        return self._call(self.model.associate_targets_with_job, job_id, list(targets), comment)

    def describe_job(self, job_id: str) -> dict[str, Any]:
        return self._call(self.model.describe_job, job_id)

    def get_job_document(self, job_id: str) -> str:
        return self._call(self.model.get_job_document, job_id)

    def list_jobs(self, status: str | None = None) -> list[dict[str, Any]]:
        return self._call(self.model.list_jobs, status)

    def describe_job_execution(
        self, thing: str, job_id: str, execution_number: int | None = None
    ) -> dict[str, Any]:
        return self._call(self.model.describe_job_execution, thing, job_id, execution_number)

    def list_job_executions_for_thing(self, thing: str, status: str | None = None) -> list[dict[str, Any]]:
        return self._call(self.model.list_job_executions_for_thing, thing, status)

    def list_job_executions_for_job(self, job_id: str, status: str | None = None) -> list[dict[str, Any]]:
        return self._call(self.model.list_job_executions_for_job, job_id, status)

    def cancel_job(
        self,
        job_id: str,
        force: bool = False,
        comment: str | None = None,
        reason_code: str | None = None,
    ) -> dict[str, Any]:
        return self._call(self.model.cancel_job, job_id, force, comment, reason_code)

    def cancel_job_execution(
        self,
        job_id: str,
        thing: str,
        force: bool = False,
        expected_version: int | None = None,
        status_details: Mapping[str, Any] | None = None,
    ) -> None:
        self._call(self.model.cancel_job_execution, job_id, thing, force, expected_version, status_details)

    def delete_job(self, job_id: str, force: bool = False) -> None:
        self._call(self.model.delete_job, job_id, force)

    def delete_job_execution(
        self, job_id: str, thing: str, execution_number: int, force: bool = False
    ) -> None:
        self._call(self.model.delete_job_execution, job_id, thing, execution_number, force)

    # ---- internals -----------------------------------------------------------------------------

    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._changed:
            answer: Any = None
            try:
                answer = method(*args, **kwargs)
                return answer
            except ApiError as err:
                answer = err
                raise
            finally:
                if self.activity is not None and getattr(method, "__name__", "") in DEVICE_CALLS:
                    # A device request over HTTP (iot-jobs-data): its arguments are (thing, jobId, ...).
                    job_id = args[1] if len(args) > 1 and isinstance(args[1], str) else None
                    self._tell_request(args[0], DEVICE_CALLS[method.__name__], job_id, answer)
                # Even a failed call may have changed state before raising; keep and announce what it did.
                self._persist()
                self._api.publish_notifications(self.model.take_notifications())
                self._changed.notify_all()

    def _exchanged(self, exchange: Exchange) -> None:
        # Called under the lock after each device request over MQTT, before the next one is read.
        self.requests.append(exchange)
        if self.activity is not None:
            route = parse_topic(exchange.topic)
            answer: Any = exchange.response
            if exchange.outcome != "accepted":
                answer = ApiError(str(exchange.response.get("code")), str(exchange.response.get("message")))
            api = DEVICE_CALLS.get(exchange.api, exchange.topic)
            self._tell_request(exchange.thing, api, route.job_id if route else None, answer)
        self._persist()

    # ---- activity lines ------------------------------------------------------------------------

    def _tell(self, text: str) -> None:
        assert self.activity is not None
        try:
            self.activity("%s %s" % (time.strftime("%H:%M:%S", time.localtime(self.clock.now())), text))
        except Exception:
            # A closed stdout must not cost a request its reply or its state.
            log.debug("activity line lost", exc_info=True)

    def _tell_request(self, thing: str, api: str, job_id: str | None, answer: Any) -> None:
        """One device request: what it asked and what came of it."""
        named = job_id if job_id != "$next" else None
        asked = "%s %s %s" % (thing, api, named) if named else "%s %s" % (thing, api)
        if isinstance(answer, ApiError):
            self._tell("%s -> rejected %s: %s" % (asked, answer.code, answer.message))
            return
        answer = answer if isinstance(answer, dict) else {}
        if api == "get-pending":
            self._tell("%s -> %d in progress, %d queued"
                       % (asked, len(answer.get("inProgressJobs") or ()), len(answer.get("queuedJobs") or ())))
            return
        execution = answer.get("execution")
        found = execution.get("jobId") if isinstance(execution, dict) else named
        run = self.model.execution(thing, found) if isinstance(found, str) else None
        if run is None:
            self._tell("%s -> nothing pending" % asked)
        elif named:
            self._tell("%s -> %s v%d" % (asked, run.status, run.version_number))
        else:
            self._tell("%s -> %s %s v%d" % (asked, run.job_id, run.status, run.version_number))

    def _tell_changes(self, changes: dict[tuple[str, str], dict[str, Any] | None]) -> None:
        """The execution changes that no device request told: created, canceled, timed out, removed, deleted."""
        for (kind, key), record in changes.items():
            if kind != "execution":
                continue
            if record is None:
                job_id, thing, number = json.loads(key)
                self._tell("%s %s #%d deleted" % (thing, job_id, number))
                continue
            history = record.get("history") or ()
            cause = history[-1]["cause"] if history else "changed"
            if cause not in DEVICE_CAUSES:
                self._tell("%s %s %s v%d (%s)" % (record["thing_name"], record["job_id"], record["status"],
                                                 record["version_number"], cause))

    def _persist(self) -> None:
        self.changes.publish(self.model.changed)
        if self.store is not None or self.activity is not None:
            changes = self.model.take_changes()
            if self.store is not None:
                self.store.write(changes)
            if self.activity is not None:
                self._tell_changes(changes)
        else:
            self.model.changed.clear()
        if self._check:
            errors = self.model.index_errors()
            if self.store is not None and self.store.save(self.model.to_records()):
                errors.append("rows missed by the incremental write")
            if errors:
                with open(self._check, "a") as out:
                    out.write("%s\n" % "; ".join(errors))

    def _tls_broker(self, principals: Principals) -> Mosquitto:
        folder = principals.folder
        things = principals.things()
        self._admitted = set(things)
        tls = {"cafile": folder.ca_pem, "certfile": folder.server_cert, "keyfile": folder.server_key,
               "require_certificate": True}
        return Mosquitto(self.port, self.host, tls=tls, plain_port=0,
                         security=broker_config(self._password, things))

    def _start_tls_broker(self) -> None:
        assert self.broker is not None and self.broker.plain_port is not None
        self.broker.start()
        self.port = self.broker.port
        self._api.host, self._api.port = self.broker.plain_host, self.broker.plain_port
        for kind in ("iot:Data", "iot:Data-ATS"):
            self._endpoints[kind] = f"{self.host}:{self.port}"

    def _admit_forever(self) -> None:
        while not self._stopping.wait(ADMIT_SECONDS):
            try:
                self._admit_recorded_things()
            except Exception:
                log.exception("could not admit newly recorded things")

    def _admit_recorded_things(self) -> None:
        assert self.principals is not None and self.broker is not None and self.broker.plain_port is not None
        new = {thing: name for thing, name in self.principals.things().items() if thing not in self._admitted}
        if not new:
            return
        admin = BrokerAdmin(self.broker.plain_host, self.broker.plain_port, self._password)
        admin.apply([command for thing, name in new.items() for command in thing_commands(thing, name)])
        with self._changed:
            self._admitted.update(new)
            self._changed.notify_all()

    def _tick_forever(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            try:
                self.tick()
            except Exception:
                log.exception("timer tick failed")
