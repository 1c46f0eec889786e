"""Errors a user meets before any job runs name what they are about (the broker, the file), on every runtime."""

import errno
import os
import random

import usocket as socket
from umqtt.simple import MQTTClient

from harness import main, raises
from iotjobs import JobsClient
from iotjobs.tls import make_client, read_der

# The device scripts run in the repository's root (host_tests/device.py); build/ is ignored by git.
FILES = "build/error_cases"
PEM_CERT = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def closed_port():
    """A loopback port that nothing listens on: bound, then closed again."""
    sock = socket.socket()
    for _ in range(20):
        port = random.randrange(20000, 60000)
        try:
            sock.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            sock.close()
            return port
        except OSError:
            continue
    raise AssertionError("no free port")


def files(**contents):
    try:
        os.mkdir("build")
    except OSError:
        pass
    try:
        os.mkdir(FILES)
    except OSError:
        pass
    for name in contents:
        with open(FILES + "/" + name, "wb") as f:
            f.write(contents[name])
    return FILES + "/"


def case_a_refused_connect_names_the_broker_and_keeps_its_errno():
    port = closed_port()
    jc = JobsClient(MQTTClient("err-thing", "127.0.0.1", port), "err-thing", response_ms=2000)
    reported = []
    jc.on_error(lambda reason, detail: reported.append("%s: %s" % (reason, detail)))
    e = raises(OSError, jc.connect)
    assert "connect to 127.0.0.1:%d" % port in str(e), str(e)
    assert e.args[0] == errno.ECONNREFUSED, e.args
    # What on_error was told (the default prints it) says the same.
    assert reported and "connect to 127.0.0.1:%d" % port in reported[-1], reported


class RefusingClient:
    """An MQTT client whose connect fails as TLS does for a server certificate it does not trust."""

    server = "broker.example"
    port = 8883
    keepalive = 60

    def set_callback(self, callback):
        pass

    def connect(self, clean_session=True, timeout=None):
        raise ValueError("the certificate is not correctly signed by the trusted CA")


def case_any_connect_failure_names_the_broker_and_its_type():
    e = raises(OSError, JobsClient(RefusingClient(), "err-thing").connect)
    assert str(e) == ("connect failed: ValueError: connect to broker.example:8883: the certificate is not "
                      "correctly signed by the trusted CA"), str(e)


def case_a_missing_certificate_key_or_ca_names_the_file():
    d = files(**{"cert.der": b"0\x82", "key.der": b"0\x82", "ca.der": b"0\x82"})
    for kind in ("cert", "key", "ca"):
        paths = {"cert": d + "cert.der", "key": d + "key.der", "ca": d + "ca.der"}
        paths[kind] = d + "missing-%s.der" % kind
        e = raises(OSError, make_client, "t", "localhost", paths["cert"], paths["key"], paths["ca"])
        assert "the %s file %smissing-%s.der" % (kind, d, kind) in str(e), str(e)
        assert e.args[0] == errno.ENOENT, e.args


def case_a_pem_file_where_der_is_needed_says_how_to_convert():
    d = files(**{"cert.pem": PEM_CERT, "key.pem": b"-----BEGIN PRIVATE KEY-----\nMIGH\n", "ca.der": b"0\x82"})
    e = raises(ValueError, read_der, d + "cert.pem", "cert")
    assert str(e) == ("the cert file %scert.pem is PEM; MicroPython's TLS takes DER: "
                      "openssl x509 -in %scert.pem -outform der -out %scert.der" % (d, d, d)), str(e)
    e = raises(ValueError, make_client, "t", "localhost", d + "cert.pem", d + "key.pem", d + "ca.der")
    assert "cert.pem is PEM" in str(e), str(e)
    e = raises(ValueError, read_der, d + "key.pem", "key")
    assert "openssl pkey -in %skey.pem -outform der" % d in str(e), str(e)


def case_a_der_file_is_read_as_it_is():
    d = files(**{"ca.der": b"0\x82\x01\x02DER"})
    assert read_der(d + "ca.der", "ca") == b"0\x82\x01\x02DER"


main(globals())
