"""MicroPython's ssl for CPython: TLS over usocket, keys and certificates given as DER."""

import base64
import errno
import os
import select
import ssl as _ssl
import tempfile
from typing import Any

import usocket

CERT_NONE = 0
CERT_OPTIONAL = 1
CERT_REQUIRED = 2
PROTOCOL_TLS_CLIENT = 0
PROTOCOL_TLS_SERVER = 1
MBEDTLS_VERSION = "shim over " + _ssl.OPENSSL_VERSION

# The Mbed TLS errors MicroPython reports as OSError(code, name).
_MBEDTLS_FATAL_ALERT = -30592
_MBEDTLS_CA_CHAIN_REQUIRED = -30336
_MBEDTLS_NAMES = {
    _MBEDTLS_FATAL_ALERT: "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE",
    _MBEDTLS_CA_CHAIN_REQUIRED: "MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED",
}

# OpenSSL verify codes mapped to Mbed TLS's verify texts, which MicroPython raises as ValueError.
_NOT_TRUSTED = "\nThe certificate is not correctly signed by the trusted CA\n"
_VERIFY_TEXTS = {
    9: "\nThe certificate validity starts in the future\n",
    10: "\nThe certificate validity has expired\n",
    62: "\nThe certificate Common Name (CN) does not match with the expected CN\n",
}


def _der_length(data: bytes, what: str) -> int:
    """Length of the DER element at the start of data (header included); ValueError if it is not one."""
    try:
        if data[0] != 0x30:
            raise ValueError
        first = data[1]
        if first < 0x80:
            return 2 + first
        count = first & 0x7F
        if not 1 <= count <= 4:
            raise ValueError
        return 2 + count + int.from_bytes(data[2 : 2 + count], "big")
    except (IndexError, ValueError):
        raise ValueError("invalid " + what) from None


def _content(data: bytes, what: str) -> bytes:
    """The first DER SEQUENCE in data: Mbed TLS, too, reads only the first certificate of a bundle."""
    if isinstance(data, str):
        raise ValueError("invalid " + what)
    data = bytes(data)
    end = _der_length(data, what)
    if end > len(data):
        raise ValueError("invalid " + what)
    return data[:end]


def _read(arg: Any, what: str) -> bytes:
    if arg is None:
        raise TypeError("%s must be bytes or a path, not None" % what)
    if isinstance(arg, str):
        # A str is a path to a DER file, as in MicroPython's ssl.SSLContext.load_cert_chain.
        with open(arg, "rb") as f:
            return f.read()
    return bytes(arg)


def _pem(label: str, der: bytes) -> str:
    b64 = base64.b64encode(der).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, "\n".join(lines), label)


def _key_label(der: bytes) -> str:
    """The PEM label of a DER private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), told by its second field."""
    # SEQUENCE { INTEGER version, <second> ... }: the second field's tag tells the format.
    head = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
    if der[head : head + 2] != b"\x02\x01":  # the version, a one-byte INTEGER
        raise ValueError("invalid key")
    tag = der[head + 3 : head + 4]
    labels = {b"\x30": "PRIVATE KEY", b"\x02": "RSA PRIVATE KEY", b"\x04": "EC PRIVATE KEY"}
    if tag not in labels:
        raise ValueError("invalid key")
    return labels[tag]


def _load_chain(ctx: _ssl.SSLContext, chain: tuple[str, str]) -> None:
    # CPython's ssl loads a certificate and key only from files.
    paths = []
    try:
        for pem in chain:
            fd, path = tempfile.mkstemp(suffix=".pem")
            paths.append(path)
            with os.fdopen(fd, "w") as f:
                f.write(pem)
        ctx.load_cert_chain(paths[0], paths[1])
    finally:
        for path in paths:
            os.unlink(path)


class SSLContext:
    """SSLContext(protocol): MicroPython's minimal context; verify_mode defaults to CERT_NONE."""

    def __init__(self, protocol: int) -> None:
        if protocol not in (PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER):
            raise ValueError("invalid protocol")
        self.verify_mode = CERT_NONE
        self._chain: tuple[str, str] | None = None
        self._cadata: bytes | None = None

    def load_cert_chain(self, certfile: Any, keyfile: Any) -> None:
        # Key first: with both wrong, MicroPython complains about the key.
        key_der = _content(_read(keyfile, "key"), "key")
        key_pem = _pem(_key_label(key_der), key_der)
        cert_der = _content(_read(certfile, "cert"), "cert")
        try:
            _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=cert_der)
        except _ssl.SSLError:
            raise ValueError("invalid cert") from None
        chain = (_ssl.DER_cert_to_PEM_cert(cert_der), key_pem)
        try:
            _load_chain(_ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT), chain)
        except _ssl.SSLError as e:
            # Mbed TLS notices a key of another certificate only in the handshake; OpenSSL does here.
            mismatch = e.reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED")
            raise ValueError("key does not match cert" if mismatch else "invalid key") from None
        self._chain = chain

    def load_verify_locations(self, cafile: Any = None, cadata: Any = None) -> None:
        if cafile is not None:
            if not isinstance(cafile, str):
                # MicroPython's ssl.py opens cafile whatever it is: DER bytes there fail as a path.
                raise usocket._error(errno.ENOENT)
            cadata = _read(cafile, "cafile")
        der = _content(cadata, "cert")
        try:
            _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=der)
        except _ssl.SSLError:
            raise ValueError("invalid cert") from None
        self._cadata = der

    def wrap_socket(
        self,
        sock: Any,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        server_hostname: str | None = None,
    ) -> "SSLSocket":
        if not isinstance(sock, usocket.socket):
            raise OSError("stream operation not supported")
        if not server_side and self.verify_mode == CERT_REQUIRED and server_hostname is None:
            raise ValueError("CERT_REQUIRED requires server_hostname")
        return SSLSocket(self, sock, server_side, server_hostname, do_handshake_on_connect)

    def _cpython_context(self, server_side: bool) -> _ssl.SSLContext:
        ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_SERVER if server_side else _ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        if self.verify_mode == CERT_REQUIRED:
            if self._cadata is None:
                raise OSError(_MBEDTLS_CA_CHAIN_REQUIRED, _MBEDTLS_NAMES[_MBEDTLS_CA_CHAIN_REQUIRED])
            ctx.load_verify_locations(cadata=self._cadata)
            ctx.verify_mode = _ssl.CERT_REQUIRED
            ctx.check_hostname = not server_side
        else:
            # Mbed TLS's CERT_OPTIONAL verifies and carries on whatever the outcome; CPython's would
            # abort the handshake, so it is no verification at all here.
            ctx.verify_mode = _ssl.CERT_NONE
        if self._chain is not None:
            _load_chain(ctx, self._chain)
        return ctx


class SSLSocket(usocket._Stream):
    """A TLS stream with the socket's read/write/readinto/readline/setblocking/close semantics."""

    # Measured on the unix port: a TLS recv() times out with ETIMEDOUT, and any error is final.
    _timeout_errno_once = errno.ETIMEDOUT
    _sticky_errors = True

    def __init__(
        self, ctx: SSLContext, sock: usocket.socket, server_side: bool, hostname: str | None, handshake: bool
    ) -> None:
        super().__init__()
        sock._check()
        self._raw = sock
        pyctx = ctx._cpython_context(server_side)
        self._s = pyctx.wrap_socket(
            sock._s,
            server_side=server_side,
            server_hostname=None if server_side else hostname,
            do_handshake_on_connect=False,
        )
        if handshake:
            try:
                self._handshake()
            except BaseException:
                self._s.close()
                raise

    def __repr__(self) -> str:
        return "<SSLSocket>"

    def _io(self) -> Any:
        return self._s

    # The timeout lives on the plain socket, which is where MicroPython's TLS reads it from.
    def _get_timeout(self) -> float | None:
        return self._raw._timeout

    def _set_timeout(self, timeout: float | None) -> None:
        self._raw._timeout = timeout

    def _exc(self, code: int) -> OSError:
        if code < 0:
            return OSError(code, _MBEDTLS_NAMES.get(code, "MBEDTLS_ERR"))
        return usocket._error(code)

    def _tls_error(self, e: Exception) -> Exception:
        if isinstance(e, _ssl.SSLCertVerificationError):
            self._dead = _MBEDTLS_FATAL_ALERT
            return ValueError(_VERIFY_TEXTS.get(e.verify_code, _NOT_TRUSTED))
        if isinstance(e, _ssl.SSLError):
            return self._fail(_MBEDTLS_FATAL_ALERT)
        if isinstance(e, OSError) and e.errno:
            return self._fail(e.errno)
        return e

    def _handshake(self) -> None:
        # Mbed TLS's handshake loops even on a non-blocking socket; only a real timeout ends it early.
        timeout = self._get_timeout()
        deadline = None if not timeout else self._deadline()
        while True:
            self._check()
            try:
                self._s.do_handshake()
                return
            except _ssl.SSLWantReadError:
                self._want = select.POLLIN
            except _ssl.SSLWantWriteError:
                self._want = select.POLLOUT
            except OSError as e:
                raise self._tls_error(e) from None
            if not self._wait(self._want, deadline):
                raise self._fail(errno.ETIMEDOUT)

    def _recv_raw(self, n: int, flags: int = 0) -> bytes | None:
        try:
            return bytes(self._s.recv(n))
        except _ssl.SSLWantReadError:
            self._want = select.POLLIN
        except _ssl.SSLWantWriteError:
            self._want = select.POLLOUT
        except _ssl.SSLZeroReturnError:
            return b""
        except OSError as e:
            raise self._tls_error(e) from None
        return None

    def _send_raw(self, data: memoryview) -> int | None:
        try:
            return int(self._s.send(data))
        except _ssl.SSLWantReadError:
            self._want = select.POLLIN
        except _ssl.SSLWantWriteError:
            self._want = select.POLLOUT
        except OSError as e:
            raise self._tls_error(e) from None
        return None

    def _pending(self) -> int:
        # Decrypted bytes OpenSSL holds are invisible to poll() on the descriptor.
        return int(self._s.pending())

    def recv_into(self, buf: Any, nbytes: int = 0) -> int:
        view = memoryview(buf).cast("B")
        data = self.recv(nbytes or len(view))
        view[: len(data)] = data
        return len(data)

    def cipher(self) -> Any:
        return self._s.cipher()

    def close(self) -> None:
        super().close()
        self._raw._dead = errno.EBADF


def wrap_socket(
    sock: Any,
    server_side: bool = False,
    key: Any = None,
    cert: Any = None,
    cert_reqs: int = CERT_NONE,
    cadata: Any = None,
    server_hostname: str | None = None,
    do_handshake: bool = True,
) -> SSLSocket:
    """MicroPython's ssl.wrap_socket: the same steps as its micropython-lib ssl.py."""
    ctx = SSLContext(PROTOCOL_TLS_SERVER if server_side else PROTOCOL_TLS_CLIENT)
    if cert or key:
        ctx.load_cert_chain(cert, key)
    if cadata:
        ctx.load_verify_locations(cadata=cadata)
    ctx.verify_mode = cert_reqs
    return ctx.wrap_socket(
        sock, server_side=server_side, do_handshake_on_connect=do_handshake, server_hostname=server_hostname
    )
