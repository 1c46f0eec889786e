"""MicroPython's socket for CPython: stream methods with MicroPython's semantics, over the shim's link."""

import errno
import math
import select
import socket as _socket
import time
from typing import Any

import network

AF_INET = _socket.AF_INET
AF_INET6 = _socket.AF_INET6
AF_UNIX = _socket.AF_UNIX
SOCK_STREAM = _socket.SOCK_STREAM
SOCK_DGRAM = _socket.SOCK_DGRAM
SOCK_RAW = _socket.SOCK_RAW
IPPROTO_IP = _socket.IPPROTO_IP
IPPROTO_TCP = _socket.IPPROTO_TCP
IPPROTO_UDP = _socket.IPPROTO_UDP
SOL_SOCKET = _socket.SOL_SOCKET
SO_REUSEADDR = _socket.SO_REUSEADDR
SO_KEEPALIVE = _socket.SO_KEEPALIVE
SO_BROADCAST = _socket.SO_BROADCAST
SO_ERROR = _socket.SO_ERROR
SO_LINGER = _socket.SO_LINGER
TCP_NODELAY = _socket.TCP_NODELAY
MSG_PEEK = _socket.MSG_PEEK
MSG_DONTWAIT = _socket.MSG_DONTWAIT
MSG_DONTROUTE = _socket.MSG_DONTROUTE
IP_ADD_MEMBERSHIP = _socket.IP_ADD_MEMBERSHIP
IP_DROP_MEMBERSHIP = _socket.IP_DROP_MEMBERSHIP

# A blocked call wakes this often to notice that a test took the link down.
_LINK_POLL_S = 0.05

# Sockets that died with the link are never closed: as after a real WiFi drop, the peer has to find
# out through keepalive or a client-id takeover, not through a FIN it could never have received.
_orphans: list[Any] = []


def _error(code: int) -> OSError:
    """OSError(code) as MicroPython makes it: args (code,), str "[Errno 110] ETIMEDOUT", a plain OSError."""
    # CPython sets errno only for two arguments, and then picks a subclass (TimeoutError, ...).
    e = OSError(code)
    e.errno = code
    e.strerror = errno.errorcode.get(code, str(code))
    return e


def _buffer(buf: Any) -> memoryview:
    # MicroPython's streams take a str as its UTF-8 bytes; umqtt.simple writes str topics and client ids.
    if isinstance(buf, str):
        buf = buf.encode()
    return memoryview(buf).cast("B")


class _Stream:
    """What socket and ussl's SSLSocket share: MicroPython's blocking, non-blocking and timeout rules."""

    # What recv()/send() raise when a timeout expires; read()/write() always raise ETIMEDOUT.
    _timeout_errno_once = errno.EAGAIN
    # After a failed call the stream keeps failing with the same error (Mbed TLS sockets do).
    _sticky_errors = False

    def __init__(self) -> None:
        # The errno every later call fails with: EBADF once closed, ECONNRESET after a link drop.
        self._dead = 0
        self._want = select.POLLIN  # what the last call that would have blocked was waiting for

    # Hooks a concrete stream provides.
    def _io(self) -> Any:
        raise NotImplementedError

    def _get_timeout(self) -> float | None:
        raise NotImplementedError

    def _set_timeout(self, timeout: float | None) -> None:
        raise NotImplementedError

    def _recv_raw(self, n: int, flags: int = 0) -> bytes | None:
        raise NotImplementedError

    def _send_raw(self, data: memoryview) -> int | None:
        raise NotImplementedError

    def _pending(self) -> int:
        return 0

    def _exc(self, code: int) -> OSError:
        return _error(code)

    def _fail(self, code: int) -> OSError:
        if self._sticky_errors:
            self._dead = code
        return self._exc(code)

    def _check(self) -> None:
        if self._dead:
            raise self._exc(self._dead)
        if not network.link_up():
            self._dead = errno.ECONNRESET
            raise self._exc(self._dead)

    def _poll_error(self) -> bool:
        """True if the stream is dead, so a poller reports it at once, as for a reset connection."""
        if not self._dead and not network.link_up():
            self._dead = errno.ECONNRESET
        return bool(self._dead)

    def _wait(self, events: int, deadline: float | None) -> bool:
        """Wait until ready for events; False once the monotonic deadline passes."""
        poller = select.poll()
        poller.register(self._io().fileno(), events)
        while True:
            self._check()
            if events & select.POLLIN and self._pending():
                return True
            step = _LINK_POLL_S
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                step = min(step, left)
            if poller.poll(math.ceil(step * 1000)):
                return True

    def _deadline(self) -> float | None:
        timeout = self._get_timeout()
        return None if timeout is None else time.monotonic() + timeout

    def _once(self, n: int, flags: int = 0, timeout_errno: int = errno.ETIMEDOUT) -> bytes | None:
        """One chunk when there is one (b"" at EOF); None if non-blocking and nothing is there."""
        # Like SO_RCVTIMEO, the timeout applies to each wait for data, not to a whole read(n).
        deadline = self._deadline()
        while True:
            self._check()
            data = self._recv_raw(n, flags)
            if data is not None:
                return data
            if self._get_timeout() == 0:
                return None
            if not self._wait(self._want, deadline):
                raise self._fail(timeout_errno)

    def read(self, n: int | None = -1) -> bytes | None:
        if n is None or n < 0:
            return self._read_all()
        buf = bytearray()
        while len(buf) < n:
            # A timeout here loses what was already read, as on MicroPython.
            chunk = self._once(n - len(buf))
            if chunk is None:
                return bytes(buf) if buf else None
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    def _read_all(self) -> bytes | None:
        buf = bytearray()
        while True:
            chunk = self._once(4096)
            if chunk is None:
                return bytes(buf) if buf else None
            if not chunk:
                return bytes(buf)
            buf += chunk

    def readinto(self, buf: Any, nbytes: int | None = None) -> int | None:
        view = memoryview(buf).cast("B")
        n = len(view) if nbytes is None else min(nbytes, len(view))
        data = self.read(n)
        if data is None:
            return None
        view[: len(data)] = data
        return len(data)

    def readline(self, limit: int = -1) -> bytes | None:
        line = bytearray()
        while limit < 0 or len(line) < limit:
            c = self._once(1)
            if c is None:
                return bytes(line) if line else None
            if not c:
                break
            line += c
            if c == b"\n":
                break
        return bytes(line)

    def write(self, buf: Any, *args: int) -> int | None:
        """write(buf), write(buf, max_len) or write(buf, off, max_len), as MicroPython's streams."""
        data = _buffer(buf)
        if len(args) == 1:
            data = data[: args[0]]
        elif len(args) == 2:
            data = data[args[0] :][: args[1]]
        elif args:
            raise TypeError("function takes at most 4 arguments")
        done = 0
        deadline = self._deadline()
        while done < len(data):
            self._check()
            n = self._send_raw(data[done:])
            if n is None:
                if self._get_timeout() == 0:
                    return done or None
                if not self._wait(self._want, deadline):
                    raise self._fail(errno.ETIMEDOUT)
                continue
            done += n
            deadline = self._deadline()
        return done

    def send(self, buf: Any) -> int:
        data = _buffer(buf)
        deadline = self._deadline()
        while True:
            self._check()
            n = self._send_raw(data)
            if n is not None:
                return n
            if self._get_timeout() == 0:
                raise _error(errno.EAGAIN)
            if not self._wait(self._want, deadline):
                raise self._fail(self._timeout_errno_once)

    def sendall(self, buf: Any) -> None:
        if self.write(buf) != len(_buffer(buf)):
            raise _error(errno.EAGAIN)

    def recv(self, n: int, flags: int = 0) -> bytes:
        data = self._once(n, flags, self._timeout_errno_once)
        if data is None:
            raise _error(errno.EAGAIN)
        return data

    def setblocking(self, flag: bool) -> None:
        self._set_timeout(None if flag else 0.0)

    def fileno(self) -> int:
        return int(self._io().fileno())

    def close(self) -> None:
        if self._dead == errno.EBADF:
            return
        if self._dead == errno.ECONNRESET or not network.link_up():
            _orphans.append(self._io())
        else:
            self._io().close()
        self._dead = errno.EBADF


class socket(_Stream):
    """socket(af=AF_INET, type=SOCK_STREAM, proto=0): a MicroPython socket over a CPython one."""

    def __init__(self, af: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0, _sock: Any = None) -> None:
        super().__init__()
        self._s = _sock if _sock is not None else _socket.socket(af, type, proto)
        # Blocking, timeouts and link checks are done here, so the kernel socket never blocks.
        self._s.setblocking(False)
        self._timeout: float | None = None

    def __repr__(self) -> str:
        return "<_socket %d>" % self._s.fileno()

    def _io(self) -> Any:
        return self._s

    def _get_timeout(self) -> float | None:
        return self._timeout

    def _set_timeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def _recv_raw(self, n: int, flags: int = 0) -> bytes | None:
        try:
            return bytes(self._s.recv(n, flags))
        except BlockingIOError:
            self._want = select.POLLIN
            return None
        except OSError as e:
            raise _error(e.errno or errno.EIO) from None

    def _send_raw(self, data: memoryview) -> int | None:
        try:
            return int(self._s.send(data))
        except BlockingIOError:
            self._want = select.POLLOUT
            return None
        except OSError as e:
            raise _error(e.errno or errno.EIO) from None

    def settimeout(self, timeout: float | None) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be None or >= 0")
        self._timeout = None if timeout is None else float(timeout)

    def setsockopt(self, level: int, opt: int, value: Any) -> None:
        self._s.setsockopt(level, opt, value)

    def connect(self, addr: Any) -> None:
        if self._dead:
            raise _error(self._dead)
        if not network.link_up():
            raise _error(errno.EHOSTUNREACH)
        err = self._s.connect_ex(addr)
        if err in (0, errno.EISCONN):
            return
        if err not in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
            raise _error(err)
        if self._timeout == 0:
            raise _error(errno.EINPROGRESS)
        if not self._wait(select.POLLOUT, self._deadline()):
            raise _error(errno.ETIMEDOUT)
        err = self._s.getsockopt(SOL_SOCKET, SO_ERROR)
        if err:
            raise _error(err)

    def bind(self, addr: Any) -> None:
        self._s.bind(addr)

    def listen(self, backlog: int = 2) -> None:
        self._s.listen(backlog)

    def accept(self) -> tuple["socket", Any]:
        deadline = self._deadline()
        while True:
            self._check()
            try:
                conn, addr = self._s.accept()
            except BlockingIOError:
                if self._timeout == 0:
                    raise _error(errno.EAGAIN) from None
                if not self._wait(select.POLLIN, deadline):
                    raise _error(errno.ETIMEDOUT) from None
                continue
            return socket(_sock=conn), addr

    def recvfrom(self, n: int) -> tuple[bytes, Any]:
        deadline = self._deadline()
        while True:
            self._check()
            try:
                data, addr = self._s.recvfrom(n)
                return bytes(data), addr
            except BlockingIOError:
                if self._timeout == 0 or not self._wait(select.POLLIN, deadline):
                    raise _error(errno.EAGAIN) from None

    def sendto(self, buf: Any, addr: Any) -> int:
        deadline = self._deadline()
        while True:
            self._check()
            try:
                return int(self._s.sendto(_buffer(buf), addr))
            except BlockingIOError:
                if self._timeout == 0 or not self._wait(select.POLLOUT, deadline):
                    raise _error(errno.EAGAIN) from None

    def makefile(self, mode: str = "rb", buffering: int = 0) -> "socket":
        # MicroPython's sockets are already streams: makefile() returns the socket itself.
        return self


def _is_ip_literal(host: str) -> bool:
    for family in (AF_INET, AF_INET6):
        try:
            _socket.inet_pton(family, host)
            return True
        except OSError:
            pass
    return False


def getaddrinfo(
    host: str, port: int, af: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> list[tuple[Any, ...]]:
    """[(family, type, proto, canonname, sockaddr)], sockaddr being what connect() takes."""
    if not network.link_up() and not _is_ip_literal(host):
        # No DNS without the link; the message has the unix port's form.
        raise OSError("[addrinfo error %d]" % _socket.EAI_AGAIN)
    try:
        infos = _socket.getaddrinfo(host, port, af, type, proto, flags)
    except _socket.gaierror as e:
        raise OSError("[addrinfo error %s]" % e.errno) from None
    # IPv4 first: socket() defaults to AF_INET, and the board is IPv4-only, so [0][-1] must be IPv4.
    infos.sort(key=lambda info: info[0] != AF_INET)
    return [tuple(info) for info in infos]
