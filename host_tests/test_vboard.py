"""The virtual board answers plain mpremote as a real board would: soft reset, Ctrl-C, files in its directory."""

from __future__ import annotations

import hashlib
import os
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpylib import MICROPYTHON_RUNTIMES
from vboard import VirtualBoard

MPREMOTE = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "mpremote"


def mpremote(board: VirtualBoard, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MPREMOTE), "connect", board.path, *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(params=MICROPYTHON_RUNTIMES)
def board(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VirtualBoard]:
    with VirtualBoard(tmp_path / "board", heapsize="128k", runtime=request.param) as vb:
        yield vb


def test_plain_connect_soft_resets_and_runs_code(board: VirtualBoard) -> None:
    # Each mpremote call soft-resets first: the unix port exits on that Ctrl-D and the board restarts it.
    for n in range(3):
        done = mpremote(board, "exec", "print(%d * 7)" % n)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(n * 7)


def test_files_live_in_the_board_directory(board: VirtualBoard, tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(bytes(range(256)) * 8)
    done = mpremote(board, "fs", "mkdir", ":lib", "+", "fs", "cp", str(source), ":lib/data.bin",
                    "+", "fs", "sha256sum", ":lib/data.bin", "+", "exec", "import sys; print(sys.path)")
    assert done.returncode == 0, done.stderr
    assert (board.directory / "lib" / "data.bin").read_bytes() == source.read_bytes()
    assert hashlib.sha256(source.read_bytes()).hexdigest() in done.stdout
    # Like a board's ['', '.frozen', '/lib'], so `mip install` finds its target.
    assert "'%s'" % (board.directory / "lib") in done.stdout


def test_ctrl_c_interrupts_a_running_program(board: VirtualBoard) -> None:
    started = mpremote(board, "exec", "--no-follow", "import time\nwhile True:\n    time.sleep_ms(10)")
    assert started.returncode == 0, started.stderr
    done = mpremote(board, "eval", "6 * 7", timeout=10)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"


def test_a_program_that_exits_the_process_is_a_soft_reset(board: VirtualBoard) -> None:
    done = mpremote(board, "exec", "import sys; sys.exit(3)")
    assert done.returncode == 0, done.stderr
    again = mpremote(board, "resume", "eval", "1 + 1")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "2"


def test_power_on_and_a_program_exit_run_main_py_but_a_soft_reset_does_not(tmp_path: Path) -> None:
    directory = tmp_path / "board"
    directory.mkdir()
    (directory / "main.py").write_text("import os\nn = len(os.listdir())\nopen('boot%d' % n, 'w').close()\n")
    with VirtualBoard(directory, heapsize="128k") as vb:
        # Power-on ran main.py: one boot file; mpremote's soft reset in the raw REPL did not run it again.
        assert mpremote(vb, "exec", "import os; print(sorted(os.listdir()))").stdout.strip() == "['boot1', 'main.py']"
        # A program that ends the process is the unix board's machine.reset(): main.py runs at the restart.
        mpremote(vb, "exec", "import sys; import time; time.sleep_ms(300); sys.exit()")
        done = mpremote(vb, "resume", "exec", "import os; print(sorted(os.listdir()))")
        assert done.stdout.strip() == "['boot1', 'boot2', 'main.py']", done.stdout + done.stderr


def main_py_counts_boots(directory: Path) -> None:
    directory.mkdir()
    (directory / "main.py").write_text("import os\nn = len(os.listdir())\nopen('boot%d' % n, 'w').close()\n"
                                       "print('main.py ran', n)\n")


def boots(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("boot"))


def read_until(fd: int, marker: bytes, timeout: float = 15) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        left = deadline - time.monotonic()
        assert left > 0, "no %r in %r" % (marker, data)
        if select.select([fd], [], [], left)[0]:
            data += os.read(fd, 4096)
    return data


@pytest.mark.parametrize("runtime", MICROPYTHON_RUNTIMES)
def test_ctrl_d_at_the_friendly_repl_soft_resets_and_runs_main_py_as_an_esp32_does(runtime: str,
                                                                                    tmp_path: Path) -> None:
    directory = tmp_path / "board"
    main_py_counts_boots(directory)
    with VirtualBoard(directory, heapsize="128k", runtime=runtime) as vb:
        # The board keeps its pty raw; setting it again here would flush what power-on already printed.
        fd = os.open(vb.path, os.O_RDWR | os.O_NOCTTY)
        try:
            read_until(fd, b"main.py ran 1")  # power-on
            os.write(fd, b"\r")
            read_until(fd, b">>> ")
            os.write(fd, b"\x04")  # what a user types at the REPL to soft-reset
            after = read_until(fd, b"main.py ran 2")
        finally:
            os.close(fd)
        assert b"soft reboot" in after
        assert boots(directory) == ["boot1", "boot2"]


@pytest.mark.parametrize("runtime", MICROPYTHON_RUNTIMES)
def test_mpremote_reset_restarts_the_board_and_runs_main_py(runtime: str, tmp_path: Path) -> None:
    directory = tmp_path / "board"
    main_py_counts_boots(directory)
    with VirtualBoard(directory, heapsize="128k", runtime=runtime) as vb:
        done = mpremote(vb, "reset")
        assert done.returncode == 0, done.stderr
        # mpremote does not wait for the board: the next session finds it restarted, main.py run a second time.
        deadline = time.monotonic() + 15
        while len(boots(directory)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert boots(directory) == ["boot1", "boot2"]
        again = mpremote(vb, "exec", "import machine; print(callable(machine.reset), machine.Signal is not None)")
        assert again.stdout.split() == ["True", "True"], again.stdout + again.stderr
