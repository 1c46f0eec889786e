"""Reconnects that lose nothing: the device loop through broker, service and link faults, on both runtimes."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any, Literal

import pytest

from device import PORTABLE, ROOT, RUNTIMES, run, start
from faultproxy import FaultProxy
from localjobs.broker import Mosquitto
from localjobs.model import thing_arn
from localjobs.mqtt_api import DROP
from localjobs.service import JobsService
from soak.cli import history_problems

WORKER = ROOT / "tools" / "soak" / "device.py"


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def own_broker() -> Iterator[Mosquitto]:
    # A broker of this test's own, since the test kills it.
    with Mosquitto() as broker:
        yield broker


def progress_problems(history: list[dict[str, Any]], steps: int, final: str) -> list[str]:
    return history_problems(history, steps, final)[1]


class Device:
    """The device loop as a subprocess, its output collected line by line."""

    def __init__(self, runtime: str, host: str, port: int, thing: str, *options: str,
                 env: dict[str, str] | None = None) -> None:
        self.process = start(runtime, WORKER, host, str(port), thing, *options, env=env)
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_line(self, prefix: str, timeout: float = 30) -> str:
        with self.changed:
            found = self.changed.wait_for(lambda: any(line.startswith(prefix) for line in self.lines), timeout)
            assert found, "no %r line in:\n%s" % (prefix, "\n".join(self.lines))
            return next(line for line in self.lines if line.startswith(prefix))

    def finish(self, timeout: float = 60) -> dict[str, int]:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.reader.join(5)
        done = self.wait_line("DONE", 1)
        assert self.process.returncode == 0, "\n".join(self.lines)
        return {k: int(v) for k, v in (part.split("=") for part in done.split()[1:])}


def test_broker_killed_and_restarted_mid_job(runtime, own_broker, thing_name):
    with JobsService(own_broker.host, own_broker.port) as service:
        service.create_thing(thing_name)
        service.create_job("job-k", [thing_arn(thing_name)], {"steps": 4, "final": "SUCCEEDED", "pause_ms": 150})
        device = Device(runtime, own_broker.host, own_broker.port, thing_name, "jobs=1")
        try:
            service.wait_until(lambda: len(service.history(thing_name, "job-k")) >= 3, timeout=20)
            own_broker.kill()
            own_broker.start()
            stats = device.finish()
        finally:
            device.process.kill()
        assert service.wait_subscribed(10)
        history = service.history(thing_name, "job-k")
        assert progress_problems(history, 4, "SUCCEEDED") == []
        assert stats["jobs"] == 1 and stats["loop_deaths"] == 0
        assert stats["connects"] >= 2 and stats["link_losses"] >= 1


def test_service_restarted_mid_job(runtime, mosquitto, jobs_service, thing_name):
    jobs_service.create_job("job-s", [thing_arn(thing_name)], {"steps": 3, "final": "FAILED", "pause_ms": 100})
    stopped = threading.Event()
    # stop() joins the service's network thread, so it cannot run on it: the interceptor hands it over.
    stopper = threading.Thread(target=jobs_service.stop)

    def stop_on_step_two(thing, api, topic, request, publish):
        # The service goes away with step 2 unanswered: the device must re-send it, once.
        if api == "update" and (request.get("statusDetails") or {}).get("step") == "2" and not stopped.is_set():
            stopper.start()
            stopped.set()
            return DROP
        return None

    jobs_service.interceptor = stop_on_step_two
    device = Device(runtime, mosquitto.host, mosquitto.port, thing_name, "jobs=1", "timeout_ms=1000")
    try:
        assert stopped.wait(20)
        stopper.join(10)
        jobs_service.interceptor = None
        jobs_service.start()
        stats = device.finish()
    finally:
        device.process.kill()
    assert progress_problems(jobs_service.history(thing_name, "job-s"), 3, "FAILED") == []
    assert stats["jobs"] == 1 and stats["loop_deaths"] == 0


LINK_SCENARIOS = PORTABLE / "link_scenarios.py"


@pytest.mark.parametrize("limit, heapsize", [("max_message=8192", None), ("max_message=1000000", "96k")],
                         ids=["over-the-limit", "memory-error"])
def test_message_that_does_not_fit_is_discarded(runtime, mosquitto, jobs_service, thing_name, limit, heapsize):
    jobs_service.create_job("job-o", [thing_arn(thing_name)], {"operation": "x"})
    huge = json.dumps({"clientToken": "x", "blob": "z" * 150000}).encode()

    def inject(thing, api, topic, request, publish):
        if api == "describe":
            publish(topic + "/accepted", huge)
        return None

    jobs_service.interceptor = inject
    done = run(runtime, LINK_SCENARIOS, "oversized", mosquitto.host, str(mosquitto.port), thing_name, limit,
               "job-o", heapsize=heapsize)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done["execution"] == {"jobId": "job-o", "status": "QUEUED"}
    if limit == "max_message=8192":
        assert done["reasons"] == ["message too large"] and done["oversized"] == 1
    elif runtime != "cpython":
        # Within the limit, so it went to a file; parsing its 150 KB field then ran out of heap.
        assert done["reasons"] == ["message too large to parse"]
    else:
        # CPython has the memory: the message is parsed whole and dropped for its foreign clientToken.
        assert done["reasons"] == ["no call waits for this response"] and done["oversized"] == 0
    assert done["pending"] == 1


# ---- faults on the link, at chosen points of a job, through a fault-injecting proxy ----------------------

def stall_until_reconnect(proxy: FaultProxy) -> None:
    """A half-open link: nothing moves until the device gives up on it and connects again."""
    proxy.stall()
    seen = proxy.accepted

    def resume_on_new_connection() -> None:
        proxy.wait_connections(seen + 1, 20)
        proxy.resume()

    threading.Thread(target=resume_on_new_connection, daemon=True).start()


FAULTS: dict[str, Any] = {
    "close": "close",
    "reset": "reset",
    "stall": stall_until_reconnect,
    "delay": lambda proxy: proxy.delay(0.1),  # well under response_ms: slow, not dead
    "cut": lambda proxy: proxy.cut_after(7, "down"),
}
# Where in a job the fault strikes: (pattern, direction, before the chunk is forwarded).
POINTS: dict[str, tuple[bytes, Literal["up", "down"], bool]] = {
    "before-start-next-accepted": (b"start-next/accepted", "down", True),
    "between-progress-updates": (b'"step":"2"', "up", False),
    "after-terminal-update-sent": (b'"status":"SUCCEEDED"', "up", False),
}


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("fault", FAULTS)
def test_link_fault_loses_nothing(runtime, mosquitto, jobs_service, thing_name, fault, point):
    pattern, direction, before = POINTS[point]
    jobs_service.create_job("job-f", [thing_arn(thing_name)], {"steps": 3, "final": "SUCCEEDED"})
    with FaultProxy(mosquitto.host, mosquitto.port) as proxy:
        proxy.on_pattern(pattern, direction, FAULTS[fault], before=before)
        device = Device(runtime, proxy.host, proxy.port, thing_name, "jobs=1", "timeout_ms=2000",
                        "response_ms=400", "ping_ms=400", "floor_ms=50", "ceiling_ms=200")
        try:
            stats = device.finish(timeout=60)
        finally:
            device.process.kill()
        assert any(event.startswith("pattern") for event in proxy.events), proxy.events
    assert progress_problems(jobs_service.history(thing_name, "job-f"), 3, "SUCCEEDED") == []
    assert stats["jobs"] == 1 and stats["loop_deaths"] == 0, "\n".join(device.lines)
    if fault != "delay":
        assert stats["link_losses"] >= 1 and stats["connects"] >= 2, "\n".join(device.lines)


class OneAnswerBroker:
    """A broker that reads the CONNECT, answers it with `reply` (maybe nothing, maybe short) and hangs up."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection, connection.makefile("rb") as incoming:
            incoming.read(1)  # CONNECT's first byte, then its remaining length
            size, shift = 0, 0
            while True:
                byte = incoming.read(1)[0]
                size |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            incoming.read(size)
            connection.sendall(self.reply)
        self.listener.close()


@pytest.mark.parametrize("reply, cause", [
    (b"", "IndexError"), (b"\x20\x02", "IndexError"), (b"\x90\x03\x00\x01", "AssertionError"),
    (b"\x20\x02\x00\x05", "MQTTException"),
], ids=["hang-up", "short-connack", "not-a-connack", "refused"])
def test_failed_first_connect_raises_oserror_whatever_umqtt_raised(runtime, reply, cause):
    # What a board's main (and the soak device) catch around the first connect: power cuts found a reboot
    # into a link that hangs up mid-CONNACK killing the device with umqtt's IndexError.
    broker = OneAnswerBroker(reply)
    done = run(runtime, PORTABLE / "connect_scenario.py", "127.0.0.1", str(broker.port))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done["outcome"]["type"] == "OSError", done["outcome"]
    assert done["outcome"]["message"].startswith("connect failed: " + cause), done["outcome"]


def test_wifi_drop_waits_for_the_link_then_carries_on(runtime, mosquitto, jobs_service, thing_name, tmp_path):
    link = tmp_path / "link"
    link.write_text("up")
    jobs_service.create_job("job-w", [thing_arn(thing_name)], {"steps": 4, "final": "REJECTED", "pause_ms": 150})
    # CPython: the shim's network.WLAN, whose link takes the sockets down with it. The unix port has no
    # network module: a WLAN that reads the same file, and the proxy resets the socket as the link goes.
    wlan, env = ("network", {"MPSHIM_LINK_FILE": str(link)}) if runtime == "cpython" else (str(link), None)
    with FaultProxy(mosquitto.host, mosquitto.port) as proxy:
        device = Device(runtime, proxy.host, proxy.port, thing_name, "jobs=1", "wlan=" + wlan, "wlan_ms=200",
                        "response_ms=400", "ping_ms=400", "floor_ms=50", "ceiling_ms=200", env=env)
        try:
            jobs_service.wait_until(lambda: len(jobs_service.history(thing_name, "job-w")) >= 3, timeout=20)
            link.write_text("down")
            if runtime != "cpython":
                proxy.reset()
            device.wait_line("ERROR connect failed WiFi did not come up")  # the radio was asked, and waited for
            accepted_while_down = proxy.accepted
            link.write_text("up")
            stats = device.finish()
        finally:
            device.process.kill()
        assert proxy.accepted > accepted_while_down
    assert progress_problems(jobs_service.history(thing_name, "job-w"), 4, "REJECTED") == []
    assert stats["wifi_waits"] >= 1 and stats["link_losses"] >= 1 and stats["loop_deaths"] == 0


def test_calls_keep_their_timeout_while_the_broker_is_unreachable(runtime, mosquitto, thing_name):
    with FaultProxy(mosquitto.host, mosquitto.port) as proxy:
        device = start(runtime, LINK_SCENARIOS, "call_while_unreachable", proxy.host, str(proxy.port), thing_name,
                       "timeout_ms=1000", "response_ms=300")
        try:
            assert device.stdout is not None and device.stdin is not None
            assert device.stdout.readline().strip() == "READY"
            proxy.refuse(True)
            proxy.reset()
            out, err = device.communicate("go\n", timeout=30)
        finally:
            device.kill()
    assert device.returncode == 0, out + err
    results = {line.split(" ", 2)[1]: json.loads(line.split(" ", 2)[2]) for line in out.splitlines()
               if line.startswith("RESULT ")}
    assert results["outcome"] == "no response to get within 1000 ms"
    # Reconnect attempts inside the wait are bounded too: at most one connect's worth past the deadline.
    assert 1000 <= results["elapsed_ms"] < 1000 + 2 * 300 + 500


@pytest.mark.timeout(300)
def test_short_soak_loses_and_doubles_nothing(runtime):
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "iotjobs-soak"), "--jobs", "6", "--runtime", runtime,
                           "--seed", "3", "--fault-every", "0.2", "0.6"],
                          capture_output=True, text=True, timeout=280)
    summary = done.stdout.strip().splitlines()[-1]
    counts = dict(part.split("=") for part in summary.removeprefix("soak: ").split())
    assert done.returncode == 0, done.stdout + done.stderr
    assert counts["jobs"] == "6" and int(counts["succeeded"]) + int(counts["failed"]) == 6, summary
    assert (counts["lost"], counts["doubled"], counts["loop_deaths"]) == ("0", "0", "0"), done.stdout
    assert int(counts["faults"]) >= 3, summary


@pytest.mark.timeout(300)
def test_short_soak_with_power_cuts_runs_each_job_once(runtime):
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "iotjobs-soak"), "--jobs", "6", "--runtime", runtime,
                           "--seed", "4", "--fault-every", "0.3", "0.9", "--power-cuts", "4"],
                          capture_output=True, text=True, timeout=280)
    summary = done.stdout.strip().splitlines()[-1]
    counts = dict(part.split("=") for part in summary.removeprefix("soak: ").split())
    assert done.returncode == 0, done.stdout + done.stderr
    # Every job ended once, as planned, through four SIGKILLs and restarts on the same flash.
    assert counts["jobs"] == "6" and int(counts["succeeded"]) + int(counts["failed"]) == 6, summary
    assert counts["failed"] == counts["planned_failed"], summary
    assert (counts["lost"], counts["doubled"], counts["loop_deaths"]) == ("0", "0", "0"), done.stdout
    assert counts["power_cuts"] == "4", done.stdout
    cuts = next(line for line in done.stdout.splitlines() if line.startswith("soak: power cuts"))
    assert len(cuts.split("): ", 1)[1].split(";")[0].split()) == 4, cuts


def test_offline_updates_queue_in_order_and_the_full_queue_is_refused(runtime, mosquitto, jobs_service, thing_name):
    for job_id in ("job-a", "job-b", "job-c"):
        jobs_service.create_job(job_id, [thing_arn(thing_name)], {"operation": "x"})
    with FaultProxy(mosquitto.host, mosquitto.port) as proxy:
        device = start(runtime, LINK_SCENARIOS, "outbox", proxy.host, str(proxy.port), thing_name,
                       "timeout_ms=300", "response_ms=300", "job-a", "job-b", "job-c")
        try:
            assert device.stdout is not None and device.stdin is not None
            assert device.stdout.readline().strip() == "READY"
            proxy.refuse(True)
            proxy.reset()
            device.stdin.write("offline\n")
            device.stdin.flush()
            lines: list[str] = []
            while not lines or lines[-1] != "OFFLINE DONE":
                lines.append(device.stdout.readline().strip())
            proxy.refuse(False)
            out, err = device.communicate("online\n", timeout=60)
        finally:
            device.kill()
    assert device.returncode == 0, "\n".join(lines) + out + err
    outcomes = json.loads(next(line for line in lines if line.startswith("RESULT outcomes")).split(" ", 2)[2])
    # Progress never sent is replaced by the job's next update (only the latest matters); terminal updates are
    # all kept, even two for one job; a fifth owed update does not fit a queue of four.
    assert outcomes == ["queued 1", "queued 1", "queued 1", "queued 2", "queued 3", "queued 4", "OutboxFull"]
    assert "RESULT outbox_left 0" in out
    a = [(h["status"], h["statusDetails"]) for h in jobs_service.history(thing_name, "job-a")]
    assert a == [("QUEUED", {}), ("SUCCEEDED", {"p": "done"})]
    assert [h["status"] for h in jobs_service.history(thing_name, "job-b")] == ["QUEUED", "FAILED"]
    # Sent in order: job-c's REJECTED first; its SUCCEEDED then comes back InvalidStateTransition (reported).
    assert [h["status"] for h in jobs_service.history(thing_name, "job-c")] == ["QUEUED", "REJECTED"]
    assert "queued update rejected" in out


def test_terminal_update_applied_before_the_link_died_succeeds_once(runtime, mosquitto, jobs_service, thing_name):
    jobs_service.create_job("job-t", [thing_arn(thing_name)], {"operation": "x"})
    with FaultProxy(mosquitto.host, mosquitto.port) as proxy:
        # The update reaches the service and is applied; the link dies with its answer on the way back.
        proxy.on_pattern(b"/update/accepted", "down", "reset", before=True)
        done = run(runtime, LINK_SCENARIOS, "terminal_once", proxy.host, str(proxy.port), thing_name,
                   "timeout_ms=5000", "response_ms=300", "ping_ms=300")
    assert done.returncode == 0, done.stdout + done.stderr
    # Sent again after the reconnect, answered InvalidStateTransition with the state asked for: a success.
    assert done["done"]["state"]["status"] == "SUCCEEDED"
    assert done["done"]["resent"] >= 1 and done["done"]["link_losses"] >= 1
    assert [h["status"] for h in jobs_service.history(thing_name, "job-t")] == ["QUEUED", "IN_PROGRESS", "SUCCEEDED"]


def resend_after_the_cut(service: JobsService, proxy: FaultProxy, first_arrival: Any) -> list[dict[str, Any]]:
    """An interceptor: the device's first update gets first_arrival(request), no answer, and a cut link."""
    seen: list[dict[str, Any]] = []

    def intercept(thing, api, topic, request, publish):
        if api != "update":
            return None
        seen.append(request)
        if len(seen) > 1:
            return None  # the copy sent again after the reconnect: the service answers as it stands
        first_arrival(thing, request)
        proxy.reset()
        return DROP

    service.interceptor = intercept
    return seen


@pytest.mark.parametrize("status, details", [("IN_PROGRESS", None), ("IN_PROGRESS", {"pct": "60"}),
                                             ("SUCCEEDED", {"result": "ok"})])
def test_resent_update_the_service_had_applied_succeeds_once(runtime, mosquitto, jobs_service, thing_name, status,
                                                             details):
    jobs_service.create_job("job-a", [thing_arn(thing_name)], {"operation": "x"})
    with FaultProxy(mosquitto.host, mosquitto.port) as proxy:
        # Applied as sent, its answer lost with the link.
        seen = resend_after_the_cut(jobs_service, proxy, lambda thing, request: jobs_service.model.update(
            thing, "job-a", request["status"], request.get("statusDetails"), request.get("expectedVersion")))
        done = run(runtime, LINK_SCENARIOS, "resend", proxy.host, str(proxy.port), thing_name, "timeout_ms=10000",
                   status, json.dumps(details) if details is not None else "-")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(seen) == 2 and seen[0] == seen[1] and done["resent"] >= 1
    assert seen[0]["expectedVersion"] == 2
    assert done["update"] == {"state": {"status": status, "statusDetails": details or {}, "versionNumber": 3}}
    history = jobs_service.history(thing_name, "job-a")
    assert [(h["status"], h["statusDetails"]) for h in history] == [
        ("QUEUED", {}), ("IN_PROGRESS", {}), (status, details or {})]


@pytest.mark.parametrize("status, details, other", [("IN_PROGRESS", {"pct": "60"}, {"pct": "55"}),
                                                    ("SUCCEEDED", {"result": "ok"}, {"result": "theirs"})])
def test_resent_update_refused_after_another_writer_moved_the_version_raises(runtime, mosquitto, jobs_service,
                                                                             thing_name, status, details, other):
    jobs_service.create_job("job-b", [thing_arn(thing_name)], {"operation": "x"})
    with FaultProxy(mosquitto.host, mosquitto.port) as proxy:
        # Lost on its way; meanwhile another writer moved the execution to the same status, other details.
        seen = resend_after_the_cut(jobs_service, proxy, lambda thing, request: jobs_service.model.update(
            thing, "job-b", status, other))
        done = run(runtime, LINK_SCENARIOS, "resend", proxy.host, str(proxy.port), thing_name, "timeout_ms=10000",
                   status, json.dumps(details))
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(seen) == 2 and done["resent"] >= 1
    code = "VersionMismatch" if status == "IN_PROGRESS" else "InvalidStateTransition"
    assert done["update"] == {"code": code, "execution_state": {"status": status, "statusDetails": other,
                                                                 "versionNumber": 3}}
    history = jobs_service.history(thing_name, "job-b")
    assert [(h["status"], h["statusDetails"]) for h in history] == [("QUEUED", {}), ("IN_PROGRESS", {}),
                                                                    (status, other)]
