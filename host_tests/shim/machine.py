"""MicroPython's machine for CPython: resets end the process with a telling exit code, pins remember."""

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

# Exit codes by which a test, or a harness that "reboots" the board by restarting the process, sees why
# the board went down. An unfed WDT ends the process only in a process started by mprun.py.
RESET_EXIT_CODE = 211
SOFT_RESET_EXIT_CODE = 212
WDT_RESET_EXIT_CODE = 213
DEEPSLEEP_EXIT_CODE = 214

# The ESP32 port's values (from micropython-esp32-stubs 1.29). reset_cause() reports MPSHIM_RESET_CAUSE
# (a number or a name such as WDT_RESET), so that harness can tell the next run why it restarted.
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

# An expired WDT ends the process only when it is the board (mprun.main sets this); inside a test
# process it just records the expiry, so a forgotten WDT cannot kill pytest.
WDT_ENDS_PROCESS = False

# unique_id() unless MPSHIM_UNIQUE_ID (hex) says otherwise: 6 bytes, the shape of an ESP32's MAC.
_DEFAULT_UNIQUE_ID = b"\x24\x0a\xc4\x00\x00\x01"
_freq = 160_000_000


def _exit(code: int) -> NoReturn:
    # os._exit skips buffered output; a board's last words must still reach the test.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def reset() -> NoReturn:
    _exit(RESET_EXIT_CODE)


def soft_reset() -> NoReturn:
    _exit(SOFT_RESET_EXIT_CODE)


def deepsleep(time_ms: int = 0) -> NoReturn:
    _exit(DEEPSLEEP_EXIT_CODE)


def lightsleep(time_ms: int | None = None) -> None:
    if time_ms:
        time.sleep(time_ms / 1000)


def reset_cause() -> int:
    cause = os.environ.get("MPSHIM_RESET_CAUSE", "")
    if not cause:
        return PWRON_RESET
    if cause.isdigit():
        return int(cause)
    return int(globals()[cause])


def wake_reason() -> int:
    return 0


def unique_id() -> bytes:
    override = os.environ.get("MPSHIM_UNIQUE_ID")
    return bytes.fromhex(override) if override else _DEFAULT_UNIQUE_ID


def freq(hz: int | None = None) -> int | None:
    global _freq
    if hz is None:
        return _freq
    _freq = hz
    return None


def idle() -> None:
    # A board idles until the next interrupt, at most a tick; a busy loop here would burn a core.
    time.sleep(0.001)


def disable_irq() -> int:
    return 0


def enable_irq(state: int = 0) -> None:
    pass


class Pin:
    """A GPIO that remembers its level: Pin.levels[id] is what a test inspects (status LEDs)."""

    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5

    # Keyed by pin id, shared by every Pin object on the same id, as the hardware is.
    levels: dict[Any, int] = {}
    modes: dict[Any, int] = {}

    def __init__(self, id: Any, mode: int = -1, pull: int = -1, *, value: Any = None, **kwargs: Any) -> None:
        self.id = id
        self._handler: Callable[[Pin], Any] | None = None
        self.init(mode, pull, value=value)

    def init(self, mode: int = -1, pull: int = -1, *, value: Any = None, **kwargs: Any) -> None:
        if mode != -1:
            Pin.modes[self.id] = mode
        if value is not None:
            Pin.levels[self.id] = 1 if value else 0
        elif pull == Pin.PULL_UP and self.id not in Pin.levels:
            Pin.levels[self.id] = 1

    def __repr__(self) -> str:
        return "Pin(%r)" % (self.id,)

    def value(self, x: Any = None) -> int | None:
        if x is None:
            return Pin.levels.get(self.id, 0)
        Pin.levels[self.id] = 1 if x else 0
        return None

    __call__ = value

    def on(self) -> None:
        Pin.levels[self.id] = 1

    def off(self) -> None:
        Pin.levels[self.id] = 0

    def irq(self, handler: Callable[["Pin"], Any] | None = None, trigger: int = 3, **kwargs: Any) -> "Pin":
        self._handler = handler
        return self


class WDT:
    """WDT(id=0, timeout=5000): once started, feed() in time or the board resets (see WDT_ENDS_PROCESS)."""

    def __init__(self, id: int = 0, timeout: int = 5000) -> None:
        self.timeout_ms = timeout
        self.expired = False
        self._deadline = time.monotonic() + timeout / 1000
        self._fed = threading.Event()
        threading.Thread(target=self._watch, name="machine.WDT", daemon=True).start()

    def feed(self) -> None:
        self._deadline = time.monotonic() + self.timeout_ms / 1000
        self._fed.set()

    def _watch(self) -> None:
        while True:
            left = self._deadline - time.monotonic()
            if left <= 0:
                break
            self._fed.wait(left)
            self._fed.clear()
        self.expired = True
        if WDT_ENDS_PROCESS:
            sys.stderr.write("machine.WDT: not fed for %d ms, resetting\n" % self.timeout_ms)
            _exit(WDT_RESET_EXIT_CODE)
