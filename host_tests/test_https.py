"""The device API over HTTPS (iotjobs.https) on every runtime, against the TLS service's HTTPS listener.

The device scenarios that apply over HTTPS run the very scripts the MQTT ones run (scenarios.py, through
harness.run_scenario's https:// host); faults come from tools/faultproxy.py between device and service, timed by
the listener's interceptor; odd but lawful HTTP (chunked bodies, no length, error pages) from a canned server.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from device import PORTABLE, RUNTIMES, Run, parse, run, start
from faultproxy import FaultProxy
from localjobs import certs
from localjobs.certs import CertificateFolder
from localjobs.model import thing_arn
from localjobs.resources import ApiError
from localjobs.service import JobsService
from test_runner import RESET_EXIT_CODE, RUNNER_HEAP

SCENARIOS = PORTABLE / "scenarios.py"
HTTPS_SCENARIOS = PORTABLE / "https_scenarios.py"
RUNNER = PORTABLE / "runner_scenarios.py"
# Mbed TLS's handshake allocates from the MicroPython heap on the unix port: the same bound as the MQTT TLS tests.
HTTPS_HEAP = "96k"
DOC = {"operation": "greet", "steps": 2}
WAIT = 30.0


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def client_args(port: int, thing: str, ca: CertificateFolder, cert_of: str | None = None,
                ca_der: Path | None = None) -> list[str]:
    cert = ca.thing(cert_of or thing)
    return ["https://localhost", str(port), thing, "cert=%s" % cert.cert_der, "key=%s" % cert.key_der,
            "ca=%s" % (ca_der or ca.ca_der)]


def https_port(service: JobsService) -> int:
    return int(service.https_url.rsplit(":", 1)[1])


def scenario(runtime: str, name: str, service: JobsService, ca: CertificateFolder, thing: str, *args: str,
             script: Path = SCENARIOS, port: int | None = None, heapsize: str = HTTPS_HEAP) -> Run:
    done = run(runtime, script, name, *client_args(port or https_port(service), thing, ca), *args,
               heapsize=heapsize, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def statuses(service: JobsService, thing: str, job_id: str) -> list[str]:
    return [h["status"] for h in service.history(thing, job_id)]


@pytest.fixture
def proxy(jobs_tls: JobsService) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", https_port(jobs_tls)) as p:
        yield p


# ---- the device scenarios, as over MQTT ------------------------------------------------------------------------


def test_full_lifecycle(runtime, jobs_tls, tls_ca, thing_name):
    jobs_tls.create_job("job-life", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "lifecycle", jobs_tls, tls_ca, thing_name)
    pending = done["pending"]
    assert [j["jobId"] for j in pending["queuedJobs"]] == ["job-life"] and pending["inProgressJobs"] == []
    started = done["started"]
    assert started["jobId"] == "job-life" and started["status"] == "IN_PROGRESS"
    # Sent as a JSON string over HTTPS, handed over as over MQTT: the document itself.
    assert started["jobDocument"] == DOC
    assert started["statusDetails"] == {"step": "starting"}
    assert done["progress"]["executionState"]["versionNumber"] == started["versionNumber"] + 1
    assert done["done"]["executionState"] == {"status": "SUCCEEDED", "statusDetails": {"result": "ok"},
                                              "versionNumber": started["versionNumber"] + 2}
    assert done["next"] is None and done["dropped"] == 0
    assert statuses(jobs_tls, thing_name, "job-life") == ["QUEUED", "IN_PROGRESS", "IN_PROGRESS", "SUCCEEDED"]


@pytest.mark.parametrize("status", ["FAILED", "REJECTED"])
def test_failed_and_rejected(runtime, jobs_tls, tls_ca, thing_name, status):
    jobs_tls.create_job("job-end", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "finish", jobs_tls, tls_ca, thing_name, status)
    assert done["finished"]["executionState"]["status"] == status
    assert jobs_tls.describe_job_execution(thing_name, "job-end")["statusDetails"] == {
        "reason": "chosen by the handler"}


def test_queued_jobs_start_in_order_then_nothing_is_pending(runtime, jobs_tls, tls_ca, thing_name):
    for job_id in ("job-b", "job-a", "job-c"):
        jobs_tls.create_job(job_id, [thing_arn(thing_name)], DOC)
    assert scenario(runtime, "in_order", jobs_tls, tls_ca, thing_name)["started"] == ["job-b", "job-a", "job-c"]
    done = scenario(runtime, "nothing_pending", jobs_tls, tls_ca, thing_name)
    # $next with nothing pending is a 404 over HTTPS, and None as over MQTT.
    assert done["describe_next"] is None and done["start_next"] is None
    assert done["pending"] == {"inProgressJobs": [], "queuedJobs": []}


def test_describe_by_id_and_number(runtime, jobs_tls, tls_ca, thing_name):
    jobs_tls.create_job("job-desc", [thing_arn(thing_name)], DOC)
    number = jobs_tls.describe_job_execution(thing_name, "job-desc")["executionNumber"]
    done = scenario(runtime, "describe", jobs_tls, tls_ca, thing_name, "job-desc", str(number))
    assert done["full"]["jobDocument"] == DOC and done["full"]["status"] == "QUEUED"
    assert "jobDocument" not in done["without_document"]
    assert done["by_number"]["executionNumber"] == number
    assert done["unknown"]["code"] == "ResourceNotFound"


def test_version_mismatch_carries_state(runtime, jobs_tls, tls_ca, thing_name):
    jobs_tls.create_job("job-vm", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "version_mismatch", jobs_tls, tls_ca, thing_name)
    # iot-jobs-data answers 409 InvalidStateTransitionException: the client tells it is a version mismatch.
    assert done["mismatch"]["code"] == "VersionMismatch"
    assert done["mismatch"]["execution_state"]["status"] == "IN_PROGRESS"
    current = jobs_tls.describe_job_execution(thing_name, "job-vm")
    assert done["retry"]["executionState"]["versionNumber"] == current["versionNumber"]
    assert current["statusDetails"] == {"p": "2"}


def test_invalid_transition_and_terminal_state(runtime, jobs_tls, tls_ca, thing_name):
    jobs_tls.create_job("job-term", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "invalid_transition", jobs_tls, tls_ca, thing_name)
    assert done["transition"]["code"] == "InvalidStateTransition"
    assert done["transition"]["execution_state"]["status"] == "SUCCEEDED"
    jobs_tls.create_job("job-term-2", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "terminal", jobs_tls, tls_ca, thing_name)
    assert done["terminal"]["code"] == "TerminalStateReached" and "SUCCEEDED" in done["terminal"]["message"]


# What the service refuses with (model code, executionState) and the code the client must raise for it.
REFUSALS = [
    ("InvalidRequest", None, "InvalidRequest"),
    ("InvalidJson", None, "InvalidRequest"),
    ("InvalidTopic", None, "InvalidRequest"),
    ("InvalidStateTransition", {"status": "SUCCEEDED", "statusDetails": {"a": "b"}, "versionNumber": 3},
     "InvalidStateTransition"),
    ("VersionMismatch", {"status": "IN_PROGRESS", "statusDetails": {"a": "b"}, "versionNumber": 3},
     "VersionMismatch"),
    ("ResourceNotFound", None, "ResourceNotFound"),
    ("TerminalStateReached", None, "TerminalStateReached"),
    ("RequestThrottled", None, "RequestThrottled"),
    ("InternalError", None, "InternalError"),
]


def test_every_refusal_raises_the_jobs_error_mqtt_gives(runtime, jobs_tls, tls_ca, thing_name):
    refusals = iter(REFUSALS)

    def refuse(operation: str, params: dict[str, Any]) -> None:
        code, state, _ = next(refusals)
        raise ApiError(code, "forced " + code, state)

    jobs_tls.https.interceptor = refuse
    done = scenario(runtime, "rejections", jobs_tls, tls_ca, thing_name, str(len(REFUSALS)))
    seen = done["codes"]
    assert [c["code"] for c in seen] == [expected for _, _, expected in REFUSALS]
    for (code, state, _), error in zip(REFUSALS, seen):
        assert error["message"] == "forced " + code and error["execution_state"] == state


def test_bad_input_is_refused_before_sending(runtime, jobs_tls, tls_ca, thing_name, proxy):
    done = scenario(runtime, "bad_input", jobs_tls, tls_ca, thing_name, port=proxy.port)
    assert all(isinstance(why, str) and why for why in done["refused"]), done["refused"]
    assert done["bad_thing"] and "thing name" in done["bad_thing"]
    assert done["pending"]["queuedJobs"] == []
    # Only the valid call opened a connection.
    assert proxy.accepted == 1


def test_unicode_status_details_round_trip(runtime, jobs_tls, tls_ca, thing_name):
    text = "température élevée ✓ 中文"
    jobs_tls.create_job("job-u", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "unicode_details", jobs_tls, tls_ca, thing_name, text)
    assert done["details"] == {"message": text}
    assert jobs_tls.describe_job_execution(thing_name, "job-u")["statusDetails"] == {"message": text}


# The document of test_device_scenarios' 32 KB case: 900 small settings, the costly shape for json.loads. Over
# HTTPS it comes as a JSON string, every quote escaped: a 36 KB response.
LARGE_SETTINGS = {"key%04d" % i: "value-%04d-abcdefgh" % i for i in range(900)}
LARGE_DOC: dict[str, Any] = {"operation": "config", "settings": LARGE_SETTINGS, "blob": "", "marker": "end"}
LARGE_DOC["blob"] = "x" * (32700 - len(json.dumps(LARGE_DOC)))


def test_32k_document_on_a_bounded_heap(runtime, jobs_tls, tls_ca, thing_name):
    assert 32000 < len(json.dumps(LARGE_DOC)) <= 32768
    jobs_tls.create_job("job-big", [thing_arn(thing_name)], LARGE_DOC)
    done = scenario(runtime, "large_document", jobs_tls, tls_ca, thing_name, "job-big")
    document = done["document"]
    # Too big to parse on a board: on flash as a JobDocument of the document's own JSON text (unescaped).
    assert document["kind"] == "JobDocument"
    assert document["operation"] == "config" and document["marker"] == "end"
    assert document["size"] == len(json.dumps(LARGE_DOC))
    assert done["done"] is True
    assert jobs_tls.status(thing_name, "job-big") == "SUCCEEDED"


# ---- what only HTTPS has: one connection per call, its own faults, 403 --------------------------------------


def test_another_things_calls_get_403_and_the_own_ones_work(runtime, jobs_tls, tls_ca, thing_name,
                                                            other_thing_name):
    jobs_tls.create_job("job-theirs", [thing_arn(other_thing_name)], DOC)
    jobs_tls.create_job("job-mine", [thing_arn(thing_name)], DOC)
    done = scenario(runtime, "other_thing", jobs_tls, tls_ca, thing_name, other_thing_name, "job-theirs",
                    script=HTTPS_SCENARIOS)
    for refusal in done["other"]:
        assert refusal["code"] == "Forbidden", refusal
        assert "not allowed to act on thing " + other_thing_name in refusal["message"]
    assert done["own"] == ["job-mine"]
    assert statuses(jobs_tls, other_thing_name, "job-theirs") == ["QUEUED"]


def test_an_update_whose_answer_is_lost_is_sent_again_and_applied_once(runtime, jobs_tls, tls_ca, thing_name,
                                                                      proxy):
    jobs_tls.create_job("job-cut", [thing_arn(thing_name)], DOC)
    cut: list[str] = []

    def lose_each_update_answer_once(operation: str, params: dict[str, Any]) -> None:
        if operation == "UpdateJobExecution" and params["status"] not in cut:
            cut.append(params["status"])
            proxy.cut_after(0, "down")  # the service applies it; its answer never reaches the device

    jobs_tls.https.interceptor = lose_each_update_answer_once
    done = scenario(runtime, "resend", jobs_tls, tls_ca, thing_name, port=proxy.port, script=HTTPS_SCENARIOS)
    assert cut == ["IN_PROGRESS", "SUCCEEDED"]
    progress, final = done["states"]
    assert progress["status"] == "IN_PROGRESS" and progress["statusDetails"] == {"p": "1"}
    assert final["status"] == "SUCCEEDED" and final["statusDetails"] == {"result": "ok"}
    assert done["resent"] == 2 and done["connections"] == 5
    # Each update applied once: the second copy met the expectedVersion it had already moved past.
    history = jobs_tls.history(thing_name, "job-cut")
    assert [(h["status"], h["statusDetails"]) for h in history] == [
        ("QUEUED", {}), ("IN_PROGRESS", {}), ("IN_PROGRESS", {"p": "1"}), ("SUCCEEDED", {"result": "ok"})]


def test_a_stalled_link_times_out_within_the_calls_timeout(runtime, jobs_tls, tls_ca, thing_name, proxy):
    proxy.stall()  # no handshake: the connect and handshake are bounded too
    done = scenario(runtime, "timeout", jobs_tls, tls_ca, thing_name, "timeout_ms=800", port=proxy.port)
    assert "no response to get within 800 ms" in done["timeout"]["message"]
    assert 800 <= done["timeout"]["elapsed_ms"] < 5000


def interactive(runtime: str, act: Callable[[], object], *args: str) -> Run:
    """Run an https_scenarios.py scenario that stops at WAITING: act(), then let it go on to its end."""
    device = start(runtime, HTTPS_SCENARIOS, *args, heapsize=HTTPS_HEAP)
    try:
        assert device.stdin is not None
        first = wait_line(device, "WAITING")
        act()
        device.stdin.write("go\n")
        device.stdin.flush()
        out, err = device.communicate(timeout=WAIT)
    finally:
        device.kill()
    done = parse(device.returncode, "\n".join(first) + "\n" + out, err)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_an_answer_held_back_times_out_and_the_next_call_works(runtime, jobs_tls, tls_ca, thing_name, proxy):
    jobs_tls.create_job("job-late", [thing_arn(thing_name)], DOC)
    held: list[str] = []

    def hold_the_first_answer(operation: str, params: dict[str, Any]) -> None:
        if not held:
            held.append(operation)
            proxy.stall()

    jobs_tls.https.interceptor = hold_the_first_answer
    # A call that timed out makes the next one wait its backoff first: a short one here.
    done = interactive(runtime, proxy.resume, "late_answer", *client_args(proxy.port, thing_name, tls_ca),
                       "timeout_ms=800", "backoff_floor_ms=100")
    # The request reached the service (it is the one held), the answer never came: a timeout at the bound.
    assert held == ["GetPendingJobExecutions"]
    assert "no response to get within 800 ms" in done["first"]["timeout"]
    assert 800 <= done["elapsed_ms"] < 5000
    assert done["second"] == ["job-late"]


def test_a_call_brings_wifi_back_first(runtime, jobs_tls, tls_ca, thing_name, tmp_path):
    jobs_tls.create_job("job-wifi", [thing_arn(thing_name)], DOC)
    link = tmp_path / "link"
    link.write_text("down")
    done = interactive(runtime, lambda: link.write_text("up"), "wifi",
                       *client_args(https_port(jobs_tls), thing_name, tls_ca), "timeout_ms=1000", "wlan_ms=300",
                       "backoff_floor_ms=50", str(link))
    assert "WiFi did not come up" in done["down"]["timeout"] and done["asked"] >= 1
    assert done["up"] == ["job-wifi"]


def test_an_unreachable_service_is_a_timeout_with_the_cause(runtime, tls_ca, thing_name):
    certs.issue_thing(tls_ca.root, thing_name)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        done = run(runtime, SCENARIOS, "timeout", *client_args(port, thing_name, tls_ca), "timeout_ms=1500",
                   "backoff_floor_ms=100", "backoff_ceiling_ms=200", heapsize=HTTPS_HEAP)
    assert done.returncode == 0, done.stdout + done.stderr
    message = done["timeout"]["message"]
    assert "no response to get within 1500 ms" in message and ("ECONNREFUSED" in message or "111" in message)
    # Attempts follow the backoff until none fits in the call's time: never later than its timeout.
    assert done["timeout"]["elapsed_ms"] <= 1500 + 500


@pytest.mark.parametrize("problem", ["misnamed", "another CA"])
def test_the_services_certificate_is_verified(runtime, tls_ca, stranger_ca, thing_name, tmp_path, problem):
    if problem == "misnamed":
        # A CA of its own, whose server certificate names another host than the one dialled.
        folder = certs.init(tmp_path / "ca")
        certs.server_certificate(folder, ("iot.example.com",), folder.server_cert, folder.server_key)
        expected = "Common Name (CN) does not match"
    else:
        folder = tls_ca
        expected = "not correctly signed by the trusted CA"
    certs.issue_thing(folder.root, thing_name)
    trusted = folder.ca_der if problem == "misnamed" else stranger_ca.ca_der
    with JobsService("127.0.0.1", 0, tls=folder.root, https=("127.0.0.1", 0)) as service:
        service.create_thing(thing_name)
        done = run(runtime, SCENARIOS, "timeout", *client_args(https_port(service), thing_name, folder,
                                                               ca_der=trusted), "timeout_ms=1000",
                   heapsize=HTTPS_HEAP)
    assert done.returncode == 0, done.stdout + done.stderr
    assert expected in done["timeout"]["message"]


# ---- lawful HTTP the local service does not send --------------------------------------------------------------


class CannedServer:
    """HTTPS with the CA's server certificate and client certificates required; each connection gets the next
    canned response (raw bytes, written in small pieces), then is closed."""

    def __init__(self, folder: CertificateFolder, responses: list[bytes]) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(folder.server_cert, folder.server_key)
        self.context.load_verify_locations(cafile=folder.ca_pem)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.responses = list(responses)
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while self.responses:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            with raw:
                raw.settimeout(WAIT)
                try:
                    conn = self.context.wrap_socket(raw, server_side=True)
                except OSError:
                    continue
                with conn:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        request += conn.recv(4096)
                    self.requests.append(request)
                    response = self.responses.pop(0)
                    for i in range(0, len(response), 700):
                        conn.sendall(response[i:i + 700])

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


def http(status: str, body: bytes, *headers: str, length: bool = True) -> bytes:
    lines = ["HTTP/1.1 " + status, "Content-Type: application/json", *headers]
    if length:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(status: str, body: bytes, size: int) -> bytes:
    pieces = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                      for i in range(0, len(body), size))
    return http(status, pieces + b"0\r\nX-Trailer: t\r\n\r\n", "Transfer-Encoding: chunked", length=False)


def execution(document: Any, job_id: str = "job-1") -> bytes:
    return json.dumps({"execution": {"jobId": job_id, "status": "IN_PROGRESS", "versionNumber": 2,
                                     "executionNumber": 1, "jobDocument": json.dumps(document)}}).encode()


def test_chunked_unsized_and_error_pages(runtime, tls_ca, thing_name):
    certs.issue_thing(tls_ca.root, thing_name)
    small = {"operation": "greet", "text": "a \"quoted\" \\ line\nand \u00e9\u4e2d"}
    state = {"status": "SUCCEEDED", "statusDetails": {}, "versionNumber": 4}
    responses = [
        chunked("200 OK", execution(small), 37),
        chunked("200 OK", execution(LARGE_DOC, "job-2"), 1000),
        http("200 OK", execution(small, "job-3"), "Connection: close", length=False),
        http("200 OK", b"<html>not JSON</html>"),  # dropped; the call is made again
        # Header lines that the 4 KB buffer holds one at a time only.
        http("200 OK", execution(small, "job-4"), "X-Padding: " + "p" * 3000, "X-More: " + "m" * 3000),
        http("409 Conflict", json.dumps({"message": "too late", "executionState": state}).encode(),
             "x-amzn-ErrorType: InvalidStateTransitionException:http://internal.amazon.com/coral/com.amazonaws/"),
        http("502 Bad Gateway", b"<html>upstream down</html>", "Content-Type: text/html"),
    ]
    server = CannedServer(tls_ca, responses)
    try:
        done = run(runtime, HTTPS_SCENARIOS, "calls", *client_args(server.port, thing_name, tls_ca),
                   "backoff_floor_ms=50", "start", "describe:job-2", "start", "start", "update:job-5:FAILED",
                   "get", heapsize=HTTPS_HEAP, timeout=90)
    finally:
        server.close()
    assert done.returncode == 0, done.stdout + done.stderr
    first, large, unsized, padded, refused, bad_gateway = done["results"]
    assert first["jobDocument"] == small
    assert large["jobDocument"] == {"kind": "JobDocument", "operation": "config",
                                    "size": len(json.dumps(LARGE_DOC))}
    assert unsized["jobDocument"] == small and unsized["jobId"] == "job-3"
    assert padded["jobId"] == "job-4" and done["dropped"] == 1, done.stdout
    assert refused == {"code": "InvalidStateTransition", "message": "too late", "state": state}
    assert bad_gateway == {"code": "InternalError", "message": "HTTP 502", "state": None}
    # What went out: the spec's paths, the host dialled, a body only where the call has one.
    lines = [r.split(b"\r\n") for r in server.requests]
    assert [line[0] for line in lines] == [
        b"PUT /things/%s/jobs/$next HTTP/1.1" % thing_name.encode(),
        b"GET /things/%s/jobs/job-2 HTTP/1.1" % thing_name.encode(),
        *[b"PUT /things/%s/jobs/$next HTTP/1.1" % thing_name.encode()] * 3,
        b"POST /things/%s/jobs/job-5 HTTP/1.1" % thing_name.encode(),
        b"GET /things/%s/jobs HTTP/1.1" % thing_name.encode(),
    ]
    assert all(b"Host: localhost:%d" % server.port in line for line in lines)
    assert b"Content-Length: 2" in lines[0] and not any(h.startswith(b"Content-Length") for h in lines[-1])


# ---- the runner over HTTPS: it polls ---------------------------------------------------------------------------


def runner(runtime: str, name: str, port: int, thing: str, ca: CertificateFolder, state: Path, *args: str,
           code: int = 0) -> Run:
    done = run(runtime, RUNNER, name, *client_args(port, thing, ca)[:3], str(state), *client_args(port, thing, ca)[3:],
               *args, heapsize=RUNNER_HEAP, timeout=90)
    assert done.returncode == code, done.stdout + done.stderr
    return done


def started_runner(runtime: str, name: str, port: int, thing: str, ca: CertificateFolder, state: Path,
                   *args: str) -> subprocess.Popen[str]:
    return start(runtime, RUNNER, name, *client_args(port, thing, ca)[:3], str(state),
                 *client_args(port, thing, ca)[3:], *args, heapsize=RUNNER_HEAP)


def wait_line(process: subprocess.Popen[str], wanted: str) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or lines[-1] != wanted:
        line = process.stdout.readline()
        assert line, "".join(lines) + process.communicate(timeout=WAIT)[1]
        lines.append(line.strip())
    return lines


def test_the_runner_polls_a_job_to_succeeded(runtime, jobs_tls, tls_ca, thing_name, tmp_path):
    device = started_runner(runtime, "fallback", https_port(jobs_tls), thing_name, tls_ca, tmp_path, "300")
    try:
        wait_line(device, "READY")  # its first look found nothing
        jobs_tls.create_job("job-polled", [thing_arn(thing_name)], {"operation": "greet"})
        out, err = device.communicate(timeout=WAIT)
    finally:
        device.kill()
    done = parse(device.returncode, out, err)
    assert done.returncode == 0, out + err
    assert done["finished"] == 1 and done["states"] == ["idle", "running", "succeeded"]
    assert statuses(jobs_tls, thing_name, "job-polled") == ["QUEUED", "IN_PROGRESS", "IN_PROGRESS", "IN_PROGRESS",
                                                            "IN_PROGRESS", "SUCCEEDED"]


def test_the_runner_sees_a_cancel_at_the_next_progress(runtime, jobs_tls, tls_ca, thing_name, tmp_path):
    jobs_tls.create_job("job-long", [thing_arn(thing_name)], {"operation": "long"})
    jobs_tls.create_job("job-next", [thing_arn(thing_name)], {"operation": "greet"})
    device = started_runner(runtime, "cancel", https_port(jobs_tls), thing_name, tls_ca, tmp_path)
    try:
        wait_line(device, "RUNNING")
        jobs_tls.cancel_job("job-long", force=True)
        (tmp_path / "go").touch()
        out, err = device.communicate(timeout=WAIT)
    finally:
        device.kill()
    done = parse(device.returncode, out, err)
    assert done.returncode == 0, out + err
    assert len(done["canceled"]) == 1 and "CANCELED" in done["canceled"][0]
    assert done["states"] == ["idle", "running", "canceled", "running", "succeeded"]
    assert statuses(jobs_tls, thing_name, "job-long")[-1] == "CANCELED"
    assert statuses(jobs_tls, thing_name, "job-next")[-1] == "SUCCEEDED"


def test_the_runner_resumes_after_a_reset(runtime, jobs_tls, tls_ca, thing_name, tmp_path):
    jobs_tls.create_job("job-reboot", [thing_arn(thing_name)], {"operation": "reboot"})
    port = https_port(jobs_tls)
    first = runner(runtime, "reboot", port, thing_name, tls_ca, tmp_path, code=RESET_EXIT_CODE)
    assert "finished" not in first.results
    assert json.loads((tmp_path / "state.json").read_text())["step"] == "rebooting"
    second = runner(runtime, "reboot", port, thing_name, tls_ca, tmp_path)
    assert second["finished"] == 1 and second["states"] == ["idle", "running", "succeeded"]
    history = jobs_tls.history(thing_name, "job-reboot")
    assert [h["status"] for h in history].count("SUCCEEDED") == 1
    assert [h["statusDetails"] for h in history][-2:] == [{"state": "resumed", "checkpoint": "rebooting"},
                                                          {"rebooted": "true"}]


def test_the_runner_backs_off_while_the_service_is_unreachable(runtime, jobs_tls, tls_ca, thing_name, tmp_path,
                                                                proxy):
    proxy.refuse(True)
    # Polling every 20 ms, calls of 1 s: without the backoff that is ~150 connection attempts in 3 s.
    device = started_runner(runtime, "fallback", proxy.port, thing_name, tls_ca, tmp_path, "timeout_ms=1000",
                            "backoff_floor_ms=200", "backoff_ceiling_ms=400", "20")
    try:
        wait_line(device, "READY")
        before = proxy.accepted
        time.sleep(3.0)  # the outage: what is measured is how often the device tries during it
        attempts = proxy.accepted - before
        proxy.refuse(False)
        jobs_tls.create_job("job-after", [thing_arn(thing_name)], {"operation": "greet"})
        out, err = device.communicate(timeout=WAIT)
    finally:
        device.kill()
    done = parse(device.returncode, out, err)
    assert done.returncode == 0, out + err
    # Full jitter under a 400 ms cap: ~15 attempts in 3 s; 30 would take a run of short draws (p < 1e-5).
    assert 2 <= attempts <= 30, attempts
    assert done["finished"] == 1 and statuses(jobs_tls, thing_name, "job-after")[-1] == "SUCCEEDED"
