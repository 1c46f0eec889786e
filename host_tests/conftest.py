"""Shared fixtures: one mosquitto per session, a started local Jobs service per test, a unique thing name.

- `mosquitto`: session-scoped `Mosquitto` on a free loopback port. Do not stop or kill it in a test;
  start your own `Mosquitto()` for broker-fault tests (the service fixtures restart it if it died).
- `jobs_service`: a started `JobsService` on that broker with the real clock (timers tick by themselves).
- `jobs_service_manual_clock`: the same with a `ManualClock` (`service.clock`); move time with
  `service.clock.advance(seconds)` then fire due timers with `service.tick()`.
- `thing_name`: a valid thing name unique to the test. Both service fixtures create it in their
  service; a test that uses neither gets just the name. Use at most one service fixture per test:
  two services on one broker would both answer every request.
- `create_job`: `create_job(service, job_id, thing, document=None, **options)` creates the thing if
  needed and a SNAPSHOT job for it; returns CreateJob's response.
- `jobs_tls`: a started TLS service, as AWS serves devices (see the section "the local service with
  TLS" below, with `tls_ca`, `other_thing_name` and `stranger_ca`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from localjobs import certs
from localjobs.broker import Mosquitto
from localjobs.certs import CertificateFolder
from localjobs.clock import ManualClock
from localjobs.model import thing_arn
from localjobs.service import JobsService

DEFAULT_DOCUMENT: dict[str, Any] = {"operation": "test"}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the esp32like runtime before the first test when a selected test runs on it: from nothing it takes
    longer than a test's timeout (tests/tools call esp32like.ensure() too, which then finds it current)."""
    import esp32like

    if not any("esp32like" in item.nodeid for item in session.items) or esp32like.stale() is None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("esp32like: building MicroPython v%s from source: %s" % (esp32like.VERSION,
                                                                                   esp32like.stale()))
    try:
        esp32like.build()
    except esp32like.BuildError as e:
        pytest.exit("esp32like: %s" % e, returncode=1)


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    with Mosquitto() as broker:
        yield broker


@pytest.fixture
def thing_name(request: pytest.FixtureRequest) -> str:
    # The test's name makes broker logs readable; the suffix keeps reruns and params apart.
    base = re.sub(r"[^a-zA-Z0-9_-]+", "-", request.node.name).strip("-")[:100]
    return f"{base}-{uuid.uuid4().hex[:8]}"


def _started_service(broker: Mosquitto, thing: str, clock: ManualClock | None) -> JobsService:
    if not broker.running:
        broker.start()
    service = JobsService(broker.host, broker.port, clock=clock).start()
    service.create_thing(thing)
    return service


@pytest.fixture
def jobs_service(mosquitto: Mosquitto, thing_name: str) -> Iterator[JobsService]:
    service = _started_service(mosquitto, thing_name, None)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def jobs_service_manual_clock(mosquitto: Mosquitto, thing_name: str) -> Iterator[JobsService]:
    service = _started_service(mosquitto, thing_name, ManualClock())
    try:
        yield service
    finally:
        service.stop()


def make_job(
    service: JobsService,
    job_id: str,
    thing: str,
    document: Mapping[str, Any] | str | None = None,
    **options: Any,
) -> dict[str, Any]:
    service.create_thing(thing)
    return service.create_job(job_id, [thing_arn(thing)], DEFAULT_DOCUMENT if document is None else document, **options)


@pytest.fixture
def create_job() -> Callable[..., dict[str, Any]]:
    return make_job


# ---- the local service over HTTP (issue 4) -------------------------------------------------------
# - `jobs_http`: a started `JobsService` with a `ManualClock`, the REST APIs on a free loopback port
#   (`service.http_url`) and `tmp_path / "files"` as its S3 folder; `thing_name` exists in it.
# - `iot`, `iot_data`: boto3 clients for `iot` and `iot-jobs-data` pointed at `jobs_http`.

BOTO_ARGS: dict[str, Any] = {
    "region_name": "us-east-1",
    "aws_access_key_id": "AKIDLOCAL",
    "aws_secret_access_key": "local-secret",
}


@pytest.fixture
def jobs_http(mosquitto: Mosquitto, thing_name: str, tmp_path: Any) -> Iterator[JobsService]:
    if not mosquitto.running:
        mosquitto.start()
    (tmp_path / "files").mkdir()
    service = JobsService(
        mosquitto.host, mosquitto.port, clock=ManualClock(), http=("127.0.0.1", 0), files=tmp_path / "files"
    ).start()
    service.create_thing(thing_name)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def iot(jobs_http: JobsService) -> Any:
    import boto3

    return boto3.client("iot", endpoint_url=jobs_http.http_url, **BOTO_ARGS)


@pytest.fixture
def iot_data(jobs_http: JobsService) -> Any:
    import boto3

    return boto3.client("iot-jobs-data", endpoint_url=jobs_http.http_url, **BOTO_ARGS)


# ---- the local service with TLS (issue 13) -------------------------------------------------------
# - `tls_ca`: a `CertificateFolder` made once per session by `certs.init`: the CA (`ca_pem`, `ca_der`)
#   and the server's certificate for localhost and 127.0.0.1.
# - `other_thing_name`: a second thing name unique to the test.
# - `jobs_tls`: a started `JobsService(tls=tls_ca.root, https=..., http=...)` with the real clock.
#   Devices reach it only over MQTT with TLS at `service.mqtts` (host, port) and over HTTPS at
#   `service.https_url`, each with a certificate of `tls_ca` that reaches only its own thing; the
#   management API is plain HTTP at `service.http_url` and Python. `thing_name` and `other_thing_name`
#   exist in it, each with its certificate: `tls_ca.thing(name)` has `cert_der`, `key_der` (boards,
#   the unix port) and `cert_pem`, `key_pem` (desktop tools); dial `localhost` or 127.0.0.1 (the
#   server certificate's names). `service.broker` is its own mosquitto (restart or kill it freely).
# - `stranger_ca`: another CA's folder, made once per session: `certs.issue_thing(stranger_ca.root,
#   name)` gives a certificate the service must refuse, whatever thing it names.


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateFolder:
    return certs.init(tmp_path_factory.mktemp("tls-ca"))


@pytest.fixture(scope="session")
def stranger_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateFolder:
    return certs.init(tmp_path_factory.mktemp("stranger-ca"))


@pytest.fixture
def other_thing_name(thing_name: str) -> str:
    return "other-" + thing_name


@pytest.fixture
def jobs_tls(tls_ca: CertificateFolder, thing_name: str, other_thing_name: str) -> Iterator[JobsService]:
    for name in (thing_name, other_thing_name):
        certs.issue_thing(tls_ca.root, name)
    service = JobsService(
        "127.0.0.1", 0, tls=tls_ca.root, https=("127.0.0.1", 0), http=("127.0.0.1", 0)
    ).start()
    try:
        for name in (thing_name, other_thing_name):
            service.create_thing(name)
        yield service
    finally:
        service.stop()
