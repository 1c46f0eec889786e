"""Mutual TLS scenarios against a real mosquitto; run on MicroPython or CPython, one result a line.

Usage: tls_scenarios.py NAME HOST PORT CA CERT KEY (DER files). Prints `RESULT <key> <json>`: `echo` (a message that
went to the broker and back) when the connection works, else `error` {"type", "message"}.
"""

import json
import sys

import umqtt.simple

from iotjobs.tls import make_client


def emit(key, value):
    print("RESULT", key, json.dumps(value))


class NewerMQTTClient(umqtt.simple.MQTTClient):
    """Test double of umqtt.simple 1.4's constructor (ssl=SSLContext, no ssl_params) over 1.3.4's protocol code.

    Its connect wraps the socket as 1.4 does, `ssl.wrap_socket(sock, server_hostname=server)`, so the TLS is real.
    """

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None):
        super().__init__(client_id, server, port or (8883 if ssl else 1883), user, password, keepalive, bool(ssl))
        self.context = ssl

    def connect(self, clean_session=True, timeout=None):
        context, server = self.context, self.server

        class Wrapper:
            # What 1.3.4's connect() finds as `ussl` for this one call.
            @staticmethod
            def wrap_socket(sock, **params):
                return context.wrap_socket(sock, server_hostname=server)

        saved = sys.modules.get("ussl")
        sys.modules["ussl"] = Wrapper  # type: ignore[assignment]  # import finds any object there
        try:
            return super().connect(clean_session)
        finally:
            if saved is None:
                del sys.modules["ussl"]
            else:
                sys.modules["ussl"] = saved


def echo(client):
    got = []
    client.set_callback(lambda topic, msg: got.append(msg.decode()))
    client.connect()
    client.subscribe(b"tls/echo", 1)
    client.publish(b"tls/echo", b"over mutual TLS", False, 1)
    while not got:
        client.wait_msg()
    client.disconnect()
    return got[0]


def scenario(name, host, port, ca, cert, key):
    if name == "simple":
        client = make_client("tls-simple", host, cert, key, ca, port)
        emit("setup", {"ssl": client.ssl is True, "cert_reqs": client.ssl_params["cert_reqs"],
                       "server_hostname": client.ssl_params["server_hostname"]})
        return client
    if name == "newer":
        client = make_client("tls-newer", host, cert, key, ca, port, client_class=NewerMQTTClient)
        emit("setup", {"context": client.context is not None and client.context is not True})
        return client
    if name == "no_client_cert":
        import tls

        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = tls.CERT_REQUIRED  # type: ignore[attr-defined]  # missing from the ESP32 stubs
        with open(ca, "rb") as f:
            ctx.load_verify_locations(f.read())
        return NewerMQTTClient("tls-anonymous", host, port, ssl=ctx)
    if name == "plain":
        return umqtt.simple.MQTTClient("tls-plain", host, port)
    raise ValueError(name)


def main():
    name, host, port, ca, cert, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
    try:
        emit("echo", echo(scenario(name, host, port, ca, cert, key)))
    except Exception as e:
        emit("error", {"type": type(e).__name__, "message": str(e)})


main()
