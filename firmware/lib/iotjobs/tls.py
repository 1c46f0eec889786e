"""Mutual TLS as AWS IoT Core requires, from DER files: an SSLContext, or a umqtt.simple MQTTClient; server verified."""

import sys

import tls


def read_der(path, kind):
    """The bytes of a DER file; kind ("cert", "key" or "ca") is what the errors call it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OSError(e.args[0], "cannot read the %s file %s" % (kind, path)) from None
    if data[:10] == b"-----BEGIN":
        # Told here: MicroPython's TLS would only say "invalid cert" or "invalid key".
        raise ValueError("the %s file %s is PEM; MicroPython's TLS takes DER: openssl %s -in %s -outform der -out %s"
                         % (kind, path, "pkey" if kind == "key" else "x509", path, path.rsplit(".", 1)[0] + ".der"))
    return data


def context(cert, key, ca):
    """A client SSLContext that presents cert/key (DER bytes) and requires a server certificate signed by ca."""
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    # Never the default: on the unix port a new client context does not verify the server at all.
    ctx.verify_mode = tls.CERT_REQUIRED  # type: ignore[attr-defined]  # missing from the ESP32 stubs
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    return ctx


def make_client(client_id, host, cert, key, ca, port=8883, keepalive=60, client_class=None):
    """An MQTTClient for mutual TLS to host; cert, key and ca are paths of DER files (PEM is not accepted).

    host must be the name in the server's certificate: it is the server_hostname verified and sent as SNI.
    client_class may be umqtt.robust's MQTTClient, or any class with umqtt.simple's constructor (the default).
    """
    if client_class is None:
        # Imported here: a device on HTTPS (iotjobs.https) uses context() only and never loads umqtt.
        from umqtt.simple import MQTTClient as client_class
    cert, key, ca = read_der(cert, "cert"), read_der(key, "key"), read_der(ca, "ca")
    params = {"cert": cert, "key": key, "cadata": ca, "cert_reqs": tls.CERT_REQUIRED, "server_hostname": host}
    try:
        # umqtt.simple 1.3.4, and 1.5+ which still takes ssl=True with ssl_params.
        client = client_class(client_id, host, port, keepalive=keepalive, ssl=True, ssl_params=params)
    except TypeError:
        # umqtt.simple 1.4 has no ssl_params: it takes an SSLContext and wraps with server_hostname=host itself.
        return client_class(client_id, host, port, keepalive=keepalive, ssl=context(cert, key, ca))
    # umqtt.simple 1.3.4 does `import ussl` in connect(); the unix port and 1.23+ firmware have only `ssl`.
    try:
        import ussl  # noqa: F401
    except ImportError:
        import ssl

        sys.modules["ussl"] = ssl
    return client
