"""Unit cases of what a 32-bit board with single floats does differently: ticks that wrap at 2**30, ints past
2**30 that are long ints, floats with a 24-bit mantissa. Run on every runtime (esp32like is such a board)."""

import json

from harness import main
from iotjobs import payloads, runner

PERIOD = 1 << 30  # where ticks wrap on any 32-bit port, an ESP32's included
HOUR_MS = 3600 * 1000
WEEK_MS = 7 * 24 * HOUR_MS


class Ticks:
    """MicroPython's ticks functions as a 32-bit board has them, on a clock the case moves."""

    def __init__(self, start):
        self.now = start

    def ticks_ms(self):
        return self.now

    def ticks_add(self, ticks, delta):
        if not -(PERIOD // 2) < delta < PERIOD // 2:
            raise OverflowError("ticks interval overflow")
        return (ticks + delta) & (PERIOD - 1)

    def ticks_diff(self, later, earlier):
        return ((later - earlier + PERIOD // 2) & (PERIOD - 1)) - PERIOD // 2

    def advance(self, ms):
        self.now = (self.now + ms) & (PERIOD - 1)


class IdleJobs:
    """A jobs client with nothing pending, counting the runner's describe calls."""

    def __init__(self):
        self.describes = 0

    def on_notify_next(self, callback):
        pass

    def on_notify(self, callback):
        pass

    def poll(self):
        pass

    def start_next(self, *args, **kwargs):
        return None

    def describe(self, *args, **kwargs):
        self.describes += 1
        return None


def hours_until_describe(every_ms, start):
    """Hours of idle steps, an hour apart, until the runner's periodic describe; at most twice every_ms."""
    clock = Ticks(start)
    real = runner.time
    runner.time = clock  # type: ignore[assignment]
    try:
        jobs = IdleJobs()
        loop = runner.Runner(jobs, {}, describe_every_ms=every_ms)
        loop.step()  # the first step asks start_next: nothing pending
        hours = 0
        while not jobs.describes and hours < 2 * every_ms // HOUR_MS:
            clock.advance(HOUR_MS)
            hours += 1
            loop.step()
        return hours
    finally:
        runner.time = real


def case_a_weekly_describe_comes_after_a_week_of_32bit_ticks():
    # A week is more than ticks_diff can span on a 32-bit board (2**29 ms, 6.2 days): it must still come due.
    assert hours_until_describe(WEEK_MS, PERIOD - HOUR_MS // 2) == 7 * 24
    assert hours_until_describe(WEEK_MS, 0) == 7 * 24


def case_a_daily_describe_across_the_ticks_wrap():
    assert hours_until_describe(24 * HOUR_MS, PERIOD - 5 * HOUR_MS) == 24


def case_execution_numbers_past_2_30_stay_exact():
    # 1234567890 (the spec's example) and a version past 2**31 are long ints on a 32-bit board.
    execution = json.loads('{"executionNumber": 1234567890, "versionNumber": 3000000000}')
    sent = json.loads(payloads.update("t", "SUCCEEDED", None, execution["versionNumber"],
                                      execution["executionNumber"]))
    assert sent["executionNumber"] == 1234567890 and sent["expectedVersion"] == 3000000000
    assert json.loads(payloads.describe("t", 2**40))["executionNumber"] == 2**40


def case_epoch_seconds_of_milliseconds_past_2_30_is_exact():
    # The MQTT API's timestamps in milliseconds parse as long ints: integer arithmetic keeps every second.
    assert payloads.epoch_seconds(json.loads("1489096123309")) == 1489096123
    assert payloads.epoch_seconds(json.loads("1795982610999")) == 1795982610
    assert payloads.epoch_seconds(json.loads("1795982610")) == 1795982610


def case_epoch_seconds_is_always_an_int():
    # A float (seconds, or milliseconds) gives whole seconds too, never a float to compare with time.time().
    for value in (1489096123309.0, 1549395301.389, 1e9):
        seconds = payloads.epoch_seconds(value)
        assert isinstance(seconds, int), (value, seconds)
    # A single float holds an epoch to within 128 s; the conversion adds no error of its own.
    assert abs(payloads.epoch_seconds(1489096123309.0) - 1489096123) <= 128
    assert abs(payloads.epoch_seconds(1549395301.389) - 1549395301) <= 128


if __name__ == "__main__":
    main(globals())
