"""The service at fleet scale: incremental saves and kept indexes match full recounts; a request's cost stays flat."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from localjobs.clock import ManualClock
from localjobs.model import ApiError, JobsModel, thing_arn
from localjobs.store import Store

DOC = {"operation": "update"}
GROUP = "arn:aws:iot:us-east-1:123456789012:thinggroup/"


class Checked:
    """A model whose changes are written incrementally after every call, then compared with the whole state."""

    def __init__(self, clock: ManualClock) -> None:
        self.model = JobsModel(clock)
        self.store = Store(":memory:")
        self.rows: list[int] = []

    def __call__(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ApiError:
            return None
        finally:
            self.rows.append(self.store.write(self.model.take_changes()))
            assert self.model.index_errors() == []
            assert self.store.save(self.model.to_records()) == 0, "a change the incremental write missed"


def test_incremental_writes_and_indexes_match_the_whole_state() -> None:
    clock = ManualClock()
    c = Checked(clock)
    m = c.model
    for n in range(8):
        c(m.create_thing, f"t{n}")
    c(m.create_thing_group, "g")
    c(m.add_thing_to_thing_group, "g", "t1")
    c(m.add_thing_to_thing_group, "g", "t2")
    snap = [thing_arn(t) for t in ("t0", "t1", "t3")]
    c(m.create_job, "snap", snap, DOC, timeout_config={"inProgressTimeoutInMinutes": 5})
    c(m.create_job, "cont", [GROUP + "g"], DOC, target_selection="CONTINUOUS")
    c(m.create_job, "roll", [thing_arn(t) for t in ("t4", "t5", "t6")], DOC, rollout_config={"maximumPerMinute": 1})
    abort = {"criteriaList": [{"action": "CANCEL", "failureType": "FAILED", "minNumberOfExecutedThings": 1,
                               "thresholdPercentage": 50}]}
    c(m.create_job, "abort", [thing_arn("t5"), thing_arn("t7")], DOC, abort_config=abort)
    c(m.start_next, "t0", step_timeout_min=3)
    c(m.start_next, "t0", step_timeout_min=7)  # already IN_PROGRESS: only its step timer changes
    c(m.update, "t0", "snap", "IN_PROGRESS", {"p": "1"})
    c(m.update, "t0", "snap", "SUCCEEDED")
    c(m.update, "t7", "abort", "FAILED")  # the abort criterion cancels t5's execution
    c(m.add_thing_to_thing_group, "g", "t3")
    c(m.remove_thing_from_thing_group, "g", "t1")
    c(m.start_next, "t3")
    clock.advance(400)
    c(m.tick)  # t3's snap execution times out; the rollout releases one more
    c(m.update_job, "roll", rollout_config={"maximumPerMinute": 5})
    c(m.associate_targets_with_job, "cont", [thing_arn("t6")])
    c(m.cancel_job_execution, "cont", "t2")
    c(m.add_thing_to_thing_group, "g", "t2")  # leaves the group's CONTINUOUS job to queue nothing new
    c(m.delete_job_execution, "cont", "t2", 1, force=True)
    c(m.cancel_job, "roll", force=True)
    c(m.delete_thing, "t4")
    c(m.delete_job, "roll", force=True)
    c(m.create_job, "roll", [thing_arn("t5")], DOC)  # the same id again: rows of the old one must not survive
    c(m.delete_thing_group, "g")
    c(m.delete_thing, "t6")
    assert sum(c.rows) > 0
    assert list(m.jobs) == ["snap", "cont", "abort", "roll"], "a call the checker let fail"

    again = JobsModel(clock)
    again.load_records(c.store.load())
    assert again.to_records() == m.to_records()
    assert again.index_errors() == []
    for job_id in m.jobs:
        assert again.describe_job(job_id) == m.describe_job(job_id)
    for thing in m.things:
        assert again.get_pending(thing) == m.get_pending(thing)


@pytest.mark.parametrize("things", [100, 3000])
def test_a_device_request_writes_a_bounded_number_of_rows(things: int) -> None:
    c = Checked(ManualClock())
    m = c.model
    for n in range(things):
        m.create_thing(f"t{n}")
    for first in range(0, things, 100):
        m.create_job(f"j{first}", [thing_arn(f"t{n}") for n in range(first, first + 100)], DOC)
    c.store.write(m.take_changes())
    c.rows.clear()
    for n in range(0, things, 7):
        execution = m.start_next(f"t{n}")["execution"]
        c.rows.append(c.store.write(m.take_changes()))
        m.update(f"t{n}", execution["jobId"], "SUCCEEDED")
        c.rows.append(c.store.write(m.take_changes()))
    # The execution's row, and the job's when it completes: never the rest of the fleet.
    assert max(c.rows) <= 2
    assert c.store.save(m.to_records()) == 0
    assert m.index_errors() == []
    assert m.describe_job("j0")["jobProcessDetails"]["numberOfSucceededThings"] == len(range(0, 100, 7))
