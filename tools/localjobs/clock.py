"""Time for the local Jobs service: the real clock, and a manual one that tests move by hand."""

from __future__ import annotations

import threading
import time


class Clock:
    """Wall-clock time in float seconds since the epoch."""

    def now(self) -> float:
        return time.time()


class ManualClock(Clock):
    """A clock that stands still until `advance` is called, so timer tests never sleep."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        # The MQTT thread reads the time while a test thread moves it.
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._now += seconds
            return self._now
