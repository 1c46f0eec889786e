"""MicroPython's tls module (1.23+) for CPython: the SSLContext that ussl implements."""

from typing import Any

from ussl import (
    CERT_NONE,
    CERT_OPTIONAL,
    CERT_REQUIRED,
    MBEDTLS_VERSION,
    PROTOCOL_TLS_CLIENT,
    PROTOCOL_TLS_SERVER,
)
from ussl import SSLContext as _SSLContext

__all__ = [
    "CERT_NONE",
    "CERT_OPTIONAL",
    "CERT_REQUIRED",
    "MBEDTLS_VERSION",
    "PROTOCOL_TLS_CLIENT",
    "PROTOCOL_TLS_SERVER",
    "SSLContext",
]


class SSLContext(_SSLContext):
    """tls.SSLContext: as ussl's, but load_verify_locations takes the DER bytes positionally."""

    def load_verify_locations(self, cadata: Any = None, _unused: Any = None) -> None:  # type: ignore[override]
        super().load_verify_locations(cadata=cadata)
