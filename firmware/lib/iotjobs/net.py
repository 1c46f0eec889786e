"""What both transports do on the network: WiFi back up, socket reads and writes bounded by a deadline, backoff."""

import random
import time


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


def transfer(step, view, deadline, poller, wanted=None):
    """Bytes moved by step (a socket's readinto or write) from or into view: all of it, or once wanted bytes have
    moved (fewer when the other end closes first). OSError if the deadline passes first, or if the other end
    closes before all of view that was wanted."""
    done = 0
    n = len(view) if wanted is None else wanted
    while done < n:
        more = step(view[done:])
        if more is None:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0 or not poller.poll(left):
                raise OSError("nothing came before the deadline")
        elif more:
            done += more
        elif wanted is None:
            raise OSError("connection closed by the other end")
        else:
            return done
    return done
