"""The device API over HTTPS: iot-jobs-data's four calls for devices that show a certificate of the service's CA.

The TLS handshake requires a client certificate signed by the CA of the folder (`certs init`); a device
without one, or with one of another CA, never gets an HTTP answer. Then the certificate must be the one
recorded for the thing in the request's path (`certs thing`, AWS's attach-thing-principal); any other is
refused with AWS IoT's answer to a caller its policy does not allow: 403 and `ForbiddenException`.
No SigV4 here: on this listener the four paths always mean iot-jobs-data, whatever the headers say.
"""

from __future__ import annotations

import logging
import socket
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .authz import Principals
from .certs import CertificateFolder
from .documents import Documents
from .http_api import Call, HttpApi, Operation, make_handler
from .model import JobsModel

log = logging.getLogger(__name__)

# A device that opens a connection and then says nothing must not hold a thread for ever.
HANDSHAKE_SECONDS = 10.0
IDLE_SECONDS = 60.0
FORBIDDEN = ("ForbiddenException", 403)


def server_context(folder: CertificateFolder) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder.server_cert, folder.server_key)
    context.load_verify_locations(cafile=folder.ca_pem)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class TlsHttpServer(ThreadingHTTPServer):
    """A threading HTTP server whose handshakes happen in each connection's thread, not in the accept loop."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_SECONDS)
        try:
            connection = self.context.wrap_socket(request, server_side=True)
        except OSError as exc:  # ssl.SSLError included: no certificate, another CA, not TLS at all
            log.info("TLS handshake with %s refused: %s", client_address[0], exc)
            return
        try:
            connection.settimeout(IDLE_SECONDS)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().finish_request(connection, client_address)
        finally:
            connection.close()


class DeviceHttpsApi(HttpApi):
    """GetPendingJobExecutions, StartNextPendingJobExecution, DescribeJobExecution and UpdateJobExecution
    over HTTPS, each allowed only to the certificate recorded for the thing it names."""

    services = ("iot-jobs-data",)
    serves_files = False
    scheme = "https"

    def __init__(self, model: JobsModel, call: Call, documents: Documents, principals: Principals,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.principals = principals
        self.context = server_context(principals.folder)
        super().__init__(model, call, documents, host, port)

    def make_server(self, host: str, port: int) -> ThreadingHTTPServer:
        return TlsHttpServer((host, port), make_handler(self), self.context)

    def refuse(self, op: Operation, labels: dict[str, str], connection: Any) -> tuple[str, int, str] | None:
        der = connection.getpeercert(binary_form=True)
        owner = self.principals.thing_of(der) if der else None
        wanted = labels.get("thingName", "")
        if owner == wanted:
            return None
        if owner is None:
            message = "this certificate is attached to no thing"
        else:
            message = f"the certificate of thing {owner} is not allowed to act on thing {wanted}"
        log.info("%s refused: %s", op.name, message)
        return (*FORBIDDEN, message)
