"""A TCP proxy between a device and its MQTT broker that injects network faults under test control."""

from __future__ import annotations

import fcntl
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, TypeAlias

Direction: TypeAlias = Literal["up", "down"]
Action: TypeAlias = "str | Callable[[FaultProxy], object]"

DIRECTIONS = ("up", "down")
ACTIONS = ("close", "reset", "stall")
CHUNK = 64 * 1024
# What one direction of one connection may hold (stalled or delayed) before the proxy stops reading:
# past it the sender meets TCP back-pressure instead of the proxy growing without bound.
HOLD_LIMIT = 256 * 1024
# Patterns are matched against the end of what was forwarded before plus the new chunk, so a pattern
# split across two chunks is found; at least this much is kept even before any pattern is registered.
TAIL_MIN = 1024
CONNECT_TIMEOUT = 5.0
ACT_TIMEOUT = 5.0
LINGER = 1.0
DRAIN_TIMEOUT = 0.5
SIOCOUTQNSD = 0x894B  # Linux: bytes in the send queue not yet sent

_local = threading.local()


def _nodelay(sock: socket.socket) -> None:
    # Without it MQTT round trips wait ~40 ms for delayed ACKs.
    with suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _unsent(sock: socket.socket) -> int:
    try:
        raw = fcntl.ioctl(sock.fileno(), SIOCOUTQNSD, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    count: int = struct.unpack("i", raw)[0]
    return count


def _drain(sock: socket.socket, timeout: float = DRAIN_TIMEOUT) -> None:
    # An RST discards what the kernel has not sent yet, but bytes counted as forwarded must arrive
    # (cut_after's "exactly n"). Nothing signals an empty send queue, hence the short polls; on
    # loopback the queue is almost always empty already and this returns at once.
    deadline = time.monotonic() + timeout
    while _unsent(sock) and time.monotonic() < deadline:
        time.sleep(0.001)


def _abort(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _contains(tail: bytes, data: bytes, pattern: bytes) -> bool:
    # Only the last len(pattern)-1 bytes of the tail can take part in a match that ends in `data`.
    keep = len(pattern) - 1
    return pattern in ((tail[-keep:] if keep else b"") + data)


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")


@dataclass
class _Item:
    kind: Literal["data", "eof", "error"]
    due: float
    data: bytes = b""
    sent: int = 0
    # Before-patterns ran already: a "stall" action must not fire again when the chunk is resumed.
    checked: bool = False


@dataclass
class _Rule:
    pattern: bytes
    direction: str
    action: Action
    before: bool
    once: bool

    @property
    def name(self) -> str:
        if isinstance(self.action, str):
            return self.action
        return str(getattr(self.action, "__name__", "callable"))


class _Pipe:
    """One direction of one connection: chunks read from `src`, waiting to be written to `dst`."""

    def __init__(self, direction: Direction, src: socket.socket, dst: socket.socket) -> None:
        self.direction: Direction = direction
        self.src = src
        self.dst = dst
        self.src_name = "client" if direction == "up" else "upstream"
        self.dst_name = "upstream" if direction == "up" else "client"
        self.items: deque[_Item] = deque()
        self.held = 0
        self.reading = True
        self.ended = False
        self.blocked = False
        self.tail = b""
        self.cut_left: int | None = None
        self.cut_total = 0


class _Link:
    """One client connection and its upstream, pumped by one thread that owns both sockets.

    Only this thread touches the sockets, so a control call never closes a descriptor another
    thread is blocked on; control calls set flags under the proxy lock and wake the thread.
    """

    def __init__(self, proxy: FaultProxy, client: socket.socket, number: int) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.open = True  # guarded by proxy._lock
        self.kill: str | None = None  # guarded by proxy._lock
        self.acted = threading.Event()
        self.pipes: tuple[_Pipe, ...] = ()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.thread = threading.Thread(target=self.run, name=f"faultproxy-{proxy.port}-link{number}", daemon=True)

    def run(self) -> None:
        _local.in_proxy = True
        try:
            try:
                upstream = socket.create_connection(self.proxy.upstream, timeout=CONNECT_TIMEOUT)
            except OSError:
                self.proxy._log("upstream-down")
                self.proxy._closing(self)
                _abort(self.client)
                return
            self.upstream = upstream
            _nodelay(upstream)
            upstream.setblocking(False)
            self.client.setblocking(False)
            self._end(self._pump(upstream), upstream)
        finally:
            self.acted.set()
            self.client.close()
            if self.upstream is not None:
                self.upstream.close()
            self._drop_held()
            self.proxy._forget(self)

    # ---- forwarding ----------------------------------------------------------------------------

    def _pump(self, upstream: socket.socket) -> str:
        client = self.client
        pipes = self.pipes = (_Pipe("up", client, upstream), _Pipe("down", upstream, client))
        masks = {client: 0, upstream: 0}
        with selectors.DefaultSelector() as sel:
            sel.register(self.wake_r, selectors.EVENT_READ)
            while True:
                kill = self.proxy._kill_of(self)
                if kill:
                    return kill
                for pipe in pipes:
                    end = self._forward(pipe)
                    if end:
                        return end
                if all(pipe.ended for pipe in pipes):
                    return "done"
                want = {client: 0, upstream: 0}
                timeout: float | None = None
                stalled = self.proxy._stalled
                now = time.monotonic()
                for pipe in pipes:
                    if pipe.reading and pipe.held < HOLD_LIMIT:
                        want[pipe.src] |= selectors.EVENT_READ
                    if pipe.blocked:
                        want[pipe.dst] |= selectors.EVENT_WRITE
                    elif pipe.items and not stalled:
                        wait = max(0.0, pipe.items[0].due - now)
                        timeout = wait if timeout is None else min(timeout, wait)
                for sock, mask in want.items():
                    if mask == masks[sock]:
                        continue
                    if not mask:
                        sel.unregister(sock)
                    elif masks[sock]:
                        sel.modify(sock, mask)
                    else:
                        sel.register(sock, mask)
                    masks[sock] = mask
                for key, events in sel.select(timeout):
                    if key.fileobj is self.wake_r:
                        with suppress(OSError):
                            self.wake_r.recv(4096)
                        continue
                    for pipe in pipes:
                        if events & selectors.EVENT_WRITE and pipe.dst is key.fileobj:
                            pipe.blocked = False
                        if events & selectors.EVENT_READ and pipe.src is key.fileobj:
                            self._read(pipe)

    def _read(self, pipe: _Pipe) -> None:
        kind: Literal["data", "eof", "error"] = "data"
        try:
            data = pipe.src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, kind = b"", "error"
        if not data and kind == "data":
            kind = "eof"
        # Delay counts from arrival, so a chunk that waited behind a stall is not delayed twice.
        due = time.monotonic() + self.proxy._delay_s
        pipe.items.append(_Item(kind, due, data))
        if data:
            pipe.held += len(data)
            self.proxy._hold(pipe.direction, len(data))
        else:
            # An EOF or a peer's RST travels behind the data before it, so a stall holds it too.
            pipe.reading = False

    def _forward(self, pipe: _Pipe) -> str | None:
        proxy = self.proxy
        while pipe.items and not pipe.blocked:
            if proxy._stalled:
                return None
            item = pipe.items[0]
            if item.due > time.monotonic():
                return None
            if item.kind == "eof":
                pipe.items.popleft()
                pipe.ended = True
                proxy._log(f"{pipe.src_name}-eof")
                with suppress(OSError):
                    pipe.dst.shutdown(socket.SHUT_WR)
                continue
            if item.kind == "error":
                proxy._log(f"{pipe.src_name}-reset")
                return "abort"
            if not item.checked:
                item.checked = True
                if proxy._fire(pipe.direction, pipe.tail, item.data, before=True):
                    kill = proxy._kill_of(self)
                    if kill:
                        return kill
                    continue  # the action may have stalled the proxy
            if pipe.cut_left is None:
                pipe.cut_left = proxy._claim_cut(pipe.direction)
                pipe.cut_total = pipe.cut_left or 0
            data = memoryview(item.data)[item.sent :]
            if pipe.cut_left is not None:
                data = data[: pipe.cut_left]
            if data:
                sent = proxy._send(pipe, data)
                if sent is None:
                    return "abort"
                item.sent += sent
                pipe.held -= sent
                if pipe.cut_left is not None:
                    pipe.cut_left -= sent
            if pipe.cut_left == 0:
                proxy._log(f"cut {pipe.cut_total}")
                return "reset"
            if item.sent < len(item.data):
                pipe.blocked = True
                return None
            pipe.items.popleft()
            fired = proxy._fire(pipe.direction, pipe.tail, item.data, before=False)
            keep = proxy._tail_keep
            pipe.tail = (pipe.tail + item.data)[-keep:]
            if fired:
                kill = proxy._kill_of(self)
                if kill:
                    return kill
        return None

    # ---- ending --------------------------------------------------------------------------------

    def _drop_held(self) -> None:
        for pipe in self.pipes:
            pipe.items.clear()
            self.proxy._hold(pipe.direction, -pipe.held)
            pipe.held = 0

    def _end(self, how: str, upstream: socket.socket) -> None:
        self.proxy._closing(self)
        self._drop_held()
        if how == "close":
            for sock in (self.client, upstream):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
            self.acted.set()
            self._linger((self.client, upstream))
        elif how == "reset":
            _drain(self.client)
            _drain(upstream)
            _abort(self.client)
            upstream.close()
        elif how == "abort":
            _abort(self.client)
            _abort(upstream)
        self.acted.set()

    def _linger(self, socks: tuple[socket.socket, ...]) -> None:
        # close() with unread input sends RST instead of FIN: read until both peers close (bounded),
        # so a clean close stays clean. stop() cuts this short.
        deadline = time.monotonic() + LINGER
        with selectors.DefaultSelector() as sel:
            sel.register(self.wake_r, selectors.EVENT_READ)
            for sock in socks:
                sel.register(sock, selectors.EVENT_READ)
            while len(sel.get_map()) > 1:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                for key, _ in sel.select(left):
                    if key.fileobj is self.wake_r:
                        with suppress(OSError):
                            self.wake_r.recv(4096)
                        if self.proxy._stopping:
                            return
                        continue
                    peer = key.fileobj
                    assert isinstance(peer, socket.socket)
                    try:
                        data = peer.recv(CHUNK)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(peer)


class FaultProxy:
    """Forwards TCP connections from `host:port` to `upstream_host:upstream_port`, with faults on demand.

    "up" is client (device) to upstream (broker), "down" the other way. Every control method is
    thread-safe and takes effect for all connections; close() and reset() return once the FIN or RST
    has been sent (when called from a pattern action, they do not wait). See the methods for the faults.
    """

    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port
        # Re-entrant, so a wait_for() predicate can read the properties, which take it too.
        self._lock = threading.Condition(threading.RLock())
        self._links: set[_Link] = set()
        self._threads: list[threading.Thread] = []
        self._accepted = 0
        self._stalled = False
        self._delay_s = 0.0
        self._refusing = False
        self._stopping = False
        self._cuts: dict[str, int | None] = {"up": None, "down": None}
        self._rules: list[_Rule] = []
        self._tail_keep = TAIL_MIN
        self._events: list[str] = []
        self._bytes = {"up": 0, "down": 0}
        self._held = {"up": 0, "down": 0}
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._accept_thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen (port 0 picks a free port, kept for a later restart) and accept in a thread."""
        with self._lock:
            if self._listener is not None:
                return self
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            listener = socket.create_server((self.host, self.port), family=family, backlog=64)
            listener.setblocking(False)
            self.host, self.port = listener.getsockname()[:2]
            self._listener = listener
            self._wake = socket.socketpair()
            self._stopping = False
            self._accept_thread = threading.Thread(
                target=self._accept_loop, args=(listener, self._wake[0]), name=f"faultproxy-{self.port}-accept"
            )
            self._accept_thread.daemon = True
            self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection and join all threads."""
        with self._lock:
            listener, wake, accept_thread = self._listener, self._wake, self._accept_thread
            if listener is None or wake is None or accept_thread is None:
                return
            self._listener = self._wake = self._accept_thread = None
            self._stopping = True
            wake[1].send(b"\0")
        accept_thread.join()
        listener.close()
        for sock in wake:
            sock.close()
        self._kill_all("close", "stop")
        with self._lock:
            for link in self._links:
                self._wake_link(link)
            threads, self._threads = self._threads, []
        for thread in threads:
            if thread is not threading.current_thread():  # stop() called by a pattern action
                thread.join(CONNECT_TIMEOUT + LINGER + 1.0)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FaultProxy({self.host}:{self.port} -> {self.upstream[0]}:{self.upstream[1]})"

    # ---- state ---------------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Client connections open now (not closed, reset or cut)."""
        with self._lock:
            return sum(1 for link in self._links if link.open)

    @property
    def accepted(self) -> int:
        """Connections accepted so far, refused ones included."""
        with self._lock:
            return self._accepted

    @property
    def events(self) -> list[str]:
        with self._lock:
            return list(self._events)

    @property
    def bytes_up(self) -> int:
        with self._lock:
            return self._bytes["up"]

    @property
    def bytes_down(self) -> int:
        with self._lock:
            return self._bytes["down"]

    @property
    def held_up(self) -> int:
        """Bytes read from clients and not forwarded yet (stalled, delayed or blocked)."""
        with self._lock:
            return self._held["up"]

    @property
    def held_down(self) -> int:
        """Bytes read from upstream and not forwarded yet."""
        with self._lock:
            return self._held["down"]

    def wait_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until at least `n` connections have been accepted in total (refused ones count)."""
        return self.wait_for(lambda: self._accepted >= n, timeout)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until predicate() is true; it is checked again on every change of the proxy's state.

        A change is an accept, a read, a forward or an event, so e.g. `wait_for(lambda:
        proxy.held_up >= 5)` proves the proxy has read five bytes it has not forwarded.
        """
        with self._lock:
            return self._lock.wait_for(predicate, timeout)

    # ---- faults --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every open connection with FIN on both sides; data still held is dropped."""
        self._kill_all("close", "close")

    def reset(self) -> None:
        """RST every open connection on the client side (after what was forwarded leaves) and close upstream."""
        self._kill_all("reset", "reset")

    def stall(self) -> None:
        """Forward nothing in either direction, EOFs included, on every connection, new ones too."""
        with self._lock:
            self._stalled = True
            self._log_locked("stall")
            for link in self._links:
                self._wake_link(link)

    def resume(self) -> None:
        """Forward again: what was held is delivered in order."""
        with self._lock:
            self._stalled = False
            self._log_locked("resume")
            for link in self._links:
                self._wake_link(link)

    def delay(self, seconds: float) -> None:
        """Hold every chunk read from now on for `seconds` after its arrival (0 removes); order is kept."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        with self._lock:
            self._delay_s = float(seconds)
            self._log_locked(f"delay {seconds:g}")

    def refuse(self, on: bool = True) -> None:
        """While on, new connections are accepted and reset at once; open ones are not affected."""
        with self._lock:
            self._refusing = bool(on)
            self._log_locked("refuse on" if on else "refuse off")

    def cut_after(self, nbytes: int, direction: Direction = "down") -> None:
        """On the next data in `direction` (on any connection), forward exactly `nbytes` more, then reset it."""
        _check_direction(direction)
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        with self._lock:
            self._cuts[direction] = nbytes

    def on_pattern(
        self,
        pattern: bytes,
        direction: Direction,
        action: Action,
        before: bool = True,
        once: bool = True,
    ) -> None:
        """When data in `direction` contains `pattern` (also split across chunks), run `action`.

        `action` is "close", "reset", "stall" (the same as calling that method then) or a
        callable(proxy), run on the connection's thread. before=True runs it before the chunk is
        forwarded (the chunk is dropped if the connection was closed or reset; held if stalled),
        before=False right after the whole chunk was forwarded. once=True fires it once in all.
        """
        _check_direction(direction)
        if not pattern:
            raise ValueError("pattern must not be empty")
        if not callable(action) and action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS} or a callable, not {action!r}")
        with self._lock:
            self._rules.append(_Rule(bytes(pattern), direction, action, before, once))
            self._tail_keep = max(self._tail_keep, len(pattern) - 1)

    # ---- internals -----------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket, wake: socket.socket) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            sel.register(wake, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fileobj is wake:
                        return
                    self._accept(listener)

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:
            # Out of descriptors: the listener stays readable, so back off instead of spinning.
            self._log(f"accept-error {exc.errno}")
            time.sleep(0.05)
            return
        _nodelay(client)
        with self._lock:
            if self._refusing:
                self._accepted += 1
                self._log_locked("accept")
                self._log_locked("refused")
                _abort(client)
                return
            self._accepted += 1
            link = _Link(self, client, self._accepted)
            self._links.add(link)
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            self._threads.append(link.thread)
            self._log_locked("accept")
            link.thread.start()

    def _kill_all(self, how: str, event: str) -> None:
        with self._lock:
            links = [link for link in self._links if link.open and link.kill is None]
            for link in links:
                link.kill = how
                link.open = False
                self._wake_link(link)
            self._log_locked(event)
        # A pattern action runs on a connection's thread: waiting there could wait on itself.
        if not getattr(_local, "in_proxy", False):
            for link in links:
                link.acted.wait(ACT_TIMEOUT)

    def _wake_link(self, link: _Link) -> None:
        with suppress(OSError):
            link.wake_w.send(b"\0")

    def _kill_of(self, link: _Link) -> str | None:
        with self._lock:
            return link.kill

    def _closing(self, link: _Link) -> None:
        with self._lock:
            link.open = False

    def _forget(self, link: _Link) -> None:
        with self._lock:
            link.open = False
            self._links.discard(link)
            link.wake_r.close()
            link.wake_w.close()

    def _claim_cut(self, direction: str) -> int | None:
        with self._lock:
            nbytes = self._cuts[direction]
            self._cuts[direction] = None
            return nbytes

    def _send(self, pipe: _Pipe, data: memoryview) -> int | None:
        # The send (non-blocking, so short) is under the lock so bytes_up/down and held_up/down are
        # exact at the moment the receiver can see the data.
        with self._lock:
            try:
                sent = pipe.dst.send(data)
            except (BlockingIOError, InterruptedError):
                return 0
            except OSError:
                self._log_locked(f"{pipe.dst_name}-reset")
                return None
            self._bytes[pipe.direction] += sent
            self._held[pipe.direction] -= sent
            self._lock.notify_all()
            return sent

    def _hold(self, direction: str, nbytes: int) -> None:
        with self._lock:
            self._held[direction] += nbytes
            self._lock.notify_all()

    def _fire(self, direction: str, tail: bytes, data: bytes, before: bool) -> bool:
        with self._lock:
            rules = [
                rule
                for rule in self._rules
                if rule.direction == direction and rule.before == before and _contains(tail, data, rule.pattern)
            ]
            for rule in rules:
                if rule.once:
                    self._rules.remove(rule)
        for rule in rules:
            self._log(f"pattern {rule.pattern!r} {rule.name}")
            try:
                if isinstance(rule.action, str):
                    {"close": self.close, "reset": self.reset, "stall": self.stall}[rule.action]()
                else:
                    rule.action(self)
            except Exception as exc:  # a failing test hook must not kill the connection's thread
                self._log(f"action-error {exc!r}")
        return bool(rules)

    def _log(self, event: str) -> None:
        with self._lock:
            self._log_locked(event)

    def _log_locked(self, event: str) -> None:
        self._events.append(event)
        self._lock.notify_all()
