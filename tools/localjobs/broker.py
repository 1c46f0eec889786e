"""A throwaway mosquitto broker on a loopback port, for tests and the local service."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .authz import find_plugin

DEFAULT_EXECUTABLE = "/usr/sbin/mosquitto"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def find_mosquitto() -> str:
    if os.access(DEFAULT_EXECUTABLE, os.X_OK):
        return DEFAULT_EXECUTABLE
    found = shutil.which("mosquitto")
    if found is None:
        raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Mosquitto:
    """One mosquitto process with a private config, log and port.

    `tls` is an optional dict of PEM file paths: `cafile`, `certfile`, `keyfile`, and
    `require_certificate` (bool, default False). With it the listener speaks only TLS.

    `security` (with `tls`) is the starting config of mosquitto's dynamic-security plugin (see authz.py):
    no anonymous clients anywhere, the TLS listener's user name is the client certificate's Common
    Name, and the plugin decides who may publish, receive and subscribe to what. It is written once;
    a restart keeps what the plugin was told since.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        tls: dict[str, Any] | None = None,
        executable: str | None = None,
        plain_port: int | None = None,
        security: dict[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = dict(tls) if tls else None
        # With TLS devices, a second listener without TLS (0: a free port) for the local service's own client.
        self.plain_port = plain_port
        self.executable = executable or find_mosquitto()
        if security is not None and not (self.tls and self.tls.get("require_certificate")):
            raise ValueError("security needs a TLS listener that requires client certificates")
        self.security = security
        # The service's own listener; with `security` it is for the service alone, so never off this machine.
        self.plain_host = "127.0.0.1" if security is not None else host
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self._pick_port = port == 0

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Mosquitto:
        if self.running:
            return self
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="localjobs-mosquitto-"))
        # A port picked here can be taken by someone else before mosquitto binds it: pick again.
        attempts = 3 if self._pick_port else 1
        for attempt in range(attempts):
            if self._pick_port and (attempt > 0 or self.port == 0):
                self.port = free_port(self.host)
            if self.plain_port == 0 or (attempt > 0 and self.plain_port is not None):
                self.plain_port = free_port(self.plain_host)
            try:
                self._spawn()
                return self
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
        return self

    def stop(self) -> None:
        self._terminate()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def restart(self) -> None:
        """Stop and start again on the same port (clients see the connection drop)."""
        self._terminate()
        self._spawn()

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing connections cleanly."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def log(self) -> str:
        if self.workdir is None or not (self.workdir / "mosquitto.log").exists():
            return ""
        return (self.workdir / "mosquitto.log").read_text(errors="replace")

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Mosquitto({self.address}, running={self.running})"

    # ---- internals -----------------------------------------------------------------------------

    def _config(self) -> str:
        assert self.workdir is not None
        lines = [
            "persistence false",
            # Without it every reply can wait ~40 ms for a delayed ACK (Nagle), which slows tests 100x.
            "set_tcp_nodelay true",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        # Started as root, mosquitto 2 switches to user `mosquitto`, which cannot read our temp dir
        # or the test certificates; staying root avoids that. As a normal user the line is ignored.
        if os.geteuid() == 0:
            lines.append("user root")
        if self.security is not None:
            config = self.workdir / "dynamic-security.json"
            if not config.exists():
                config.write_text(json.dumps(self.security, indent=1))
            lines += [f"plugin {find_plugin(self.executable)}", f"plugin_opt_config_file {config}",
                      "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        lines.append(f"listener {self.port} {self.host}")
        if self.tls:
            for key in ("cafile", "certfile", "keyfile"):
                if self.tls.get(key):
                    lines.append(f"{key} {Path(self.tls[key]).resolve()}")
            required = "true" if self.tls.get("require_certificate") else "false"
            lines.append(f"require_certificate {required}")
            if self.security is not None:
                lines.append("use_identity_as_username true")
            if self.plain_port is not None:
                # After the TLS lines, which belong to the listener before them.
                lines.append(f"listener {self.plain_port} {self.plain_host}")
        return "\n".join(lines) + "\n"

    def _spawn(self) -> None:
        assert self.workdir is not None
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self._config())
        log_start = self._log_size()
        with open(self.workdir / "stderr.log", "ab") as stderr:
            self.process = subprocess.Popen(
                [self.executable, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # a Ctrl-C meant for pytest must not kill the broker first
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            # Someone else may hold the port, so a connection alone proves nothing: mosquitto must
            # also have logged that it is running (it does so once its listeners are bound).
            if self._logged_running(log_start) and self._accepts():
                return
            try:
                # Doubles as the poll interval and as the check that mosquitto has not exited.
                self.process.wait(timeout=0.01)
            except subprocess.TimeoutExpired:
                continue
            break
        self._terminate()
        stderr_text = (self.workdir / "stderr.log").read_text(errors="replace")
        raise RuntimeError(
            f"mosquitto did not start on {self.address}:\n{stderr_text}\n{self.log()}".rstrip()
        )

    def _log_size(self) -> int:
        assert self.workdir is not None
        path = self.workdir / "mosquitto.log"
        return path.stat().st_size if path.exists() else 0

    def _logged_running(self, offset: int) -> bool:
        assert self.workdir is not None
        path = self.workdir / "mosquitto.log"
        if not path.exists():
            return False
        with open(path, "rb") as log:
            log.seek(offset)
            return b" running" in log.read()

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
