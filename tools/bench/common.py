"""What the benchmark parts share: running device scripts, printing tables, writing results under build/bench."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mpylib import BIN, ROOT, device_command

BENCH = ROOT / "tools" / "bench"
OUT = ROOT / "build" / "bench"


def run_device(runtime: str, script: str, args: list[str], heapsize: str = "128k", timeout: float = 60,
               path: str | None = None, cwd: Path = ROOT) -> tuple[bool, dict[str, Any], str]:
    """Run tools/bench/SCRIPT as a device; (exited 0, its RESULT lines by key, its output for errors).

    `path` replaces MICROPYPATH (to import the library from its sources rather than the compiled .mpy files).
    A cwd that holds its own copy of SCRIPT (a board_layout) runs that copy by its name, as a board runs main.py.
    """
    local = cwd != ROOT and (cwd / script).exists()
    command, env = device_command(runtime, Path(script) if local else BENCH / script, args, heapsize)
    if path is not None:
        env["MICROPYPATH"] = path
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return False, {}, "timed out after %.0f s" % timeout
    results: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            _, key, value = line.split(" ", 2)
            results[key] = json.loads(value)
    return done.returncode == 0, results, done.stdout + done.stderr


@contextlib.contextmanager
def board_layout(library: Path | None, *scripts: str) -> Iterator[Path]:
    """A folder to run a device from, as a board's file system: `lib` is library (none for a frozen one), and
    scripts, copied from tools/bench, run from there by their names (run_device), as main.py does.

    Each module's __file__ is a new string on the heap, so a path as long as a checkout's
    (/home/.../build/mpy-lib/iotjobs/client.mpy) would count some 30 bytes a module that a board never spends; and
    a script run by its full path puts its folder first on sys.path (a board has '' there), which moved the
    figures by up to 64 bytes with where the checkout lives.
    """
    with tempfile.TemporaryDirectory(prefix="board-") as folder:
        if library is not None:
            (Path(folder) / "lib").symlink_to(library, target_is_directory=True)
        for script in scripts:
            shutil.copy(BENCH / script, Path(folder) / script)
        yield Path(folder)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain text table, columns as wide as their widest cell."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(name: str, data: Any) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / (name + ".json")
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def machine() -> dict[str, Any]:
    """Where the figures were measured: they mean little without it."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    micropython = subprocess.run([str(BIN / "micropython"), "-c", "import sys; print(sys.implementation.version)"],
                                 capture_output=True, text=True).stdout.strip()
    mosquitto = subprocess.run(["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True).stdout.splitlines()
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "micropython": micropython,
            "mosquitto": mosquitto[0] if mosquitto else "unknown", "kernel": platform.release()}


def plot_path(name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return OUT / (name + ".png")


class LocalJobs:
    """`iotjobs-local serve` as its own process on a given broker, so its CPU time is its own and no client shares
    its interpreter; jobs and things are made through its HTTP API with boto3, as an operator would."""

    def __init__(self, broker_host: str, broker_port: int) -> None:
        self.broker = "%s:%d" % (broker_host, broker_port)
        self.process: subprocess.Popen[str] | None = None
        self.http_url = ""

    def __enter__(self) -> LocalJobs:
        self.process = subprocess.Popen(
            [str(BIN / "iotjobs-local"), "serve", "--broker", self.broker, "--http", "127.0.0.1:0", "--quiet",
             "--db", ":memory:"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().split()
        if not ready or ready[0] != "ready":
            self.process.kill()
            raise RuntimeError("iotjobs-local serve did not start")
        self.http_url = "http://" + ready[2].split("=", 1)[1]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def iot(self) -> Any:
        return aws_client("iot", self.http_url)

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return process_cpu_seconds(self.process.pid)


def aws_client(service: str, endpoint_url: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(max_pool_connections=16, retries={"mode": "standard"})
    return boto3.client(service, endpoint_url=endpoint_url, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench", config=config)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc (its threads included)."""
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
