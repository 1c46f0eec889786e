"""iotjobs-deploy against the virtual board with the real mpremote: copy, verify, run a job, repair, refuse."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import deploy
from localjobs import certs
from localjobs.broker import Mosquitto
from localjobs.certs import CertificateFolder
from localjobs.model import thing_arn
from localjobs.service import JobsService
from mpylib import MICROPYTHON_RUNTIMES
from vboard import VirtualBoard

BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"
LIB_FILES = len(list(deploy.LIBRARY.glob("*.py"))) + len(list(deploy.COMMON.glob("*.py")))


def run_deploy(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "iotjobs-deploy"), *args], capture_output=True, text=True, timeout=timeout)


def mpremote(board: VirtualBoard, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "mpremote"), "connect", board.path, *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def board(tmp_path: Path) -> Iterator[VirtualBoard]:
    # Deployed code runs at this heap too: the library, runner and handlers need ~60k of x64 objects.
    with VirtualBoard(tmp_path / "board", heapsize="160k") as vb:
        yield vb


def write_config(tmp_path: Path, **settings: Any) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(settings))
    return path


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_deploy_then_the_deployed_main_runs_a_job(board: VirtualBoard, tmp_path: Path, mosquitto: Mosquitto,
                                                   jobs_service: JobsService, thing_name: str,
                                                   create_job: Callable[..., dict[str, Any]]) -> None:
    config = write_config(tmp_path, endpoint=mosquitto.host, port=mosquitto.port, thing=thing_name, max_jobs=1)
    started = time.monotonic()
    done = run_deploy("--board", "unix", "--port", board.path, "--config", str(config))
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    # The unix port has no umqtt.simple, so the deploy brings it: library, common module, main, board, config.
    expected = LIB_FILES + 4
    assert "[2/%d] lib/iotjobs/client.mpy" % expected in done.stdout
    assert "%d copied" % expected in done.stdout and "all %d files verified" % expected in done.stdout
    assert (board.directory / "lib" / "umqtt" / "simple.mpy").is_file()
    assert (board.directory / "main.py").read_bytes() == (deploy.BOARDS / "unix" / "main.py").read_bytes()
    assert json.loads((board.directory / "config.json").read_text())["thing"] == thing_name
    print("deploy of %d files to the virtual board: %.1f s" % (expected, took))

    runner = subprocess.Popen([str(BIN / "mpremote"), "connect", board.path, "exec", "import main"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        create_job(jobs_service, "greet-1", thing_name, {"operation": "greet", "steps": 2, "message": "hi"})
        jobs_service.wait_until(lambda: jobs_service.status(thing_name, "greet-1") == "SUCCEEDED", timeout=20)
        output, _ = runner.communicate(timeout=20)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 0, output
    assert "board: done: 1 job(s)" in output
    history = jobs_service.history(thing_name, "greet-1")
    assert [h["statusDetails"] for h in history][-1] == {"result": "hi"}


def test_a_board_with_iotjobs_frozen_in_gets_no_library_and_runs_a_job(
        tmp_path: Path, mosquitto: Mosquitto, jobs_service: JobsService, thing_name: str,
        create_job: Callable[..., dict[str, Any]]) -> None:
    # A copy from before the firmware had it frozen: never imported (.frozen comes first), so it goes.
    old = tmp_path / "board" / "lib" / "iotjobs"
    old.mkdir(parents=True)
    (old / "client.mpy").write_bytes(b"M\x06 from an older deploy")
    config = write_config(tmp_path, endpoint=mosquitto.host, port=mosquitto.port, thing=thing_name, max_jobs=1)
    # An ESP32's ~110 KB heap is ~128k of this 32-bit port's (its interpreter state is larger); less than unix64's.
    with VirtualBoard(tmp_path / "board", heapsize="128k", runtime="esp32like") as board:
        done = run_deploy("--board", "unix", "--port", board.path, "--config", str(config))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "iotjobs is frozen into this board's firmware: the library is not copied" in done.stdout
        # umqtt.simple is frozen too: only the board's module, main.py, board.json and config.json go.
        expected = len(list(deploy.COMMON.glob("*.py"))) + 3
        assert "deploy: %d copied" % expected in done.stdout and "1 removed" in done.stdout, done.stdout
        assert list(old.iterdir()) == [] and not (board.directory / "lib" / "umqtt").exists()
        runner = subprocess.Popen([str(BIN / "mpremote"), "connect", board.path, "exec", "import main"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            create_job(jobs_service, "greet-frozen", thing_name, {"operation": "greet", "message": "frozen"})
            jobs_service.wait_until(lambda: jobs_service.status(thing_name, "greet-frozen") == "SUCCEEDED",
                                    timeout=20)
            output, _ = runner.communicate(timeout=20)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
        assert "board: done: 1 job(s)" in output, output
        again = run_deploy("--board", "unix", "--port", board.path, "--config", str(config))
        assert "deploy: 0 copied (0 B)" in again.stdout, again.stdout + again.stderr


def test_help_says_a_frozen_library_is_not_copied() -> None:
    done = run_deploy("--help")
    assert "iotjobs frozen" in " ".join(done.stdout.split()) and "firmware/manifest.py" in done.stdout


def test_a_reboot_job_resets_the_virtual_board_and_succeeds_after_it(board: VirtualBoard, tmp_path: Path,
                                                                     mosquitto: Mosquitto, jobs_service: JobsService,
                                                                     thing_name: str,
                                                                     create_job: Callable[..., dict[str, Any]]) -> None:
    config = write_config(tmp_path, endpoint=mosquitto.host, port=mosquitto.port, thing=thing_name, max_jobs=1)
    done = run_deploy("--board", "unix", "--port", board.path, "--config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    create_job(jobs_service, "reboot-1", thing_name, {"operation": "reboot"})
    # The unix board's reset ends the process; the virtual board starts it again and runs main.py, as at power-on.
    started = mpremote(board, "exec", "--no-follow", "import main")
    assert started.returncode == 0, started.stdout + started.stderr
    jobs_service.wait_until(lambda: jobs_service.status(thing_name, "reboot-1") == "SUCCEEDED", timeout=20)
    history = [(h["status"], h["statusDetails"]) for h in jobs_service.history(thing_name, "reboot-1")]
    assert history[-3:] == [("IN_PROGRESS", {"state": "rebooting", "checkpoint": "rebooting"}),
                            ("IN_PROGRESS", {"state": "resumed", "checkpoint": "rebooting"}),
                            ("SUCCEEDED", {"rebooted": "true"})]
    # The checkpoint file goes once the device has the service's answer to its outcome.
    state = board.directory / "iotjobs_state.json"
    deadline = time.monotonic() + 5
    while state.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not state.exists()


def test_a_second_deploy_copies_nothing(board: VirtualBoard, tmp_path: Path) -> None:
    config = write_config(tmp_path, endpoint="127.0.0.1", port=1883, thing="t")
    first = run_deploy("--board", "unix", "--port", board.path, "--config", str(config))
    assert first.returncode == 0, first.stdout + first.stderr
    before = {p: os.stat(board.directory / p).st_mtime_ns for p in files(board.directory)}
    second = run_deploy("--board", "unix", "--port", board.path, "--config", str(config))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "deploy: 0 copied (0 B)" in second.stdout
    assert "[1/" not in second.stdout
    assert {p: os.stat(board.directory / p).st_mtime_ns for p in files(board.directory)} == before


def test_a_corrupted_or_missing_file_is_replaced_and_a_stray_source_removed(board: VirtualBoard,
                                                                           tmp_path: Path) -> None:
    config = write_config(tmp_path, endpoint="127.0.0.1", port=1883, thing="t")
    assert run_deploy("--board", "unix", "--port", board.path, "--config", str(config)).returncode == 0
    good = files(board.directory)
    lib = board.directory / "lib" / "iotjobs"
    (lib / "client.mpy").write_bytes(good["lib/iotjobs/client.mpy"][:-1] + b"\x00")
    (lib / "topics.mpy").unlink()
    # A source left by an earlier copy would be imported instead of the .mpy.
    (lib / "runner.py").write_text("raise ImportError('stale')\n")
    done = run_deploy("--board", "unix", "--port", board.path, "--config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[1/2] lib/iotjobs/client.mpy" in done.stdout and "[2/2] lib/iotjobs/topics.mpy" in done.stdout
    assert "removed lib/iotjobs/runner.py" in done.stdout
    assert "deploy: 2 copied" in done.stdout and "1 removed" in done.stdout
    assert files(board.directory) == good


def test_dry_run_prints_the_plan_and_touches_nothing(board: VirtualBoard, tmp_path: Path) -> None:
    config = write_config(tmp_path, endpoint="127.0.0.1", port=1883, thing="t", wifi={"ssid": "lab", "password": "x"})
    done = run_deploy("--board", "esp32", "--port", board.path, "--config", str(config), "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    staged = deploy.STAGING / "esp32" / "lib" / "iotjobs" / "runner.mpy"
    line = next(x for x in done.stdout.splitlines() if "lib/iotjobs/runner.mpy" in x)
    assert "%d B" % staged.stat().st_size in line and deploy.sha256(staged) in line
    assert "main.py" in done.stdout and "config.json" in done.stdout
    assert files(board.directory) == {}
    assert "MicroPython" not in done.stdout  # the board was not even asked


def test_esp32_library_is_compiled_for_its_architecture() -> None:
    done = run_deploy("--board", "esp32c3", "--no-config", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    header = (deploy.STAGING / "esp32c3" / "lib" / "iotjobs" / "client.mpy").read_bytes()[:4]
    assert header[:2] == b"M\x06"


def test_pem_files_become_der_that_the_board_loads(board: VirtualBoard, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=my-thing", "-keyout", str(certs / "device-private.pem.key"),
                    "-out", str(certs / "device-certificate.pem.crt")], check=True, capture_output=True)
    (certs / "AmazonRootCA1.pem").write_bytes((certs / "device-certificate.pem.crt").read_bytes())
    config = write_config(tmp_path, endpoint="example-ats.iot.eu-west-1.amazonaws.com", port=8883, thing="t",
                          cert="device-certificate.pem.crt", key="device-private.pem.key", ca="AmazonRootCA1.pem")
    done = run_deploy("--board", "unix", "--port", board.path, "--config", str(config), "--certs", str(certs))
    assert done.returncode == 0, done.stdout + done.stderr
    installed = json.loads((board.directory / "config.json").read_text())
    assert (installed["cert"], installed["key"], installed["ca"]) == ("certs/cert.der", "certs/key.der", "certs/ca.der")
    check = ("import ssl\nr = lambda p: open(p, 'rb').read()\nc = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
             "c.load_cert_chain(r('certs/cert.der'), r('certs/key.der'))\n"
             "c.load_verify_locations(cadata=r('certs/ca.der'))\nprint('loaded')")
    loaded = mpremote(board, "exec", check)
    assert loaded.stdout.strip() == "loaded", loaded.stdout + loaded.stderr


def test_umqtt_is_left_alone_when_the_board_has_one(board: VirtualBoard, tmp_path: Path) -> None:
    # Outside lib/umqtt/ it stands for the copy frozen into ESP32 firmware.
    (board.directory / "umqtt").mkdir()
    (board.directory / "umqtt" / "simple.py").write_bytes(deploy.UMQTT.read_bytes())
    done = run_deploy("--board", "unix", "--port", board.path, "--no-config")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (board.directory / "lib" / "umqtt").exists()
    assert not (board.directory / "config.json").exists()


def test_a_missing_port_is_a_clear_error() -> None:
    done = run_deploy("--board", "esp32", "--no-config", "--port", "/dev/ttyUSB-none")
    assert done.returncode == 2
    assert "no serial port /dev/ttyUSB-none" in done.stderr


def test_a_board_that_does_not_answer_is_a_clear_error() -> None:
    master, slave = os.openpty()
    try:
        done = run_deploy("--board", "esp32", "--no-config", "--port", os.ttyname(slave), "--timeout", "2")
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 2
    assert "did not answer within 2 s" in done.stderr


def test_unknown_board_and_missing_config_are_clear_errors(tmp_path: Path) -> None:
    done = run_deploy("--board", "esp8266", "--dry-run")
    assert done.returncode == 2 and "unknown board 'esp8266'" in done.stderr and "esp32c3" in done.stderr
    done = run_deploy("--board", "esp32", "--config", str(tmp_path / "nope.json"), "--dry-run")
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_a_config_that_is_not_json_is_one_line_with_its_line_and_column(board: VirtualBoard, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"endpoint": "127.0.0.1",\n "thing": }\n')
    done = run_deploy("--board", "unix", "--port", board.path, "--config", str(config))
    assert done.returncode == 2
    assert done.stderr == "iotjobs-deploy: %s:2:11: not JSON: Expecting value\n" % config
    assert files(board.directory) == {}


@pytest.mark.parametrize("settings, message", [
    ({"endpoint": "127.0.0.1", "thing": "my thing"}, '"thing" must be a thing name'),
    ({"endpoint": "https://x-ats.iot.eu-west-1.amazonaws.com", "thing": "t"}, '"endpoint" must be the broker'),
    ({"endpoint": "127.0.0.1:1883", "thing": "t"}, "without scheme or port"),
    ({"endpoint": "127.0.0.1", "port": "1883", "thing": "t"}, '"port" must be a number 1-65535'),
    ({"thing": "t"}, '"endpoint" must be'),
    ({"endpoint": "h", "thing": "t", "cert": "c.pem"}, '"cert", "key" and "ca" go together'),
    ({"endpoint": "h", "thing": "t", "cert": "c.pem", "key": "k.pem", "ca": "ca.pem"}, "c.pem, which does not exist"),
], ids=["thing", "scheme", "port-in-endpoint", "port", "no-endpoint", "cert-alone", "missing-cert"])
def test_a_config_is_checked_before_anything_is_copied(board: VirtualBoard, tmp_path: Path, settings: dict[str, Any],
                                                        message: str) -> None:
    done = run_deploy("--board", "unix", "--port", board.path, "--config", str(write_config(tmp_path, **settings)))
    assert done.returncode == 2 and message in done.stderr, done.stdout + done.stderr
    assert len(done.stderr.splitlines()) == 1 and "deploy:" not in done.stdout
    assert files(board.directory) == {}


def test_an_esp32_config_needs_wifi(tmp_path: Path) -> None:
    config = write_config(tmp_path, endpoint="h", thing="t")
    done = run_deploy("--board", "esp32s3", "--config", str(config), "--dry-run")
    assert done.returncode == 2 and '"wifi" must be {"ssid": ..., "password": ...}' in done.stderr


def test_a_missing_default_config_is_an_error_unless_no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # A boards/ without config.json (the real one may have a user's own).
    boards = tmp_path / "boards"
    shutil.copytree(deploy.BOARDS / "unix", boards / "unix", ignore=shutil.ignore_patterns("config.json", "certs"))
    monkeypatch.setattr(deploy, "BOARDS", boards)
    assert deploy.main(["--board", "unix", "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "config file %s does not exist" % (boards / "unix" / "config.json") in error and "--no-config" in error
    assert deploy.main(["--board", "unix", "--dry-run", "--no-config"]) == 0
    plan = capsys.readouterr().out
    assert "main.py" in plan and "config.json" not in plan


def test_a_board_of_another_platform_is_refused_unless_forced(board: VirtualBoard, tmp_path: Path) -> None:
    config = write_config(tmp_path, endpoint="h", thing="t", wifi={"ssid": "lab", "password": "x"})
    done = run_deploy("--board", "esp32", "--port", board.path, "--config", str(config))
    assert done.returncode == 2
    assert "says it is 'linux', but --board esp32 is for 'esp32' boards" in done.stderr and "--force" in done.stderr
    assert files(board.directory) == {}
    forced = run_deploy("--board", "esp32", "--port", board.path, "--config", str(config), "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert json.loads((board.directory / "board.json").read_text())["platform"] == "esp32"


def test_a_config_job_then_a_redeploy_keeps_both(board: VirtualBoard, tmp_path: Path, mosquitto: Mosquitto,
                                                 jobs_service: JobsService, thing_name: str,
                                                 create_job: Callable[..., dict[str, Any]]) -> None:
    config = write_config(tmp_path, endpoint=mosquitto.host, port=mosquitto.port, thing=thing_name, max_jobs=1,
                          describe_every_ms=60000)
    assert run_deploy("--board", "unix", "--port", board.path, "--config", str(config)).returncode == 0
    create_job(jobs_service, "config-1", thing_name,
               {"operation": "config", "settings": {"describe_every_ms": 30000, "site": "lab-2"}})
    ran = mpremote(board, "exec", "import main")
    assert "board: done: 1 job(s)" in ran.stdout, ran.stdout + ran.stderr
    settings = json.loads((board.directory / "settings.json").read_text())
    assert settings == {"describe_every_ms": 30000, "site": "lab-2"}

    # The user changes config.json and deploys again: theirs replaces the old one, the job's settings stay.
    config = write_config(tmp_path, endpoint=mosquitto.host, port=mosquitto.port, thing=thing_name, max_jobs=2,
                          describe_every_ms=45000)
    again = run_deploy("--board", "unix", "--port", board.path, "--config", str(config))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "settings.json (from config jobs) stays" in again.stdout and "describe_every_ms, site" in again.stdout
    assert json.loads((board.directory / "settings.json").read_text()) == settings
    assert json.loads((board.directory / "config.json").read_text())["max_jobs"] == 2
    # What the board runs with: the deploy's config, the job's settings laid over it.
    seen = mpremote(board, "exec", "import iotboard, json; print(json.dumps(iotboard.load_config('')))")
    effective = json.loads(seen.stdout)
    assert effective["max_jobs"] == 2 and effective["describe_every_ms"] == 30000 and effective["site"] == "lab-2"


@pytest.mark.parametrize("mpy, message", [(5, "loads .mpy v5, but this mpy-cross emits v6"),
                                          (6 | (3 << 8), None)])
def test_a_micropython_too_old_for_our_mpy_is_refused(mpy: int, message: str | None) -> None:
    found = {"version": [1, 18, 0], "mpy": mpy, "heap": 10**6}
    if message is None:
        deploy.check_runtime(found, {"heap_kb": 100}, "/dev/x")
        return
    with pytest.raises(deploy.DeployError, match=message):
        deploy.check_runtime(found, {"micropython_min": "1.22"}, "/dev/x")


@pytest.mark.parametrize("runtime", MICROPYTHON_RUNTIMES)
def test_the_deployed_board_runs_a_job_over_mutual_tls_from_pem_files(tmp_path: Path, tls_ca: CertificateFolder,
                                                                      runtime: str) -> None:
    # The folder `iotjobs-local certs` makes, PEM files as AWS IoT hands them out; the board gets them as DER.
    certs.issue_thing(tls_ca.root, "my-thing")
    with JobsService("127.0.0.1", 0, tls=tls_ca.root) as service, \
            VirtualBoard(tmp_path / "board", heapsize="160k", runtime=runtime) as board:
        port = service.mqtts[1]
        config = write_config(tmp_path, endpoint="localhost", port=port, thing="my-thing", max_jobs=1,
                              cert="things/my-thing/cert.pem", key="things/my-thing/key.pem", ca="ca.pem")
        done = run_deploy("--board", "unix", "--port", board.path, "--config", str(config),
                          "--certs", str(tls_ca.root))
        assert done.returncode == 0, done.stdout + done.stderr
        service.create_thing("my-thing")
        service.create_job("greet-tls", [thing_arn("my-thing")], {"operation": "greet", "message": "over TLS"})
        ran = mpremote(board, "exec", "import main")
        assert "board: connected to localhost:%d as my-thing" % port in ran.stdout, ran.stdout + ran.stderr
        assert "board: done: 1 job(s)" in ran.stdout
        assert service.status("my-thing", "greet-tls") == "SUCCEEDED"


def test_a_config_on_https_needs_the_certificate_files_and_a_known_transport(tmp_path: Path) -> None:
    config = write_config(tmp_path, transport="https", endpoint="localhost", thing="my-thing")
    done = run_deploy("--board", "unix", "--config", str(config), "--dry-run")
    assert done.returncode == 2 and '"transport": "https" needs "cert", "key" and "ca"' in done.stderr
    config = write_config(tmp_path, transport="coap", endpoint="localhost", thing="my-thing")
    done = run_deploy("--board", "unix", "--config", str(config), "--dry-run")
    assert done.returncode == 2 and "\"transport\" is \"mqtt\" or \"https\", not 'coap'" in done.stderr


def test_the_deployed_board_runs_a_job_over_https(tmp_path: Path, tls_ca: CertificateFolder) -> None:
    # "transport": "https": no connection kept, the runner polls the device API with the thing's certificate.
    certs.issue_thing(tls_ca.root, "my-thing")
    with JobsService("127.0.0.1", 0, tls=tls_ca.root, https=("127.0.0.1", 0)) as service, \
            VirtualBoard(tmp_path / "board", heapsize="160k") as board:
        port = int(service.https_url.rsplit(":", 1)[1])
        config = write_config(tmp_path, transport="https", endpoint="localhost", port=port, thing="my-thing",
                              max_jobs=1, describe_every_ms=200, cert="things/my-thing/cert.pem",
                              key="things/my-thing/key.pem", ca="ca.pem")
        done = run_deploy("--board", "unix", "--port", board.path, "--config", str(config),
                          "--certs", str(tls_ca.root))
        assert done.returncode == 0, done.stdout + done.stderr
        service.create_thing("my-thing")
        service.create_job("greet-https", [thing_arn("my-thing")], {"operation": "greet", "message": "over HTTPS"})
        ran = mpremote(board, "exec", "import main")
        assert "board: polling https://localhost:%d as my-thing every 200 ms" % port in ran.stdout, \
            ran.stdout + ran.stderr
        assert "board: done: 1 job(s)" in ran.stdout
        assert service.status("my-thing", "greet-https") == "SUCCEEDED"
        assert service.describe_job_execution("my-thing", "greet-https")["statusDetails"] == {"result": "over HTTPS"}
