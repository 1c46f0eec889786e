"""Mutual TLS with iotjobs.tls.make_client against mosquitto (`require_certificate true`), on both runtimes.

Certificates are made per session with the openssl CLI: a CA, a server certificate for localhost and a client
certificate from it; another CA with its own localhost server certificate; a server certificate for another name.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device import PORTABLE, RUNTIMES, Run, run
from localjobs.broker import Mosquitto
from localjobs.model import thing_arn
from localjobs.service import JobsService

SCRIPT = PORTABLE / "tls_scenarios.py"
# Measured: Mbed TLS's handshake allocates from the MicroPython heap on the unix port (see README).
TLS_HEAP = "96k"


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", d / f"{name}.key", "-out", d / f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_leaf(d: Path, name: str, ca: str, cn: str, usage: str) -> None:
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr", "-subj", f"/CN={cn}")
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName=DNS:{cn}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / f"{ca}.crt", "-CAkey", d / f"{ca}.key",
            "-CAcreateserial", "-out", d / f"{name}.crt", "-days", "2", "-extfile", ext)


def to_der(d: Path, name: str) -> None:
    # The device side takes DER only (the unix port rejects PEM), as the deploy tooling writes it.
    openssl("x509", "-in", d / f"{name}.crt", "-outform", "DER", "-out", d / f"{name}.crt.der")
    openssl("pkey", "-in", d / f"{name}.key", "-outform", "DER", "-out", d / f"{name}.key.der")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert shutil.which("openssl"), "the openssl CLI is missing: tools/setup.sh installs it"
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_leaf(d, "server", "ca", "localhost", "serverAuth")
    make_leaf(d, "client", "ca", "tls-device", "clientAuth")
    make_leaf(d, "other-server", "other-ca", "localhost", "serverAuth")
    make_leaf(d, "wrong-name", "ca", "iot.example.com", "serverAuth")
    for name in ("ca", "client"):
        to_der(d, name)
    return d


def broker(pki: Path, server: str) -> Mosquitto:
    return Mosquitto(tls={"cafile": pki / "ca.crt", "certfile": pki / f"{server}.crt",
                          "keyfile": pki / f"{server}.key", "require_certificate": True})


@pytest.fixture(scope="module")
def good_broker(pki: Path) -> Iterator[Mosquitto]:
    with broker(pki, "server") as b:
        yield b


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def device(runtime: str, name: str, b: Mosquitto, pki: Path, host: str = "localhost") -> Run:
    done = run(runtime, SCRIPT, name, host, str(b.port), str(pki), heapsize=TLS_HEAP, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def refused(done: Run) -> dict[str, Any]:
    assert "echo" not in done.results, "the connection should have been refused"
    error: dict[str, Any] = done["error"]
    return error


@pytest.mark.parametrize("variant", ["simple", "newer"])
def test_mutual_tls_connection_works(runtime, good_broker, pki, variant):
    done = device(runtime, variant, good_broker, pki)
    assert done["echo"] == "over mutual TLS"
    if variant == "simple":
        # umqtt.simple 1.3.4: ssl=True with ssl_params that require the server's certificate, for this host.
        assert done["setup"] == {"ssl": True, "cert_reqs": 2, "server_hostname": "localhost"}
    else:
        # The newer constructor refuses ssl_params: make_client hands it an SSLContext instead.
        assert done["setup"] == {"context": True}


@pytest.mark.parametrize("variant", ["simple", "newer"])
def test_server_certificate_from_another_ca_is_refused(runtime, pki, variant):
    with broker(pki, "other-server") as other:
        error = refused(device(runtime, variant, other, pki))
    assert error["type"] == "ValueError" and "not correctly signed by the trusted CA" in error["message"]


@pytest.mark.parametrize("variant", ["simple", "newer"])
def test_wrong_hostname_is_refused(runtime, pki, variant):
    with broker(pki, "wrong-name") as misnamed:
        error = refused(device(runtime, variant, misnamed, pki))
    assert error["type"] == "ValueError" and "Common Name (CN) does not match" in error["message"]


def test_no_client_certificate_is_refused(runtime, good_broker, pki):
    # mosquitto ends the handshake: Mbed TLS reports the alert, or the write that meets the closed socket (EPIPE).
    error = refused(device(runtime, "no_client_cert", good_broker, pki))
    assert error["type"] == "OSError", error
    assert "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE" in error["message"] or error["message"] in ("32", "[Errno 32] EPIPE")


def test_plain_tcp_to_the_tls_port_fails_at_once(runtime, good_broker, pki):
    # The broker drops an MQTT CONNECT that is not a TLS handshake: an error at connect(), not a hang.
    error = refused(device(runtime, "plain", good_broker, pki))
    assert error == {"type": "OSError", "message": "[Errno 104] ECONNRESET"}


def test_a_job_through_jobs_client_over_mutual_tls(runtime, pki, thing_name):
    # Devices on the TLS listener, the local service on a plain one of the same broker.
    with Mosquitto(tls={"cafile": pki / "ca.crt", "certfile": pki / "server.crt", "keyfile": pki / "server.key",
                        "require_certificate": True}, plain_port=0) as b:
        assert b.plain_port is not None
        with JobsService(b.host, b.plain_port) as service:
            service.create_thing(thing_name)
            service.create_job("job-tls", [thing_arn(thing_name)], {"operation": "x"})
            done = run(runtime, PORTABLE / "tls_job.py", "localhost", str(b.port), str(pki), thing_name,
                       heapsize=TLS_HEAP, timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr
            assert done["done"]["status"] == "SUCCEEDED"
            statuses = [(h["status"], h["statusDetails"]) for h in service.history(thing_name, "job-tls")]
            assert ("IN_PROGRESS", {"over": "mutual TLS"}) in statuses
