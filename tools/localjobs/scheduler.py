"""What time does: execution timers, and staged rollouts that release a job's executions minute by minute."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .executions import Executions
from .resources import (
    JOB_IN_PROGRESS,
    PENDING,
    SUCCEEDED,
    TIMED_OUT,
    Job,
)

DEFAULT_MAX_PER_MINUTE = 1000
ROLLOUT_WINDOW_SECONDS = 60.0


class Scheduler(Executions):
    """Timers (`tick`, `next_deadline`), and each job's backlog of things a rollout has yet to give an execution."""

    def tick(self) -> list[tuple[str, str]]:
        """Time out every execution whose step or in-progress timer is due; returns (thing, jobId)s."""
        now = self.clock.now()
        due = [
            run
            for runs in self._pending.values()
            for run in runs
            if run.status in PENDING and run.deadline is not None and run.deadline <= now
        ]
        before = self._watch(dict.fromkeys(r.thing_name for r in due))
        for run in due:
            self._apply(run, TIMED_OUT, None, "timed-out")
        self._announce(before)
        for job in list(self.jobs.values()):
            if job.backlog:
                before = self._watch(dict.fromkeys(job.backlog))
                self._release(job)
                self._announce(before)
        return [(r.thing_name, r.job_id) for r in due]

    def next_deadline(self) -> float | None:
        """When the next timer falls due, so a driver knows how long it may wait."""
        deadlines = [
            r.deadline
            for runs in self._pending.values()
            for r in runs
            if r.status in PENDING and r.deadline is not None
        ]
        deadlines += [
            j.window_start + ROLLOUT_WINDOW_SECONDS
            for j in self.jobs.values()
            if j.backlog and j.window_start is not None
        ]
        return min(deadlines) if deadlines else None

    def seconds_before_timeout(self, thing: str, job_id: str, execution_number: int | None = None) -> int | None:
        """approximateSecondsBeforeTimedOut of a pending execution with a timer, else None."""
        run = self.execution(thing, job_id, execution_number)
        if run is None or run.status not in PENDING or run.deadline is None:
            return None
        return max(0, int(run.deadline - self.clock.now()))

    def _queue(self, job: Job, names: Iterable[str]) -> None:
        """Give each thing an execution now, or put it in the rollout's backlog."""
        if job.rollout_config is None:
            for name in names:
                self._add_execution(job, name)
            return
        job.backlog.extend(n for n in names if n not in job.backlog)
        self._release(job)

    def _has_pending(self, job: Job, thing: str) -> bool:
        run = self.execution(thing, job.job_id)
        return thing in job.backlog or (run is not None and run.status in PENDING)

    def _release(self, job: Job) -> None:
        """Create the executions the rollout allows by now, minute window by minute window."""
        self.changed[("job", job.job_id)] = job
        if job.status != JOB_IN_PROGRESS:
            job.backlog = []
            return
        config = job.rollout_config or {}
        now = self.clock.now()
        if job.window_start is None:
            job.window_start, job.window_count = now, 0
        if job.rate is None:
            self._raise_rate(job, config)
        while job.backlog:
            assert job.rate is not None
            while job.backlog and job.window_count < job.rate:
                self._add_execution(job, job.backlog.pop(0))
                job.window_count += 1
                job.notified_since_increase += 1
            if now < job.window_start + ROLLOUT_WINDOW_SECONDS:
                break
            # A service that was down (or a clock moved by hours) catches up one window at a time.
            # The rate changes only between windows: a minute's allowance is fixed when it starts.
            job.window_start += ROLLOUT_WINDOW_SECONDS
            job.window_count = 0
            self._raise_rate(job, config)
        if not job.backlog:
            job.window_start = None

    def _raise_rate(self, job: Job, config: Mapping[str, Any]) -> None:
        ceiling = config.get("maximumPerMinute", DEFAULT_MAX_PER_MINUTE)
        exponential = config.get("exponentialRate")
        if exponential is None:
            job.rate = ceiling
            return
        if job.rate is None:
            job.rate = min(exponential["baseRatePerMinute"], ceiling)
            job.notified_since_increase = 0
            job.succeeded_at_increase = self._count(job, {SUCCEEDED})
            return
        criteria = exponential["rateIncreaseCriteria"]
        succeeded = self._count(job, {SUCCEEDED})
        if "numberOfNotifiedThings" in criteria:
            met = job.notified_since_increase >= criteria["numberOfNotifiedThings"]
        else:
            met = succeeded - job.succeeded_at_increase >= criteria["numberOfSucceededThings"]
        if met and job.rate < ceiling:
            job.rate = min(ceiling, max(job.rate + 1, int(job.rate * exponential["incrementFactor"])))
            job.notified_since_increase = 0
            job.succeeded_at_increase = succeeded
