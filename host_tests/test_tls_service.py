"""The local service with TLS (`serve --tls DIR`): certificates from `certs`, devices served as AWS serves them.

Over MQTT (the service's own mosquitto, TLS only, a client certificate of the folder's CA required) and over HTTPS
(the device API, same certificates), each certificate reaches only its own thing; the devices' own jobs still
run to the end. Device-side checks run the library itself on every runtime; desktop-side ones use paho and boto3.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import paho.mqtt.client as mqtt
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from conftest import BOTO_ARGS
from device import PORTABLE, RUNTIMES, Run, parse, run, start
from localjobs import certs
from localjobs.authz import SERVICE_USER
from localjobs.certs import CertificateFolder, ThingCertificate
from localjobs.model import thing_arn
from localjobs.service import JobsService

SCRIPT = PORTABLE / "tls_service.py"
CLI = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "iotjobs-local"
# As test_tls.py: Mbed TLS's handshake allocates from the MicroPython heap on the unix port.
TLS_HEAP = "96k"
WAIT = 10.0
DOC = {"operation": "tls"}


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ---- certificates ------------------------------------------------------------------------------------------


def openssl(*args: str | Path) -> str:
    return subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, text=True).stdout


def test_certs_commands_make_the_folder_and_record_each_thing(tmp_path: Path) -> None:
    folder = tmp_path / "ca"
    made = subprocess.run([CLI, "certs", "init", folder], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    made = subprocess.run([CLI, "certs", "thing", folder, "dev-1"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    thing = folder / "things" / "dev-1"
    for name in ("ca.pem", "ca.der", "server/cert.pem", "server/key.pem", "things/dev-1/cert.pem",
                 "things/dev-1/key.pem", "things/dev-1/cert.der", "things/dev-1/key.der"):
        assert (folder / name).is_file(), name
    assert openssl("verify", "-CAfile", folder / "ca.pem", thing / "cert.pem", folder / "server/cert.pem").count(
        ": OK") == 2
    # The DER files are the PEM ones in the form boards load.
    assert openssl("x509", "-inform", "DER", "-in", thing / "cert.der") == (thing / "cert.pem").read_text()
    assert "subject=CN = dev-1" in openssl("x509", "-in", thing / "cert.pem", "-noout", "-subject")
    names = openssl("x509", "-in", folder / "server/cert.pem", "-noout", "-ext", "subjectAltName")
    assert "DNS:localhost" in names and "IP Address:127.0.0.1" in names
    # The record: which certificate (AWS's id: the SHA-256 of its DER) belongs to which thing.
    record = json.loads((folder / "things.json").read_text())
    cert_id = certs.certificate_id((thing / "cert.der").read_bytes())
    assert record == {"dev-1": {"certificateId": cert_id,
                                "certificateArn": "arn:aws:iot:us-east-1:123456789012:cert/" + cert_id,
                                "commonName": "dev-1", "files": "things/dev-1"}}
    # Again: nothing is replaced, so a deployed board's certificate stays valid.
    again = subprocess.run([CLI, "certs", "thing", folder, "dev-1"], capture_output=True, text=True)
    assert again.returncode == 0 and cert_id in again.stdout
    assert certs.certificate_id((thing / "cert.der").read_bytes()) == cert_id


def test_certs_commands_refuse_clearly(tmp_path: Path) -> None:
    done = subprocess.run([CLI, "certs", "thing", tmp_path, "dev-1"], capture_output=True, text=True)
    assert done.returncode == 1 and "is not a CA folder" in done.stderr and "certs init" in done.stderr
    certs.init(tmp_path / "ca")
    done = subprocess.run([CLI, "certs", "thing", tmp_path / "ca", "no/slash"], capture_output=True, text=True)
    assert done.returncode == 1 and "is not a thing name" in done.stderr
    assert not (tmp_path / "ca" / "things.json").exists()


def test_certs_init_with_a_name_remakes_only_the_server_certificate(tmp_path: Path) -> None:
    folder = certs.init(tmp_path)
    ca = folder.ca_pem.read_bytes()
    thing = certs.issue_thing(tmp_path, "dev-1")
    done = subprocess.run([CLI, "certs", "init", tmp_path, "--name", "192.168.1.20", "--name", "laptop.lan"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    names = openssl("x509", "-in", folder.server_cert, "-noout", "-ext", "subjectAltName")
    assert "IP Address:192.168.1.20" in names and "DNS:laptop.lan" in names and "DNS:localhost" in names
    assert folder.ca_pem.read_bytes() == ca
    assert ": OK" in openssl("verify", "-CAfile", folder.ca_pem, thing.cert_pem)


# ---- over MQTT: the device library on every runtime ---------------------------------------------------------


def device(runtime: str, scenario: str, service: JobsService, ca: CertificateFolder, cert: ThingCertificate | None,
           thing: str, other: str) -> list[str]:
    files = [str(cert.cert_der), str(cert.key_der)] if cert else ["-", "-"]
    return [scenario, "localhost", str(service.mqtts[1]), str(ca.ca_der), *files, thing, other]


def run_device(runtime: str, *args: str) -> Run:
    done = run(runtime, SCRIPT, *args, heapsize=TLS_HEAP, timeout=60)
    assert done.returncode == 0 and "failed" not in done.results, done.stdout + done.stderr
    return done


def test_a_device_runs_its_own_job_over_mqtts(runtime, jobs_tls, tls_ca, thing_name, other_thing_name):
    jobs_tls.create_job("job-own", [thing_arn(thing_name)], DOC)
    done = run_device(runtime, *device(runtime, "job", jobs_tls, tls_ca, tls_ca.thing(thing_name), thing_name,
                                       other_thing_name))
    assert done["done"]["status"] == "SUCCEEDED"
    changes = [(h["status"], h["statusDetails"]) for h in jobs_tls.history(thing_name, "job-own")]
    assert changes == [("QUEUED", {}), ("IN_PROGRESS", {}), ("IN_PROGRESS", {"over": "mutual TLS"}),
                       ("SUCCEEDED", {"result": "ok"})]


def refused_connection(done: Run) -> dict[str, Any]:
    assert "connected" not in done.results, "the connection should have been refused"
    error: dict[str, Any] = done["error"]
    # mosquitto ends the handshake: Mbed TLS reports the alert, or the write that meets the closed socket.
    assert error["type"] == "OSError", error
    assert "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE" in error["message"] or error["message"] in (
        "32", "[Errno 32] EPIPE"), error
    return error


def test_a_device_without_a_certificate_is_refused(runtime, jobs_tls, tls_ca, thing_name, other_thing_name):
    refused_connection(run_device(runtime, *device(runtime, "connect", jobs_tls, tls_ca, None, thing_name,
                                                   other_thing_name)))


def test_a_certificate_of_another_ca_is_refused(runtime, jobs_tls, tls_ca, stranger_ca, thing_name,
                                                other_thing_name):
    # The same thing's name, the service's CA trusted: only the issuer of the device's certificate is wrong.
    stranger = certs.issue_thing(stranger_ca.root, thing_name)
    refused_connection(run_device(runtime, *device(runtime, "connect", jobs_tls, tls_ca, stranger, thing_name,
                                                   other_thing_name)))


def test_jobs_client_for_another_thing_is_refused_at_connect(runtime, jobs_tls, tls_ca, thing_name,
                                                              other_thing_name):
    done = run_device(runtime, *device(runtime, "client_for_other", jobs_tls, tls_ca, tls_ca.thing(thing_name),
                                       thing_name, other_thing_name))
    assert done["error"]["type"] == "OSError"
    assert done["error"]["message"].startswith("the broker refused the subscription to $aws/things/%s/jobs/"
                                               % other_thing_name)


def test_another_things_topics_are_out_of_reach(runtime, jobs_tls, tls_ca, thing_name, other_thing_name):
    args = device(runtime, "other_topics", jobs_tls, tls_ca, tls_ca.thing(thing_name), thing_name, other_thing_name)
    process = start(runtime, SCRIPT, *args, heapsize=TLS_HEAP)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != "READY":
            line = process.stdout.readline()
            assert line, process.communicate(timeout=WAIT)
            lines.append(line.strip())
        # Each causes a notify-next on its thing's topic: the other's first, so it would arrive first.
        jobs_tls.create_job("job-other", [thing_arn(other_thing_name)], DOC)
        jobs_tls.create_job("job-own", [thing_arn(thing_name)], DOC)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    done = parse(process.returncode, "\n".join(lines) + "\n" + out, err)
    assert done.returncode == 0 and "failed" not in done.results, done.stdout + done.stderr
    # Subscribing to the other thing's topics, or to wildcards over all things, is refused (SUBACK 0x80).
    assert set(done["subscribe"]) == {f"$aws/things/{other_thing_name}/jobs/notify-next",
                                      f"$aws/things/{other_thing_name}/jobs/#", "$aws/things/+/jobs/notify-next", "#"}
    for outcome in done["subscribe"].values():
        assert outcome != "granted" and outcome["type"] == "MQTTException", outcome
    # Nothing of the other thing's reached the device; its own notification did.
    assert done["received"] == [f"$aws/things/{thing_name}/jobs/notify-next"]
    # Its own request, published after one on the other thing's topic, was answered; the other one never
    # reached the service, so the other thing's job is untouched.
    assert done["answered"]["clientToken"] == "mine"
    assert [j["jobId"] for j in done["answered"]["queuedJobs"]] == ["job-own"]
    assert not [r for r in jobs_tls.requests if r.thing == other_thing_name]
    assert jobs_tls.status(other_thing_name, "job-other") == "QUEUED"


# ---- over MQTT: desktop tools (paho) -----------------------------------------------------------------------


class Desk:
    """A paho client for the TLS service, its network loop driven in this thread until what is awaited happens."""

    def __init__(self, host: str, port: int, ca: Path | None, cert: ThingCertificate | None = None,
                 protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311, username: str | None = None,
                 password: str | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca), certfile=str(cert.cert_pem) if cert else None,
                                keyfile=str(cert.key_pem) if cert else None)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.host, self.port = host, port
        self.connack: ReasonCode | None = None
        self.closed = False
        self.acks: dict[int, list[ReasonCode]] = {}
        self.messages: list[tuple[str, bytes | bytearray]] = []
        self.client.on_connect = lambda c, u, f, reason, p: setattr(self, "connack", reason)
        self.client.on_disconnect = lambda *args: setattr(self, "closed", True)
        self.client.on_subscribe = lambda c, u, mid, reasons, p: self.acks.__setitem__(mid, list(reasons))
        self.client.on_publish = lambda c, u, mid, reason, p: self.acks.__setitem__(mid, [reason])
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))

    def until(self, done: Callable[[], object], timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "timed out"
            self.client.loop(timeout=0.05)

    def connect(self) -> bool:
        """True once the broker accepted the connection, False when it refused it or the handshake."""
        try:
            self.client.connect(self.host, self.port)
            self.until(lambda: self.connack is not None or self.closed)
        except (OSError, ssl.SSLError):
            return False
        return self.connack is not None and not self.connack.is_failure and not self.closed

    def subscribe(self, topic: str) -> ReasonCode:
        mid = self.client.subscribe(topic, 1)[1]
        assert mid is not None
        self.until(lambda: mid in self.acks)
        return self.acks[mid][0]

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        mid = self.client.publish(topic, payload, qos=1).mid
        self.until(lambda: mid in self.acks)
        return self.acks[mid][0]

    def close(self) -> None:
        self.client.disconnect()


@pytest.fixture
def desk(jobs_tls: JobsService, tls_ca: CertificateFolder) -> Iterator[Callable[..., Desk]]:
    made: list[Desk] = []

    def make(cert: ThingCertificate | None, **options: Any) -> Desk:
        host, port = jobs_tls.mqtts
        ca = options.pop("ca", tls_ca.ca_pem)
        made.append(Desk(options.pop("host", host), options.pop("port", port), ca, cert, **options))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_paho_without_a_certificate_or_with_another_cas_is_refused(desk, stranger_ca, thing_name):
    assert not desk(None).connect()
    assert not desk(certs.issue_thing(stranger_ca.root, thing_name)).connect()


def test_paho_with_a_things_certificate_reaches_only_that_thing(jobs_tls, desk, tls_ca, thing_name,
                                                                other_thing_name):
    # MQTT 5, for the broker's reason codes: a refused subscription and a refused publish say why.
    client = desk(tls_ca.thing(thing_name), protocol=mqtt.MQTTv5)
    assert client.connect()
    for topic in (f"$aws/things/{other_thing_name}/jobs/notify-next", f"$aws/things/{other_thing_name}/jobs/#",
                  "$aws/things/+/jobs/#", "$aws/#", "#"):
        assert str(client.subscribe(topic)) == "Not authorized", topic
    assert not client.subscribe(f"$aws/things/{thing_name}/jobs/#").is_failure
    assert str(client.publish(f"$aws/things/{other_thing_name}/jobs/start-next", b"{}")) == "Not authorized"
    assert not client.publish(f"$aws/things/{thing_name}/jobs/get", b'{"clientToken": "mine"}').is_failure
    jobs_tls.create_job("job-other", [thing_arn(other_thing_name)], DOC)
    jobs_tls.create_job("job-own", [thing_arn(thing_name)], DOC)
    own = f"$aws/things/{thing_name}/jobs/notify-next"
    client.until(lambda: own in [topic for topic, _ in client.messages])
    assert all(f"/{thing_name}/" in topic for topic, _ in client.messages), client.messages
    assert [r.thing for r in jobs_tls.requests] == [thing_name]
    assert jobs_tls.status(other_thing_name, "job-other") == "QUEUED"


def test_the_services_own_listener_is_closed_to_everyone_else(jobs_tls, desk, thing_name):
    assert jobs_tls.broker is not None and jobs_tls.broker.plain_port is not None
    plain = {"ca": None, "host": jobs_tls.broker.plain_host, "port": jobs_tls.broker.plain_port}
    assert not desk(None, **plain).connect()
    assert not desk(None, username=thing_name, **plain).connect()
    assert not desk(None, username=SERVICE_USER, password="a guess", **plain).connect()
    # Devices have no plain listener at all: the device port speaks TLS only.
    assert not desk(None, ca=None).connect()


def test_a_thing_recorded_while_the_service_runs_is_admitted(jobs_tls, desk, tls_ca, thing_name):
    # The longest name a thing may have, twice what a certificate's Common Name may hold.
    late = certs.issue_thing(tls_ca.root, ("late-" + thing_name).ljust(128, "x"))
    subject = openssl("x509", "-in", late.cert_pem, "-noout", "-subject", "-nameopt", "multiline")
    assert len(subject.split("commonName", 1)[1].split("=", 1)[1].strip()) == 64
    jobs_tls.wait_until(lambda: late.thing in jobs_tls.admitted, timeout=WAIT)
    client = desk(late)
    assert client.connect()
    assert not client.subscribe(f"$aws/things/{late.thing}/jobs/notify-next").is_failure
    assert client.subscribe(f"$aws/things/{thing_name}/jobs/notify-next").is_failure


def test_a_broker_restart_keeps_who_may_do_what(jobs_tls, desk, tls_ca, thing_name, other_thing_name):
    late = certs.issue_thing(tls_ca.root, "late-" + thing_name)
    jobs_tls.wait_until(lambda: late.thing in jobs_tls.admitted, timeout=WAIT)
    assert jobs_tls.broker is not None
    jobs_tls.broker.restart()
    assert jobs_tls.wait_subscribed(WAIT)
    for cert in (tls_ca.thing(thing_name), late):
        client = desk(cert)
        assert client.connect()
        assert not client.subscribe(f"$aws/things/{cert.thing}/jobs/notify-next").is_failure
        assert client.subscribe(f"$aws/things/{other_thing_name}/jobs/notify-next").is_failure


# ---- over HTTPS ---------------------------------------------------------------------------------------------


def jobs_data(service: JobsService, ca: CertificateFolder, cert: ThingCertificate) -> Any:
    """boto3's iot-jobs-data client with a device's certificate (its SigV4 signature is ignored here)."""
    config = Config(client_cert=(str(cert.cert_pem), str(cert.key_pem)), retries={"max_attempts": 1})
    return boto3.client("iot-jobs-data", endpoint_url=service.https_url, verify=str(ca.ca_pem), config=config,
                        **BOTO_ARGS)


def test_https_a_device_runs_its_own_job(jobs_tls, tls_ca, thing_name):
    jobs_tls.create_job("job-own", [thing_arn(thing_name)], DOC)
    data = jobs_data(jobs_tls, tls_ca, tls_ca.thing(thing_name))
    assert [j["jobId"] for j in data.get_pending_job_executions(thingName=thing_name)["queuedJobs"]] == ["job-own"]
    execution = data.start_next_pending_job_execution(thingName=thing_name)["execution"]
    assert execution["jobId"] == "job-own" and json.loads(execution["jobDocument"]) == DOC
    data.update_job_execution(thingName=thing_name, jobId="job-own", status="IN_PROGRESS",
                              statusDetails={"over": "https"})
    described = data.describe_job_execution(thingName=thing_name, jobId="job-own")["execution"]
    assert described["status"] == "IN_PROGRESS" and described["statusDetails"] == {"over": "https"}
    data.update_job_execution(thingName=thing_name, jobId="job-own", status="SUCCEEDED")
    assert jobs_tls.status(thing_name, "job-own") == "SUCCEEDED"


def test_https_refuses_another_things_calls_with_403(jobs_tls, tls_ca, thing_name, other_thing_name):
    jobs_tls.create_job("job-other", [thing_arn(other_thing_name)], DOC)
    before = jobs_tls.describe_job_execution(other_thing_name, "job-other")
    data = jobs_data(jobs_tls, tls_ca, tls_ca.thing(thing_name))
    calls = [
        lambda: data.get_pending_job_executions(thingName=other_thing_name),
        lambda: data.start_next_pending_job_execution(thingName=other_thing_name),
        lambda: data.describe_job_execution(thingName=other_thing_name, jobId="job-other"),
        lambda: data.update_job_execution(thingName=other_thing_name, jobId="job-other", status="FAILED"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as refused:
            call()
        error = refused.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert error["Error"]["Code"] == "ForbiddenException"
        assert error["Error"]["Message"] == (f"the certificate of thing {thing_name} is not allowed to act on "
                                             f"thing {other_thing_name}")
    assert jobs_tls.describe_job_execution(other_thing_name, "job-other") == before


def https_get(service: JobsService, path: str, ca: Path, cert: ThingCertificate | None) -> tuple[int, dict[str, Any]]:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert.cert_pem), str(cert.key_pem))
    assert service.https is not None
    connection = http.client.HTTPSConnection(service.https.host, service.https.port, context=context, timeout=WAIT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def test_https_without_a_certificate_or_with_another_cas_gets_no_answer(jobs_tls, tls_ca, stranger_ca, thing_name):
    path = f"/things/{thing_name}/jobs"
    for cert in (None, certs.issue_thing(stranger_ca.root, thing_name)):
        # Under TLS 1.3 the client learns of the refusal at its first read, not in the handshake.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https_get(jobs_tls, path, tls_ca.ca_pem, cert)
    assert https_get(jobs_tls, path, tls_ca.ca_pem, tls_ca.thing(thing_name))[0] == 200


def test_https_serves_only_the_device_api(jobs_tls, tls_ca, thing_name):
    cert = tls_ca.thing(thing_name)
    # The path both APIs share means iot-jobs-data here, unsigned as it is (over HTTP it would mean `iot`).
    status, body = https_get(jobs_tls, f"/things/{thing_name}/jobs", tls_ca.ca_pem, cert)
    assert (status, body) == (200, {"inProgressJobs": [], "queuedJobs": []})
    for path in ("/jobs", f"/things/{thing_name}/jobs/x/cancel", "/presigned/bucket/key"):
        status, body = https_get(jobs_tls, path, tls_ca.ca_pem, cert)
        assert status == 404 and body["message"].startswith("no operation"), path


def test_https_accepts_an_encoded_next(jobs_tls, tls_ca, thing_name):
    jobs_tls.create_job("job-own", [thing_arn(thing_name)], DOC)
    context = ssl.create_default_context(cafile=str(tls_ca.ca_pem))
    cert = tls_ca.thing(thing_name)
    context.load_cert_chain(str(cert.cert_pem), str(cert.key_pem))
    assert jobs_tls.https is not None
    connection = http.client.HTTPSConnection("localhost", jobs_tls.https.port, context=context, timeout=WAIT)
    try:
        connection.request("PUT", f"/things/{thing_name}/jobs/%24next", body=b"{}")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["execution"]["jobId"] == "job-own"
    finally:
        connection.close()


# ---- the command line ---------------------------------------------------------------------------------------

READY = re.compile(r"ready mqtts=127\.0\.0\.1:(\d+) https=127\.0\.0\.1:(\d+) http=127\.0\.0\.1:(\d+)$")


def test_serve_tls_prints_its_ready_line_and_serves_devices(tls_ca, thing_name):
    certs.issue_thing(tls_ca.root, thing_name)
    process = subprocess.Popen(
        [CLI, "serve", "--db", ":memory:", "--tls", tls_ca.root, "--mqtts", "127.0.0.1:0", "--https", "127.0.0.1:0",
         "--http", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        found = READY.match(line)
        assert found, line + process.stderr.read() if process.stderr else line
        mqtts, https, plain = (int(port) for port in found.groups())
        iot = boto3.client("iot", endpoint_url=f"http://127.0.0.1:{plain}", **BOTO_ARGS)
        iot.create_thing(thingName=thing_name)
        iot.create_job(jobId="job-cli", targets=[f"arn:aws:iot:us-east-1:123456789012:thing/{thing_name}"],
                       document=json.dumps(DOC))
        endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
        assert endpoint == f"127.0.0.1:{mqtts}"
        cert = tls_ca.thing(thing_name)
        config = Config(client_cert=(str(cert.cert_pem), str(cert.key_pem)))
        data = boto3.client("iot-jobs-data", endpoint_url=f"https://localhost:{https}", verify=str(tls_ca.ca_pem),
                            config=config, **BOTO_ARGS)
        assert data.start_next_pending_job_execution(thingName=thing_name)["execution"]["jobId"] == "job-cli"
        client = Desk("localhost", mqtts, tls_ca.ca_pem, cert)
        assert client.connect() and not client.subscribe(f"$aws/things/{thing_name}/jobs/notify-next").is_failure
        client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT) == 0
    finally:
        process.kill()


def test_serve_tls_refuses_a_broker_of_its_own_and_a_folder_without_a_ca(tls_ca, tmp_path):
    done = subprocess.run([CLI, "serve", "--db", ":memory:", "--tls", tls_ca.root, "--broker", "127.0.0.1:1883"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "leave out --broker" in done.stderr
    done = subprocess.run([CLI, "serve", "--db", ":memory:", "--tls", tmp_path, "--mqtts", "127.0.0.1:0",
                           "--https", "127.0.0.1:0", "--http", "127.0.0.1:0"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 1 and "is not a CA folder" in done.stderr


def test_the_tls_service_starts_and_stops_in_python(tls_ca, thing_name):
    certs.issue_thing(tls_ca.root, thing_name)
    with JobsService("127.0.0.1", 0, tls=tls_ca.root, https=("127.0.0.1", 0)) as service:
        assert service.mqtts[1] > 0 and service.https_url.startswith("https://127.0.0.1:")
        assert thing_name in service.admitted
        broker = service.broker
    assert broker is not None and not broker.running
    with pytest.raises(ValueError, match="needs tls"):
        JobsService("127.0.0.1", 0, https=("127.0.0.1", 0))
