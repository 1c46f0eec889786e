"""A virtual serial board: a MicroPython unix port behind a pseudo-terminal that mpremote can drive.

--runtime unix64 (default) is the PyPI port, 64-bit; esp32like is v1.27.0 built as an ESP32 is (32-bit, single
floats) with iotjobs and umqtt.simple frozen into it, as in a customer's firmware built with firmware/manifest.py.
"""

from __future__ import annotations

import argparse
import errno
import os
import platform
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path

from esp32like import BuildError
from mpylib import MICROPYTHON_RUNTIMES, micropython_binary

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_BANNER = b'Type "help()" for more information.'
PROMPT = b">>> "
# Long enough to hold either banner split across two reads.
CARRY = 64
# A real UART drops what nobody reads; a pty blocks instead, so give a reader this long, then drop.
WRITE_PATIENCE_S = 2.0
# How often the board looks whether code is running, to tell a program's exit from a Ctrl-D at the REPL.
SAMPLE_S = 0.1
# The exit status of the board's machine.reset() (the CPython shim's too): the restart is a hard reset.
RESET_EXIT_CODE = 211
# The unix port's machine has no reset(): this module, first on the board's path after its own folder, adds one,
# so `mpremote reset` and a program's machine.reset() restart the board as they do an ESP32.
MACHINE_PY = """import sys
from umachine import *


def reset():
    sys.exit(%d)
""" % RESET_EXIT_CODE
# While input waits for the child's REPL to read again, how often to look whether it does.
SETTLE_S = 0.005
# The read() system call's number on this machine, 64-bit and 32-bit: a child blocked in read(0, ...) waits for input.
READ_SYSCALLS = {"x86_64": ("0", "3"), "aarch64": ("63", "3")}.get(platform.machine(), ())


class Child:
    """One run of the unix port on its own pty, started in the board's directory."""

    def __init__(self, micropython: Path, heapsize: str, directory: Path, firmware: Path) -> None:
        env = dict(os.environ)
        # Like a board's sys.path ['', '.frozen', '/lib']; mip installs into the first entry ending in /lib.
        # firmware holds what the board's firmware has built in and the unix port lacks (machine.reset).
        env["MICROPYPATH"] = ":%s:.frozen:%s" % (firmware, directory / "lib")
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.chdir(directory)
                tty.setraw(0)
                os.execve(str(micropython), [str(micropython), "-X", "heapsize=" + heapsize], env)
            finally:
                os._exit(127)
        self.pid = pid
        self.fd = fd

    def read(self) -> bytes:
        """What the child wrote; b"" once it has exited."""
        try:
            return os.read(self.fd, 4096)
        except OSError as e:
            if e.errno == errno.EIO:
                return b""
            raise

    def read_until(self, marker: bytes, timeout: float) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout
        while marker not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise RuntimeError("vboard: the unix port did not print %r; it printed %r" % (marker, data[-200:]))
            chunk = self.read()
            if not chunk:
                raise RuntimeError("vboard: the unix port exited at start-up: %r" % data[-200:])
            data += chunk
        return data

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def executing(self) -> bool:
        """True while code runs: the unix port catches SIGINT only then (its REPL leaves it at the default)."""
        try:
            status = Path("/proc/%d/status" % self.pid).read_text()
        except OSError:
            return False
        caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
        return bool(int(caught.split()[1], 16) & (1 << (signal.SIGINT - 1)))

    def reading(self) -> bool:
        """True while the child is blocked reading its terminal (with no way to tell here: while no code runs)."""
        if not READ_SYSCALLS:
            return not self.executing()
        try:
            fields = Path("/proc/%d/syscall" % self.pid).read_text().split()
        except OSError:
            return False
        return len(fields) > 1 and fields[0] in READ_SYSCALLS and fields[1] == "0x0"

    def interrupt(self) -> None:
        os.kill(self.pid, signal.SIGINT)

    def reap(self) -> int:
        """Its exit status."""
        os.close(self.fd)
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.reap()


class Board:
    """Relays bytes between the client pty and the unix port, restarting it where a board would soft-reset."""

    def __init__(self, micropython: Path, heapsize: str, directory: Path) -> None:
        self.micropython = micropython
        self.heapsize = heapsize
        self.directory = directory
        self.firmware = Path(tempfile.mkdtemp(prefix="vboard-firmware-"))
        (self.firmware / "machine.py").write_text(MACHINE_PY)
        self.master, self.slave = os.openpty()
        # The slave stays open here so the master never sees EIO between two mpremote sessions.
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.raw = False
        self.tail = b""
        # A Ctrl-D typed at the REPL and not followed by running code: the process's exit is then a soft reset.
        self.eof_at_repl = False
        self.sampled = 0.0
        self.listener = True
        # Input that came while code ran, for the child once it reads again (see serve()).
        self.held = b""
        self.child = self.start(boot=True)

    @property
    def path(self) -> str:
        return os.ttyname(self.slave)

    def start(self, boot: bool = False) -> Child:
        child = Child(self.micropython, self.heapsize, self.directory, self.firmware)
        banner = child.read_until(PROMPT, timeout=10)
        if boot and (self.directory / "main.py").exists():
            # Power-on and hard reset run main.py, as a board's firmware does (typed at the REPL: it shows).
            self.raw = False
            child.write(b"import main\r")
        elif self.raw:
            # After a soft reset in the raw REPL a board answers with the raw banner, not the friendly one.
            child.write(b"\x01")
        else:
            self.send(banner)
        return child

    def send(self, data: bytes) -> None:
        self.track(data)
        deadline = time.monotonic() + (WRITE_PATIENCE_S if self.listener else 0)
        while data:
            try:
                data = data[os.write(self.master, data):]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    # Nobody reads: drop without waiting again until someone types.
                    self.listener = False
                    return
                select.select([], [self.master], [], left)

    def track(self, data: bytes) -> None:
        # The banners are printed exactly when the REPL changes mode, so the later one tells the mode.
        seen = self.tail + data
        raw_at, friendly_at = seen.rfind(RAW_BANNER), seen.rfind(FRIENDLY_BANNER)
        if raw_at != friendly_at:
            self.raw = raw_at > friendly_at
        self.tail = seen[-CARRY:]

    def restart(self) -> None:
        # The unix port exits on Ctrl-D at its REPL (a board's soft reset) and when a program ends the process
        # (machine.reset(), or any exit): the second is a hard reset. Both run main.py, except a soft reset in
        # the raw REPL (mpremote's), as on an ESP32, whose soft reset runs main.py only from the friendly REPL.
        status = self.child.reap()
        hard = not self.eof_at_repl or status == RESET_EXIT_CODE
        self.tail = b""
        self.eof_at_repl = False
        self.send(b"MPY: soft reboot\r\n")
        self.child = self.start(boot=hard or not self.raw)

    def serve(self) -> None:
        while True:
            ready = select.select([self.master, self.child.fd], [], [], SETTLE_S if self.held else SAMPLE_S)[0]
            if self.held and self.child.reading():
                self.release()
            now = time.monotonic()
            if now - self.sampled >= SAMPLE_S:
                if self.child.executing():
                    self.eof_at_repl = False
                self.sampled = now
            if self.child.fd in ready:
                out = self.child.read()
                if out:
                    self.send(out)
                else:
                    self.restart()
                    continue
            if self.master in ready:
                try:
                    data = os.read(self.master, 4096)
                except BlockingIOError:
                    continue
                self.listener = True
                # A board's UART turns Ctrl-C into KeyboardInterrupt; the unix port's raw tty has no ISIG to do it.
                executing = self.child.executing()
                if b"\x03" in data and executing:
                    self.child.interrupt()
                    data = data.replace(b"\x03", b"")  # taken by the interrupt, as a board's UART takes it
                if b"\x04" in data and not executing:
                    self.eof_at_repl = True
                # The unix port flushes its terminal's input each time it goes back to its REPL, which a board's
                # UART never does: what comes while code runs is held until the child reads again.
                if executing or self.held:
                    self.held += data
                else:
                    self.deliver(data)

    def release(self) -> None:
        """Give held input to the child, which is reading: to a running program all of it; to the REPL a byte at a
        time, since one byte (Ctrl-B, Ctrl-D) can send it to another REPL that flushes what follows."""
        count = len(self.held) if self.child.executing() else 1
        self.deliver(self.held[:count])
        self.held = self.held[count:]

    def deliver(self, data: bytes) -> None:
        try:
            self.child.write(data)
        except OSError as e:
            if e.errno != errno.EIO:
                raise

    def close(self) -> None:
        self.child.kill()
        os.close(self.master)
        os.close(self.slave)
        shutil.rmtree(self.firmware, ignore_errors=True)


class VirtualBoard:
    """`iotjobs-vboard` as a child process, for tests and tools: `with VirtualBoard(dir) as vb: vb.path`."""

    def __init__(self, directory: Path, heapsize: str = "256k", runtime: str = "unix64") -> None:
        self.directory = directory
        self.heapsize = heapsize
        self.runtime = runtime
        self.process: subprocess.Popen[str] | None = None
        self.path = ""

    def start(self, timeout: float = 15.0) -> VirtualBoard:
        script = Path(sys.executable).parent / "iotjobs-vboard"
        self.process = subprocess.Popen(
            [str(script), "--dir", str(self.directory), "--heapsize", self.heapsize, "--runtime", self.runtime],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("vboard "):
            self.stop()
            raise RuntimeError("iotjobs-vboard did not start: %r" % line)
        self.path = line.split()[1]
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iotjobs-vboard", description=__doc__)
    parser.add_argument("--heapsize", default="256k", help="the unix port's GC heap, e.g. 96k (default 256k)")
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="the board's filesystem (default: here)")
    parser.add_argument("--runtime", choices=MICROPYTHON_RUNTIMES, default="unix64",
                        help="unix64: the PyPI unix port, 64-bit (default); esp32like: v1.27.0, 32-bit, single floats, "
                        "iotjobs and umqtt.simple frozen in (built from source on first use, ~1 min)")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        micropython = micropython_binary(args.runtime)
    except BuildError as e:
        print("iotjobs-vboard: %s" % e, file=sys.stderr)
        return 1
    if not micropython.exists():
        print("iotjobs-vboard: %s is missing; run: bash tools/setup.sh" % micropython, file=sys.stderr)
        return 1

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    board = Board(micropython, args.heapsize, directory)
    print("vboard", board.path, flush=True)
    try:
        board.serve()
    except KeyboardInterrupt:
        pass
    finally:
        board.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
