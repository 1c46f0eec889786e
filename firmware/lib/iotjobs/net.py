"""What both transports do on the network: WiFi back up, socket reads and writes bounded by a deadline, backoff."""

import random
import time


class LinkDown(OSError):
    """The connection failed: closed by the other end, or silent until the deadline."""


def backoff_ms(attempt, floor_ms, ceiling_ms, factor, rand=None):
    """Delay before reconnect attempt number attempt (0 first): full jitter under a capped exponential."""
    cap = floor_ms
    for _ in range(attempt):
        cap *= factor
        if cap >= ceiling_ms:
            cap = ceiling_ms
            break
    # Full jitter spreads a fleet that lost the service at the same moment over the whole window.
    return (rand or random.randrange)(cap + 1) if cap > 0 else 0


def wlan_up(wlan, wait_ms):
    """Whether WiFi is up (or wlan None): else ask the radio to reconnect, then wait for it up to wait_ms."""
    if wlan is None or wlan.isconnected():
        return True
    try:
        # Asking again while the radio is still on its way makes an ESP32 start over.
        if getattr(wlan, "status", None) is None or wlan.status() != getattr(wlan, "STAT_CONNECTING", 1001):
            wlan.active(True)
            wlan.connect()
    except OSError:
        pass
    deadline = time.ticks_add(time.ticks_ms(), wait_ms)
    while not wlan.isconnected():
        if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            return False
        time.sleep_ms(50)
    return True


# The socket stays non-blocking and waits are poll()s with a deadline, since a TLS socket on MicroPython has no
# settimeout(). The socket is always tried before poll(): a TLS socket can hold decrypted bytes that poll() on its
# file descriptor cannot see.


def wait(poller, deadline):
    """Wait for poller's event until deadline (a ticks_ms value); LinkDown if it does not come."""
    left = time.ticks_diff(deadline, time.ticks_ms())
    if left <= 0 or not poller.poll(left):
        raise LinkDown("nothing came before the deadline")


def read_some(sock, view, deadline, poller):
    """Read into view what the socket has (waiting for at least one byte); 0 when the other end has closed."""
    while True:
        got = sock.readinto(view)
        if got is not None:
            return got
        wait(poller, deadline)


def read_exactly(sock, view, deadline, poller):
    """Fill view; LinkDown if the connection ends first or the deadline passes."""
    got = 0
    n = len(view)
    while got < n:
        more = read_some(sock, view[got:], deadline, poller)
        if not more:
            raise LinkDown("connection closed by the other end")
        got += more


def write_all(sock, view, deadline, poller):
    """Write all of view (a memoryview); LinkDown if the connection ends first or the deadline passes."""
    sent = 0
    n = len(view)
    while sent < n:
        more = sock.write(view[sent:])
        if more is None:
            wait(poller, deadline)
        elif more == 0:
            raise LinkDown("connection closed by the other end")
        else:
            sent += more
    return sent
