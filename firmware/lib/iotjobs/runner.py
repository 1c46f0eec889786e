"""The job runner: picks the next execution, runs its allowed handler, reports progress, cancellation and outcome."""

import json
import time

from micropython import const

from iotjobs import payloads, store
from iotjobs.errors import JobsError, RequestTimeout
from iotjobs.topics import is_name_byte

# The statusDetails key that carries the checkpoint, so that it survives even a lost flash file.
_CHECKPOINT = const("checkpoint")
# Rejections of an update that mean the execution is no longer this device's to work on.
_GONE = const(("InvalidStateTransition", "ResourceNotFound", "TerminalStateReached"))
# A service (or outbox) that is busy: the same call may work later.
_BUSY = const(("InternalError", "RequestThrottled", "OutboxFull"))
_RETRY_MS = const(5000)  # after a failed call, the next try (at most describe_every_ms)
_COUNTED_MS = const(1 << 20)  # ~17 minutes: far inside what ticks_diff spans on any port


class Canceled(Exception):
    """The execution was canceled, removed or timed out while its handler ran."""


class Reboot(Exception):
    """Raised by a handler to have the runner reset the board; the handler runs again after the restart."""


def _clean(text, limit):
    # The service refuses control and format characters in statusDetails; drop them rather than fail.
    # Read as UTF-8 bytes (payloads.code_point says why), cut between the refused ones: a clean value that
    # fits is returned as it is.
    raw = text.encode()
    pieces = []
    start = i = kept = 0
    while i < len(raw) and kept < limit:
        o, n = payloads.code_point(raw, i)
        if payloads.is_control_code(o):
            pieces.append(raw[start:i])
            start = i + n
        else:
            kept += 1
        i += n
    if not pieces:
        return text if i == len(raw) else raw[:i].decode()
    pieces.append(raw[start:i])
    return b"".join(pieces).decode()


def _clean_key(key):
    raw = str(key).encode()
    out = bytearray()
    i = 0
    while i < len(raw) and len(out) < 128:
        n = payloads.code_point(raw, i)[1]
        out.append(raw[i] if n == 1 and is_name_byte(raw[i]) else 95)  # "_" for any other character
        i += n
    return str(out, "utf-8")


def clip_details(details, max_pairs=10):
    """statusDetails the service accepts, from any dict: str keys and values, no control characters, clipped."""
    out: dict = {}
    if not isinstance(details, dict):
        details = {"result": details}
    # MicroPython's dict order is not insertion order: sort, so the same pairs survive on every run.
    for key in sorted(details, key=str):
        if len(out) >= max_pairs:
            break
        value = details[key]
        if not isinstance(value, str):
            value = json.dumps(value) if isinstance(value, (int, float, bool, list, dict)) else str(value)
        value = _clean(value, 1024)
        key = _clean_key(key)
        if key and value:
            out[key] = value
    return out


def operation_of(document):
    """(operation, input, None) from a job document, or (None, None, reason it cannot run).

    input is the document's dict, or for a large document the JobDocument it stays in (its get() and [] read
    one field at a time).
    """
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return None, None, "job document is not JSON"
    # A dict, or a JobDocument left on flash: both have get().
    if not hasattr(document, "get"):
        return None, None, "job document is not a JSON object"
    operation = document.get("operation")
    if isinstance(operation, str):
        return operation, document, None
    steps = document.get("steps")
    if not isinstance(steps, list) or not steps:
        return None, None, "job document has no operation and no steps"
    if len(steps) != 1:
        return None, None, "job document has %d steps; this device runs one" % len(steps)
    step = steps[0]
    action = step.get("action") if isinstance(step, dict) else None
    if not isinstance(action, dict) or action.get("type", "runHandler") != "runHandler":
        return None, None, "job document step is not a runHandler action"
    action_input = action.get("input")
    if not isinstance(action_input, dict):
        return None, None, "job document step has no input"
    handler = action_input.get("handler")
    if not isinstance(handler, str):
        return None, None, "job document step names no handler"
    # "download-file.sh" and "/opt/handlers/reboot.sh" name the same handler as "download-file" and "reboot",
    # AWS-Download-File's and AWS-Reboot's; the first is our "download".
    name = handler.split("/")[-1]
    dot = name.rfind(".")
    if dot > 0:
        name = name[:dot]
    return "download" if name == "download-file" else name, action_input, None


def _default_reset():
    import machine

    if hasattr(machine, "reset"):
        machine.reset()
    # The unix port has no machine.reset(): ending the process is its reset, as on iotjobs-vboard, which starts
    # it again (run by hand, start it again yourself: the job resumes from its checkpoint).
    print("iotjobs runner: this port has no machine.reset(): ending the process instead")
    import sys

    sys.exit(0)


def _report(reason, detail):
    print("iotjobs runner: %s: %s" % (reason, detail))


class Runner:
    def __init__(
        self,
        jobs_client,
        handlers,
        state_path="iotjobs_state.json",
        describe_every_ms=60000,
        on_state=None,
        reset=None,
        idle_ms=50,
    ):
        self.jc = jobs_client
        self.handlers = handlers
        self.state_path = state_path
        self.describe_every_ms = describe_every_ms
        self.on_state = on_state
        self.reset = reset or _default_reset
        self.idle_ms = idle_ms
        self.finished = 0  # executions this runner brought to a terminal state (or saw canceled)
        self.state = None
        self.state_job = None  # the jobId that state is about (None when idle)
        # Start with start_next, not describe: after a reset it returns the IN_PROGRESS execution first.
        self._start = True
        self._last_check = time.ticks_ms()
        self._wait_ms = describe_every_ms
        self._job = None  # (jobId, executionNumber) of the execution whose handler runs
        self._step = None
        self._operation = None
        self._timeout = None
        self._suspect = False
        self._gone = None
        self._committed = None  # the running execution's operation once its handler committed (see _progress)
        self._orphans = True  # until start_next first answers: a committed execution may need finishing
        jobs_client.on_notify_next(self._notified_next)
        jobs_client.on_notify(self._notified)
        self._set_state("idle", None)

    def run(self, max_jobs=None):
        """The device loop: forever, or until max_jobs executions reached a terminal state."""
        done = 0
        while max_jobs is None or done < max_jobs:
            if self.step():
                done += 1
            else:
                # Idle: sleep in the client, which wakes for the next message (a notify-next, say).
                self.jc.wait(self.idle_ms)
        return done

    def step(self):
        """One bounded iteration: poll, maybe start and run one execution; its outcome name, or None."""
        self.jc.poll()
        start = self._start
        if not start:
            now = time.ticks_ms()
            elapsed = time.ticks_diff(now, self._last_check)
            if elapsed < self._wait_ms:
                # ticks_diff spans half the ticks period, 2**29 ms (6.2 days) on a 32-bit board, so a longer wait
                # (a weekly describe) would never come due: what has passed is taken off the wait now and then.
                if elapsed >= _COUNTED_MS:
                    self._last_check = now
                    self._wait_ms -= elapsed
                return None
            self._checked(self.describe_every_ms)
            # The fallback for a lost notify-next: a cheap look without the document, then start_next only if needed.
            try:
                # A client without notifications (iotjobs.https) is polled: start_next itself is the look.
                start = not getattr(self.jc, "notifies", True) or self.jc.describe(include_document=False) is not None
            except (JobsError, RequestTimeout, OSError) as e:
                _report("describe $next failed", e)
                self._checked(_RETRY_MS)
                return None
            if not start:
                self._set_state("idle", None)
                return None
        self._start = False
        self._checked(self.describe_every_ms)
        try:
            execution = self.jc.start_next()
        except (JobsError, RequestTimeout, OSError) as e:
            _report("start_next failed", e)
            self._checked(_RETRY_MS)
            return None
        if self._orphans:
            self._orphans = False
            # Canceled with force after its handler committed, an execution is no longer offered: it is finished
            # anyway from what the state file kept, before the execution start_next gave (which stays IN_PROGRESS).
            saved = store.read_json(self.state_path)
            if isinstance(saved, dict) and saved.get("commit") and not saved.get("final"):
                orphan = {"jobId": saved.get("jobId"), "executionNumber": saved.get("executionNumber"),
                          "jobDocument": {"operation": saved["commit"]}}
                if execution is None or execution.get("jobId") != orphan["jobId"] or \
                        execution.get("executionNumber") != orphan["executionNumber"]:
                    execution = orphan
        if execution is None:
            self._set_state("idle", None)
            return None
        # Whatever comes next, look again soon: one execution done may mean another waits.
        self._start = True
        outcome = self._execute(execution)
        if outcome:
            self.finished += 1
        else:
            # The outcome is on flash but not yet accepted: try again in a while, not in a tight loop.
            self._start = False
            self._checked(_RETRY_MS)
        return outcome

    def _checked(self, wait_ms):
        self._last_check = time.ticks_ms()
        self._wait_ms = min(wait_ms, self.describe_every_ms)

    # ---- one execution -------------------------------------------------------------------------

    def _execute(self, execution):
        job_id = execution.get("jobId")
        number = execution.get("executionNumber")
        saved = store.read_json(self.state_path)
        checkpoint = None
        self._committed = None
        if isinstance(saved, dict) and saved.get("jobId") == job_id and saved.get("executionNumber") == number:
            final = saved.get("final")
            if final:
                # The handler already finished before a reset: report its outcome, never run it twice.
                return self._finish(job_id, number, final[0], final[1], saved.get("step"))
            checkpoint = saved.get("step")
            self._committed = saved.get("commit")
        else:
            details = execution.get("statusDetails")
            if execution.get("status") == "IN_PROGRESS" and isinstance(details, dict):
                checkpoint = details.get(_CHECKPOINT)
        document = execution.get("jobDocument")
        try:
            operation, params, reason = operation_of(document)
            # A step timeout in the document goes with every update, so that each progress renews it.
            minutes = document.get("stepTimeoutInMinutes") if hasattr(document, "get") else None
        except ValueError:
            # A large document stays on flash (a JobDocument) with only its outline checked: its values are
            # parsed here, and a broken one must not end the device loop.
            operation, reason = None, "job document is not JSON"
        handler = self.handlers.get(operation) if operation is not None else None
        if handler is None:
            if reason is None:
                reason = "operation %r is not allowed on this device" % (operation,)
            return self._finish(job_id, number, "REJECTED", clip_details({"reason": reason}))
        self._job = (job_id, number)
        self._operation = operation
        self._step = checkpoint
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 10080:
            minutes = None
        self._timeout = minutes
        self._suspect = False
        self._gone = None
        execution["checkpoint"] = checkpoint
        execution["operation"] = operation
        execution["input"] = params
        del document, params
        self._set_state("running", job_id)
        try:
            self._save(job_id, number, checkpoint)
            self._progress({"state": "resumed" if checkpoint is not None else "started"})
            result = handler(execution, self._progress)
            status, details = "SUCCEEDED", clip_details(result if result is not None else {})
        except Canceled:
            self._job = None
            store.remove(self.state_path)
            self._set_state("canceled", job_id)
            return "canceled"
        except Reboot:
            self._job = None
            self.reset()
            return None
        except Exception as e:  # any handler failure is the job's FAILED, not the device loop's end
            # Its type and clipped message, never a traceback.
            status, details = "FAILED", clip_details({"error": type(e).__name__, "message": str(e) or "no message"})
        self._job = None
        return self._finish(job_id, number, status, details, self._step)

    def _progress(self, details=None, step=None, commit=False):
        """progress(details, step=None, commit=False): IN_PROGRESS with clipped details; checkpoints step; raises
        Canceled.

        commit=True (with a step) is the handler's point of no return: a cancel is honoured up to this call, and
        never after it; from then on the handler is run to its end, after a reset too, even when the service no
        longer offers the execution (canceled with force meanwhile).
        """
        if self._job is None:
            raise Canceled("no execution is running")
        job_id, number = self._job
        if self._committed is None:
            if self._gone is None and self._suspect:
                # A notification no longer lists it: confirm before the handler is told.
                self._suspect = False
                try:
                    execution = self.jc.describe(job_id, number, include_document=False)
                    status = execution.get("status") if execution else None
                    if status != "IN_PROGRESS":
                        self._gone = "execution is %s" % status
                except JobsError as e:
                    if e.code in _GONE:
                        self._gone = "%s: %s" % (e.code, e.message)
                except (RequestTimeout, OSError):
                    pass
            if self._gone is not None:
                raise Canceled(self._gone)
        if step is not None:
            self._step = step
            if commit:
                self._committed = self._operation
            self._save(job_id, number, step)
        if self._step is not None:
            details = clip_details(details or {}, 9)
            details[_CHECKPOINT] = _clean(str(self._step), 1024) or "-"
        else:
            details = clip_details(details or {})
        try:
            self.jc.update(job_id, "IN_PROGRESS", details, execution_number=number, step_timeout_min=self._timeout)
        except JobsError as e:
            if e.code in _GONE and self._committed is None:
                self._gone = "%s: %s" % (e.code, e.message)
                raise Canceled(self._gone) from None
            # Progress is best effort (throttled, busy, ...): the work goes on, the outcome is what must arrive.
            _report("progress update failed", e)
        except (RequestTimeout, OSError) as e:
            _report("progress update failed", e)

    def _finish(self, job_id, number, status, details, step=None):
        # Saved first: after a reset before the answer, this outcome is reported and the handler not run again.
        self._save(job_id, number, step, [status, details])
        try:
            self.jc.update(job_id, status, details, execution_number=number)
            outcome = status.lower()
        except JobsError as e:
            state = e.execution_state or {}
            if e.code == "InvalidStateTransition" and state.get("status") == status and \
                    state.get("statusDetails") == details:
                # An earlier attempt got through (before a reset, or still queued in the client); its answer was lost.
                outcome = status.lower()
            elif e.code in _GONE:
                outcome = "canceled"
            elif e.code in _BUSY:
                _report("reporting %s failed" % status, e)
                return None
            else:
                # Sending the same again would be refused the same way: give up on this execution.
                _report("reporting %s refused" % status, e)
                outcome = status.lower()
        except (RequestTimeout, OSError) as e:
            # Kept on flash; start_next returns this execution again while it is IN_PROGRESS, and then it is sent.
            _report("reporting %s failed" % status, e)
            return None
        store.remove(self.state_path)
        self._set_state(outcome, job_id)
        return outcome

    def _save(self, job_id, number, step, final=None):
        state = {"jobId": job_id, "executionNumber": number, "step": step}
        if final is not None:
            state["final"] = final
        elif self._committed is not None:
            state["commit"] = self._committed
        store.write_json(self.state_path, state)

    # ---- notifications ---------------------------------------------------------------------------

    def _notified_next(self, payload):
        execution = payload.get("execution")
        if self._job is None:
            if execution:
                self._start = True
            return
        if not execution or execution.get("jobId") != self._job[0]:
            # In-progress executions come first, so another head means ours is gone: confirm at the next progress.
            self._suspect = True

    def _notified(self, payload):
        jobs = payload.get("jobs")
        if not isinstance(jobs, dict):
            return
        if self._job is None:
            if jobs:
                self._start = True
            return
        running = jobs.get("IN_PROGRESS") or ()
        if not any(isinstance(j, dict) and j.get("jobId") == self._job[0] for j in running):
            self._suspect = True

    def _set_state(self, name, job_id):
        if name == self.state and job_id == self.state_job:
            return
        self.state = name
        self.state_job = job_id
        if self.on_state is not None:
            try:
                self.on_state(name, job_id)
            except Exception as e:  # a broken LED must not stop the jobs
                _report("on_state raised", e)
