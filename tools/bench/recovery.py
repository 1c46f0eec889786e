"""Recovery: time from the broker becoming reachable again to the device's first accepted response."""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from typing import Any

from faultproxy import FaultProxy
from localjobs.broker import Mosquitto
from localjobs.service import JobsService
from mpylib import ROOT, device_command

DEVICE = ROOT / "tools" / "soak" / "device.py"


def recovery_times(runtime: str, floor_ms: int, ceiling_ms: int, outage_s: float, trials: int) -> list[float]:
    """Seconds from the end of each outage to the first request the service answers, one per trial.

    The outage is the broker refusing this device only (through a proxy), so the figure is the device's
    backoff and reconnect, not the local service's own reconnect to a restarted broker.
    """
    times = []
    with Mosquitto() as broker, JobsService(broker.host, broker.port) as service, \
            FaultProxy(broker.host, broker.port) as proxy:
        thing = "recovery-%s-%d" % (runtime, floor_ms)
        service.create_thing(thing)
        answered: list[float] = []
        answered_one = threading.Condition()

        def note(thing_: str, api: str, topic: str, request: dict[str, Any], publish: Any) -> None:
            with answered_one:
                answered.append(time.monotonic())
                answered_one.notify_all()

        service.interceptor = note
        command, env = device_command(runtime, DEVICE, [
            proxy.host, str(proxy.port), thing, "jobs=1", "timeout_ms=2000", "response_ms=500", "ping_ms=500",
            "floor_ms=%d" % floor_ms, "ceiling_ms=%d" % ceiling_ms, "stable_ms=60000"], "128k")
        device = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with answered_one:
                assert answered_one.wait_for(lambda: answered, 30), "the device never asked anything"
            for _ in range(trials):
                proxy.refuse(True)
                proxy.reset()
                time.sleep(outage_s)  # the outage itself is what is being simulated
                with answered_one:
                    answered.clear()
                back = time.monotonic()
                proxy.refuse(False)
                with answered_one:
                    assert answered_one.wait_for(lambda: answered, 60), "no request after the outage"
                    times.append(answered[0] - back)
        finally:
            device.kill()
            device.wait()
    return times


def main() -> None:
    print("%-12s %9s %10s %10s %10s %12s" % ("runtime", "floor_ms", "median_ms", "max_ms", "trials", "median/floor"))
    for runtime in ("unix64", "cpython"):
        for floor_ms in (100, 1000):
            times = recovery_times(runtime, floor_ms, 8 * floor_ms, 3.0, 7)
            median = statistics.median(times) * 1000
            print("%-12s %9d %10.0f %10.0f %10d %12.2f" % (runtime, floor_ms, median, max(times) * 1000,
                                                          len(times), median / floor_ms))


if __name__ == "__main__":
    main()
