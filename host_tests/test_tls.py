"""Mutual TLS with iotjobs.tls.make_client against mosquitto (`require_certificate true`), on every runtime.

Certificates come from the local service's `certs` (session fixtures `tls_ca`, `stranger_ca`): a device's certificate
from the CA, the CA's server certificate for localhost, another CA's, and one of the CA's for another name.
The device's own jobs over the TLS service, and who may reach what there, are in test_tls_service.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device import PORTABLE, RUNTIMES, Run, run
from localjobs import certs
from localjobs.broker import Mosquitto
from localjobs.certs import CertificateFolder, ThingCertificate

SCRIPT = PORTABLE / "tls_scenarios.py"
# Measured: Mbed TLS's handshake allocates from the MicroPython heap on the unix port (see README).
TLS_HEAP = "96k"


@pytest.fixture(scope="module")
def client_cert(tls_ca: CertificateFolder) -> ThingCertificate:
    return certs.issue_thing(tls_ca.root, "tls-device")


def broker(ca: CertificateFolder, cert: Path, key: Path) -> Mosquitto:
    """A broker that requires client certificates of `ca` and shows the server certificate cert/key."""
    return Mosquitto(tls={"cafile": ca.ca_pem, "certfile": cert, "keyfile": key, "require_certificate": True})


@pytest.fixture(scope="module")
def good_broker(tls_ca: CertificateFolder) -> Iterator[Mosquitto]:
    with broker(tls_ca, tls_ca.server_cert, tls_ca.server_key) as b:
        yield b


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def device(runtime: str, name: str, b: Mosquitto, ca: CertificateFolder, cert: ThingCertificate,
           host: str = "localhost") -> Run:
    done = run(runtime, SCRIPT, name, host, str(b.port), str(ca.ca_der), str(cert.cert_der), str(cert.key_der),
               heapsize=TLS_HEAP, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def refused(done: Run) -> dict[str, Any]:
    assert "echo" not in done.results, "the connection should have been refused"
    error: dict[str, Any] = done["error"]
    return error


@pytest.mark.parametrize("variant", ["simple", "newer"])
def test_mutual_tls_connection_works(runtime, good_broker, tls_ca, client_cert, variant):
    done = device(runtime, variant, good_broker, tls_ca, client_cert)
    assert done["echo"] == "over mutual TLS"
    if variant == "simple":
        # umqtt.simple 1.3.4: ssl=True with ssl_params that require the server's certificate, for this host.
        assert done["setup"] == {"ssl": True, "cert_reqs": 2, "server_hostname": "localhost"}
    else:
        # The newer constructor refuses ssl_params: make_client hands it an SSLContext instead.
        assert done["setup"] == {"context": True}


@pytest.mark.parametrize("variant", ["simple", "newer"])
def test_server_certificate_from_another_ca_is_refused(runtime, tls_ca, stranger_ca, client_cert, variant):
    with broker(tls_ca, stranger_ca.server_cert, stranger_ca.server_key) as other:
        error = refused(device(runtime, variant, other, tls_ca, client_cert))
    assert error["type"] == "ValueError" and "not correctly signed by the trusted CA" in error["message"]


@pytest.mark.parametrize("variant", ["simple", "newer"])
def test_wrong_hostname_is_refused(runtime, tls_ca, client_cert, variant, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    certs.server_certificate(tls_ca, ("iot.example.com",), cert, key)
    with broker(tls_ca, cert, key) as misnamed:
        error = refused(device(runtime, variant, misnamed, tls_ca, client_cert))
    assert error["type"] == "ValueError" and "Common Name (CN) does not match" in error["message"]


def test_no_client_certificate_is_refused(runtime, good_broker, tls_ca, client_cert):
    # mosquitto ends the handshake: Mbed TLS reports the alert, or the write that meets the closed socket (EPIPE).
    error = refused(device(runtime, "no_client_cert", good_broker, tls_ca, client_cert))
    assert error["type"] == "OSError", error
    assert "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE" in error["message"] or error["message"] in ("32", "[Errno 32] EPIPE")


def test_plain_tcp_to_the_tls_port_fails_at_once(runtime, good_broker, tls_ca, client_cert):
    # The broker drops an MQTT CONNECT that is not a TLS handshake: an error at connect(), not a hang.
    error = refused(device(runtime, "plain", good_broker, tls_ca, client_cert))
    assert error == {"type": "OSError", "message": "[Errno 104] ECONNRESET"}
