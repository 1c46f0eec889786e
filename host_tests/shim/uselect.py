"""MicroPython's select for CPython: poll() hands back the registered objects and sees TLS-buffered data."""

import math
import select as _select
import time
from collections.abc import Iterator
from typing import Any

POLLIN = _select.POLLIN
POLLOUT = _select.POLLOUT
POLLERR = _select.POLLERR
POLLHUP = _select.POLLHUP

select = _select.select

# How often a long poll() wakes to notice that a test took the shim's link down.
_LINK_POLL_MS = 50


def _fd(obj: Any) -> int:
    return obj if isinstance(obj, int) else int(obj.fileno())


class _Poll:
    def __init__(self) -> None:
        self._poller = _select.poll()
        self._objs: dict[int, tuple[Any, int]] = {}

    def register(self, obj: Any, eventmask: int = POLLIN | POLLOUT) -> None:
        fd = _fd(obj)
        self._objs[fd] = (obj, eventmask)
        self._poller.register(fd, eventmask)

    def unregister(self, obj: Any) -> None:
        fd = _fd(obj)
        if self._objs.pop(fd, None) is not None:
            self._poller.unregister(fd)

    def modify(self, obj: Any, eventmask: int) -> None:
        fd = _fd(obj)
        if fd not in self._objs:
            raise OSError(2, "ENOENT")
        self._objs[fd] = (obj, eventmask)
        self._poller.modify(fd, eventmask)

    def _ready_without_fd(self) -> list[tuple[Any, int]]:
        """Shim sockets that are ready although their descriptor says nothing: dead, or TLS data buffered."""
        ready = []
        for obj, mask in self._objs.values():
            if getattr(obj, "_poll_error", None) and obj._poll_error():
                ready.append((obj, POLLERR | POLLHUP))
            elif mask & POLLIN and getattr(obj, "_pending", None) and obj._pending():
                ready.append((obj, POLLIN))
        return ready

    def poll(self, timeout: int = -1) -> list[tuple[Any, int]]:
        """[(obj, events)] ready within timeout ms (forever if negative), as MicroPython's poll."""
        deadline = None if timeout < 0 else time.monotonic() + timeout / 1000
        while True:
            ready = self._ready_without_fd()
            if ready:
                return ready
            step = _LINK_POLL_MS
            if deadline is not None:
                step = min(step, max(0, math.ceil((deadline - time.monotonic()) * 1000)))
            events = self._poller.poll(step)
            if events:
                return [(self._objs[fd][0], ev) for fd, ev in events if fd in self._objs]
            if deadline is not None and time.monotonic() >= deadline:
                return []

    def ipoll(self, timeout: int = -1, flags: int = 0) -> Iterator[tuple[Any, int]]:
        ready = self.poll(timeout)
        if flags & 1:
            # One-shot: an object stays quiet until modify() re-arms it.
            for obj, _ in ready:
                self.modify(obj, 0)
        return iter(ready)


def poll() -> _Poll:
    return _Poll()
