"""The CPython shim gives firmware MicroPython's semantics: checked on sockets, TLS, a broker, processes."""

from __future__ import annotations

import errno
import io
import os
import queue
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localjobs.broker import Mosquitto

ROOT = Path(__file__).resolve().parents[1]
SHIM = ROOT / "host_tests" / "shim"
MPRUN = SHIM / "mprun.py"
MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"
WAIT = 10.0  # the most any awaited event may take; none takes near that when things work

# The shim is a sys.path root, as it is for firmware run by mprun.py.
sys.path.insert(0, str(SHIM))
import machine  # noqa: E402
import mprun  # noqa: E402
import network  # noqa: E402
import ubinascii  # noqa: E402
import uselect  # noqa: E402
import usocket  # noqa: E402
import ussl  # noqa: E402
import utime  # noqa: E402

mprun.install()


# ---- helpers ---------------------------------------------------------------------------------------


class Server:
    """A loopback TCP server running handler(conn) in a thread per connection."""

    def __init__(self, handler: Callable[[socket.socket], object]) -> None:
        self.handler = handler
        self.errors: list[BaseException] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            conn.settimeout(WAIT)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except (OSError, ValueError) as e:
            self.errors.append(e)
        finally:
            conn.close()

    def close(self) -> None:
        # shutdown() is what wakes a thread blocked in accept() on Linux.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


def recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        assert chunk, "peer closed after %r" % data
        data += chunk
    return data


def recv_all(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(4096):
        data += chunk
    return data


def readable(sock: Any, timeout: float = WAIT) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


class Lines:
    """A subprocess's stdout, a line at a time, each awaited with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def next(self) -> str:
        try:
            return self.lines.get(timeout=WAIT)
        except queue.Empty:
            self.proc.kill()
            stderr = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError("no output; stderr:\n" + stderr) from None


def mprun_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPSHIM_") and k != "MICROPYPATH"}
    env.update(extra)
    return env


def run_script(tmp_path: Path, source: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(source)
    return subprocess.run(
        [sys.executable, str(MPRUN), str(script), *args],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        env=mprun_env(**env),
        cwd=tmp_path,
    )


@pytest.fixture(autouse=True)
def link_up(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("MPSHIM_LINK_FILE", raising=False)
    network.set_link(True)
    yield
    network.set_link(True)


Pair = tuple[usocket.socket, socket.socket]


@pytest.fixture
def pair() -> Iterator[Pair]:
    """A shim client socket connected to a plain CPython peer."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    client = usocket.socket()
    client.connect(usocket.getaddrinfo("127.0.0.1", listener.getsockname()[1])[0][-1])
    peer, _ = listener.accept()
    peer.settimeout(WAIT)
    yield client, peer
    client.close()
    peer.close()
    listener.close()


# ---- usocket ---------------------------------------------------------------------------------------


def test_read_n_waits_for_all_n_bytes(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    client, peer = pair
    chunks: list[bytes] = []
    first_arrived = threading.Event()
    raw_recv = client._recv_raw

    def spy(n: int, flags: int = 0) -> bytes | None:
        data = raw_recv(n, flags)
        if data:
            chunks.append(data)
            first_arrived.set()
        return data

    monkeypatch.setattr(client, "_recv_raw", spy)

    def send_in_two_parts() -> None:
        peer.sendall(b"abc")
        # The rest goes only once the reader holds the first part, so read(5) must have waited for it.
        first_arrived.wait(WAIT)
        peer.sendall(b"defg")

    threading.Thread(target=send_in_two_parts, daemon=True).start()
    assert client.read(5) == b"abcde"
    assert chunks[0] == b"abc" and len(chunks) >= 2
    assert client.read(2) == b"fg"


def test_eof_short_read_then_empty(pair: Pair) -> None:
    client, peer = pair
    peer.sendall(b"ab\ncd")
    peer.close()
    assert client.readline() == b"ab\n"
    assert client.read(5) == b"cd"
    assert client.read(1) == b""
    assert client.read() == b""
    assert client.readline() == b""


def test_read_without_n_reads_to_eof_and_readinto_fills(pair: Pair) -> None:
    client, peer = pair
    payload = bytes(range(256)) * 200
    peer.sendall(b"0123" + payload)
    peer.close()
    buf = bytearray(8)
    assert client.readinto(buf, 3) == 3 and buf[:3] == b"012"
    view = memoryview(buf)[4:]
    assert client.readinto(view) == 4 and buf[4:5] == b"3"
    assert client.read() == payload[3:]


def test_non_blocking_read_gives_none_then_what_is_there(pair: Pair) -> None:
    client, peer = pair
    client.setblocking(False)
    assert client.read(10) is None
    assert client.readinto(bytearray(4)) is None
    assert client.readline() is None
    assert client.read() is None
    with pytest.raises(OSError) as info:
        client.recv(1)
    assert info.value.errno == errno.EAGAIN
    peer.sendall(b"xy")
    assert readable(client)
    assert client.read(10) == b"xy"  # what there is, without waiting for 10
    assert client.read(10) is None


def test_timeout_raises_etimedout_like_micropython(pair: Pair) -> None:
    client, peer = pair
    client.settimeout(0.05)
    started = time.monotonic()
    with pytest.raises(OSError) as info:
        client.read(1)
    assert time.monotonic() - started >= 0.045
    assert type(info.value) is OSError
    assert info.value.errno == errno.ETIMEDOUT == 110 and info.value.args == (110,)
    assert str(info.value) == "[Errno 110] ETIMEDOUT"
    with pytest.raises(OSError) as info:
        client.readinto(bytearray(1))
    assert info.value.errno == errno.ETIMEDOUT
    # The unix port's recv() reports a timeout as EAGAIN.
    with pytest.raises(OSError) as info:
        client.recv(1)
    assert info.value.errno == errno.EAGAIN
    # A read that times out part-way loses what it had read, as on MicroPython.
    peer.sendall(b"a")
    with pytest.raises(OSError):
        client.read(2)
    peer.sendall(b"b")
    assert client.read(1) == b"b"
    client.settimeout(None)
    peer.sendall(b"c")
    assert client.read(1) == b"c"


def test_write_forms_and_str(pair: Pair) -> None:
    client, peer = pair
    assert client.write(b"hello", 2) == 2
    assert client.write(b"xhello", 1, 3) == 3
    assert client.write("str") == 3
    assert client.write(bytearray(b"!")) == 1
    assert client.write(b"") == 0
    assert client.send(b"ab") == 2
    client.sendall(memoryview(b"zz"))
    expected = b"hehelstr!abzz"
    assert recv_exactly(peer, len(expected)) == expected


def test_non_blocking_write_returns_none_when_it_would_block(pair: Pair) -> None:
    client, _peer = pair
    client.setblocking(False)
    results = []
    for _ in range(10_000):  # the peer never reads, so the buffers fill up long before this
        results.append(client.write(b"x" * 65536))
        if results[-1] is None:
            break
    assert results[-1] is None
    assert all(isinstance(n, int) and 0 < n <= 65536 for n in results[:-1])


def test_poll_accepts_shim_sockets(pair: Pair) -> None:
    client, peer = pair
    cpython_poll = select.poll()
    cpython_poll.register(client, select.POLLIN)
    mp_poll = uselect.poll()
    mp_poll.register(client, uselect.POLLIN)
    assert cpython_poll.poll(0) == [] and mp_poll.poll(0) == []
    peer.sendall(b"z")
    assert cpython_poll.poll(int(WAIT * 1000)) == [(client.fileno(), select.POLLIN)]
    # MicroPython's poll hands back the registered object, not a descriptor.
    assert mp_poll.poll(int(WAIT * 1000)) == [(client, uselect.POLLIN)]
    assert list(mp_poll.ipoll(0, 1)) == [(client, uselect.POLLIN)]
    assert mp_poll.poll(0) == []  # one-shot until modify()


def test_connect_errors_and_addresses() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    family, kind, _proto, _name, addr = usocket.getaddrinfo("localhost", port)[0]
    assert (family, kind, addr) == (usocket.AF_INET, usocket.SOCK_STREAM, ("127.0.0.1", port))
    sock = usocket.socket()
    with pytest.raises(OSError) as info:
        sock.connect(addr)
    assert info.value.errno == errno.ECONNREFUSED
    sock.close()
    with pytest.raises(OSError) as info:
        sock.read(1)
    assert info.value.errno == errno.EBADF
    with pytest.raises(OSError, match="addrinfo error"):
        usocket.getaddrinfo("no-such-host.invalid", 1)


def test_accept_and_non_blocking_connect() -> None:
    server = usocket.socket()
    server.setsockopt(usocket.SOL_SOCKET, usocket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server._s.getsockname()[1]
    client = usocket.socket()
    client.setblocking(False)
    with pytest.raises(OSError) as info:
        client.connect(("127.0.0.1", port))
    assert info.value.errno == errno.EINPROGRESS
    server.settimeout(WAIT)
    conn, addr = server.accept()
    assert addr[0] == "127.0.0.1"
    conn.write(b"hi")
    client.setblocking(True)
    assert client.read(2) == b"hi"
    for s in (conn, client, server):
        s.close()


# ---- the WiFi link ---------------------------------------------------------------------------------


def test_link_down_and_up_in_process(pair: Pair) -> None:
    client, peer = pair
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wlan.connect("ssid", "key")
    assert wlan.isconnected() and wlan.status() == network.STAT_GOT_IP
    assert wlan.ifconfig()[0] != "0.0.0.0"

    blocked_read: list[BaseException] = []

    def read_forever() -> None:
        try:
            client.read(1)
        except OSError as e:
            blocked_read.append(e)

    reader = threading.Thread(target=read_forever, daemon=True)
    reader.start()
    network.set_link(False)
    reader.join(WAIT)
    # A read already waiting notices the drop too.
    assert [getattr(e, "errno", None) for e in blocked_read] == [errno.ECONNRESET]

    assert not wlan.isconnected() and wlan.status() == network.STAT_NO_AP_FOUND
    wlan.connect("ssid", "key")
    assert not wlan.isconnected()
    with pytest.raises(OSError) as info:
        client.write(b"x")
    assert info.value.errno == errno.ECONNRESET
    with pytest.raises(OSError) as info:
        usocket.socket().connect(("127.0.0.1", peer.getsockname()[1]))
    assert info.value.errno == errno.EHOSTUNREACH
    assert uselect.poll().poll(0) == []
    mp_poll = uselect.poll()
    mp_poll.register(client, uselect.POLLIN)
    assert mp_poll.poll(0) == [(client, uselect.POLLERR | uselect.POLLHUP)]

    network.set_link(True)
    assert wlan.isconnected()
    # The old connection stays dead, and closing it sends nothing the peer could see, as after a real drop.
    with pytest.raises(OSError) as info:
        client.read(1)
    assert info.value.errno == errno.ECONNRESET
    client.close()
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(1)
    fresh = usocket.socket()
    fresh.connect(("127.0.0.1", peer.getsockname()[1]))
    fresh.close()


def test_wlan_api() -> None:
    wlan = network.WLAN(network.STA_IF)
    wlan.active(False)
    assert not wlan.active() and wlan.status() == network.STAT_IDLE
    with pytest.raises(OSError):
        wlan.connect("ssid", "key")
    wlan.active(True)
    wlan.connect("home", "secret")
    assert network.WLAN(network.STA_IF).isconnected()  # the same radio
    assert wlan.config("ssid") == wlan.config("essid") == "home"
    assert len(wlan.config("mac")) == 6
    wlan.config(hostname="board")
    assert wlan.config("hostname") == "board"
    with pytest.raises(ValueError):
        wlan.config("nonsense")
    wlan.disconnect()
    assert not wlan.isconnected() and wlan.ifconfig()[0] == "0.0.0.0"


LINK_SCRIPT = """
import sys
import network, usocket
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect("ssid", "key")
print("wlan", wlan.isconnected(), wlan.status())
s = usocket.socket()
s.connect(usocket.getaddrinfo("127.0.0.1", int(sys.argv[1]))[0][-1])
print("connected")
try:
    s.read(1)
except OSError as e:
    print("read", e.errno)
print("wlan", wlan.isconnected(), wlan.status())
try:
    usocket.socket().connect(usocket.getaddrinfo("127.0.0.1", int(sys.argv[1]))[0][-1])
except OSError as e:
    print("connect", e.errno)
sys.stdin.readline()
print("wlan", wlan.isconnected(), wlan.status())
usocket.socket().connect(usocket.getaddrinfo("127.0.0.1", int(sys.argv[1]))[0][-1])
print("reconnected")
"""


def test_link_file_controls_a_firmware_process(tmp_path: Path) -> None:
    link = tmp_path / "link"
    server = Server(lambda conn: conn.recv(1))
    script = tmp_path / "link_script.py"
    script.write_text(LINK_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(MPRUN), str(script), str(server.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=mprun_env(MPSHIM_LINK_FILE=str(link)),  # no file yet: the link is up
    )
    try:
        out = Lines(proc)
        assert out.next() == "wlan True %d" % network.STAT_GOT_IP
        assert out.next() == "connected"
        link.write_text("down\n")  # the script is (or soon will be) blocked reading
        assert out.next() == "read %d" % errno.ECONNRESET
        assert out.next() == "wlan False %d" % network.STAT_NO_AP_FOUND
        assert out.next() == "connect %d" % errno.EHOSTUNREACH
        link.write_text("up")
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert out.next() == "wlan True %d" % network.STAT_GOT_IP
        assert out.next() == "reconnected"
        assert proc.wait(WAIT) == 0
    finally:
        proc.kill()
        proc.wait()
        server.close()


# ---- ticks -----------------------------------------------------------------------------------------


def test_ticks_wrap_at_2_to_the_30() -> None:
    period = utime.TICKS_PERIOD
    assert period == 2**30
    assert utime.ticks_add(period - 1, 1) == 0
    assert utime.ticks_add(0, -1) == period - 1
    assert utime.ticks_diff(0, period - 1) == 1
    assert utime.ticks_diff(period - 1, 0) == -1
    assert utime.ticks_diff(5, 3) == 2 and utime.ticks_diff(3, 5) == -2
    assert utime.ticks_diff(period // 2 - 1, 0) == period // 2 - 1
    assert utime.ticks_diff(period // 2, 0) == -(period // 2)
    assert utime.ticks_diff(utime.ticks_add(7, period // 2 - 1), 7) == period // 2 - 1
    for delta in (period // 2, -(period // 2)):
        with pytest.raises(OverflowError):
            utime.ticks_add(0, delta)
    for ticks in (utime.ticks_ms(), utime.ticks_us(), utime.ticks_cpu()):
        assert 0 <= ticks < period


def test_time_module_is_patched() -> None:
    for name in ("ticks_ms", "ticks_us", "ticks_cpu", "ticks_add", "ticks_diff", "sleep_ms", "sleep_us"):
        assert getattr(time, name) is getattr(utime, name)
    before = utime.ticks_ms()
    utime.sleep_ms(-1)  # a negative delay is no delay, not an error
    utime.sleep_us(10)
    assert 0 <= utime.ticks_diff(utime.ticks_ms(), before) < 1000


def test_ticks_wrap_in_a_firmware_process(tmp_path: Path) -> None:
    source = (
        "import time\nt0 = time.ticks_ms()\ntime.sleep_ms(60)\nt1 = time.ticks_ms()\n"
        "print(t0, t1, time.ticks_diff(t1, t0))\n"
    )
    done = run_script(tmp_path, source, MPSHIM_TICKS_MS=str(2**30 - 30))
    assert done.returncode == 0, done.stderr
    t0, t1, diff = map(int, done.stdout.split())
    assert t0 >= 2**30 - 30 and t1 < t0  # wrapped
    assert 60 <= diff < 1000


# ---- binascii, micropython, gc, sys, machine ---------------------------------------------------------


def test_ubinascii() -> None:
    assert ubinascii.hexlify(b"\x01\xab") == b"01ab"
    assert ubinascii.hexlify(b"\x01\xab", ":") == b"01:ab"
    assert ubinascii.hexlify(b"ab", "::") == b"61:62"  # MicroPython uses the first char
    assert ubinascii.hexlify("ab") == b"6162"
    assert ubinascii.unhexlify("01ab") == b"\x01\xab"
    assert ubinascii.b2a_base64(b"hi") == b"aGk=\n"
    assert ubinascii.b2a_base64(b"hi", newline=False) == b"aGk="
    assert ubinascii.a2b_base64(b"aG\nk=") == b"hi"
    assert ubinascii.crc32(b"abc") == 891568578 == ubinascii.crc32(b"c", ubinascii.crc32(b"ab"))
    with pytest.raises(ValueError):
        ubinascii.unhexlify(b"0")


def test_u_names_are_the_cpython_modules() -> None:
    import errno as cerrno
    import json
    import struct

    import uerrno
    import ujson
    import uos
    import ustruct

    assert (uerrno, ujson, uos, ustruct) == (cerrno, json, os, struct)
    mp_os: Any = uos
    assert ("mprun.py", 0x8000) in [entry[:2] for entry in mp_os.ilistdir(str(SHIM))]


def test_micropython_gc_and_sys_extras(capsys: pytest.CaptureFixture[str]) -> None:
    import gc

    import micropython

    assert micropython.const(7) == 7
    assert micropython.native(len) is len and micropython.viper(len) is len
    micropython.opt_level(2)
    assert micropython.opt_level() == 2
    micropython.opt_level(0)
    got: list[int] = []
    micropython.schedule(got.append, 5)
    assert got == [5]
    micropython.alloc_emergency_exception_buf(100)
    micropython.heap_lock()
    assert micropython.heap_unlock() == 0
    micropython.mem_info()
    assert "GC: total:" in capsys.readouterr().out
    # What install() added is unknown to the type checker: reach it through Any.
    mp_gc: Any = gc
    mp_sys: Any = sys
    assert mp_gc.mem_free() > 0 and mp_gc.mem_alloc() > 0
    assert mp_gc.threshold() == -1
    out = io.StringIO()
    mp_sys.print_exception(ValueError("x"), out)
    assert out.getvalue() == "ValueError: x\n"


def test_machine_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    led = machine.Pin(2, machine.Pin.OUT, value=0)
    led.on()
    assert machine.Pin(2).value() == 1 and machine.Pin.levels[2] == 1
    led.off()
    assert led() == 0
    led(1)
    assert led.value() == 1
    assert len(machine.unique_id()) == 6
    monkeypatch.setenv("MPSHIM_UNIQUE_ID", "deadbeef0001")
    assert machine.unique_id() == bytes.fromhex("deadbeef0001")
    assert machine.reset_cause() == machine.PWRON_RESET
    monkeypatch.setenv("MPSHIM_RESET_CAUSE", "WDT_RESET")
    assert machine.reset_cause() == machine.WDT_RESET
    assert machine.freq() == 160_000_000
    machine.idle()
    # In a test process an unfed WDT records its expiry instead of killing pytest.
    wdt = machine.WDT(timeout=10)
    deadline = time.monotonic() + WAIT
    while not wdt.expired and time.monotonic() < deadline:
        time.sleep(0.005)
    assert wdt.expired


def test_machine_reset_ends_the_process_with_its_code(tmp_path: Path) -> None:
    done = run_script(tmp_path, "import machine\nprint('booted')\nmachine.reset()\nprint('not reached')\n")
    assert (done.returncode, done.stdout) == (machine.RESET_EXIT_CODE, "booted\n")


def test_unfed_wdt_resets_a_firmware_process(tmp_path: Path) -> None:
    source = (
        "import machine, time\nw = machine.WDT(timeout=50)\nw.feed()\nprint('fed')\n"
        "while True:\n    time.sleep_ms(10)\n"
    )
    done = run_script(tmp_path, source)
    assert (done.returncode, done.stdout) == (machine.WDT_RESET_EXIT_CODE, "fed\n")
    assert "WDT" in done.stderr


def test_mprun_paths_argv_and_errors(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "frommicropypath.py").write_text("VALUE = 42\n")
    (tmp_path / "sibling.py").write_text("NAME = 'sibling'\n")
    source = (
        "import sys, time, gc\n"
        "import frommicropypath, sibling\n"
        "import umqtt.simple\n"
        "print(sys.argv[1:], frommicropypath.VALUE, sibling.NAME, time.ticks_diff(time.ticks_ms(), 0) >= 0)\n"
        "print(umqtt.simple.__file__)\n"
        "raise ValueError('boom')\n"
    )
    done = run_script(tmp_path, source, "a", "b c", MICROPYPATH=str(extra) + ":.frozen")
    lines = done.stdout.splitlines()
    assert lines[0] == "['a', 'b c'] 42 sibling True"
    assert Path(lines[1]) == ROOT / "build" / "umqtt" / "umqtt" / "simple.py"
    assert done.returncode == 1
    assert "ValueError: boom" in done.stderr and "runpy" not in done.stderr


# ---- TLS -------------------------------------------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=WAIT * 3)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for localhost (EC key) and a device certificate (RSA key), DER and PEM."""
    assert shutil.which("openssl"), "the openssl CLI is missing: tools/setup.sh installs it"
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ca", cwd=d
    )
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    sign = ["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2"]
    openssl("x509", "-req", "-in", "server.csr", *sign, "-out", "server.pem", "-extfile", "san.cnf", cwd=d)
    openssl("genrsa", "-out", "device.key", "2048", cwd=d)
    openssl("req", "-new", "-key", "device.key", "-out", "device.csr", "-subj", "/CN=device", cwd=d)
    openssl("x509", "-req", "-in", "device.csr", *sign, "-out", "device.pem", cwd=d)
    for name in ("ca", "server", "device"):
        openssl("x509", "-in", name + ".pem", "-outform", "DER", "-out", name + ".der", cwd=d)
    openssl("rsa", "-in", "device.key", "-traditional", "-outform", "DER", "-out", "device.key.der", cwd=d)
    for name in ("device", "server"):
        p8 = ["-topk8", "-nocrypt", "-in", name + ".key", "-outform", "DER", "-out", name + ".p8.der"]
        openssl("pkcs8", *p8, cwd=d)
    return d


@pytest.fixture
def tls_echo(pki: Path) -> Iterator[Server]:
    """A TLS server that wants the device certificate, answers b"echo:" + what it got, then closes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    ctx.load_verify_locations(pki / "ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED

    def echo(conn: socket.socket) -> None:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            data = tls.recv(100)
            if data:
                tls.sendall(b"echo:" + data)

    server = Server(echo)
    yield server
    server.close()


def tls_client(server: Server, **kwargs: Any) -> ussl.SSLSocket:
    sock = usocket.socket()
    sock.connect(usocket.getaddrinfo("127.0.0.1", server.port)[0][-1])
    try:
        return ussl.wrap_socket(sock, **kwargs)
    except BaseException:
        sock.close()
        raise


def device_params(pki: Path, **overrides: Any) -> dict[str, Any]:
    params = {
        "key": (pki / "device.key.der").read_bytes(),
        "cert": (pki / "device.der").read_bytes(),
        "cadata": (pki / "ca.der").read_bytes(),
        "cert_reqs": ussl.CERT_REQUIRED,
        "server_hostname": "localhost",
    }
    params.update(overrides)
    return params


def test_tls_mutual_with_der_keys(pki: Path, tls_echo: Server) -> None:
    for key in (pki / "device.key.der", pki / "device.p8.der"):
        tls = tls_client(tls_echo, **device_params(pki, key=key.read_bytes()))
        assert tls.write(b"hi") == 2
        assert tls.read(7) == b"echo:hi"
        assert tls.read(1) == b""
        tls.close()
    # A str is a path to a DER file.
    paths = device_params(pki, key=str(pki / "device.key.der"), cert=str(pki / "device.der"))
    tls = tls_client(tls_echo, **paths)
    tls.write("str")
    assert tls.read() == b"echo:str"
    tls.close()


def test_tls_refuses_what_micropython_refuses(pki: Path, tls_echo: Server) -> None:
    wrong_cn = "\nThe certificate Common Name (CN) does not match with the expected CN\n"
    not_trusted = "\nThe certificate is not correctly signed by the trusted CA\n"
    cases: list[tuple[dict[str, Any], type[Exception], Any]] = [
        ({"key": (pki / "device.key").read_bytes()}, ValueError, ("invalid key",)),
        ({"cert": (pki / "device.pem").read_bytes()}, ValueError, ("invalid cert",)),
        ({"key": (pki / "ca.key").read_bytes()}, ValueError, ("invalid key",)),
        ({"server_hostname": "example.com"}, ValueError, (wrong_cn,)),
        ({"server_hostname": None}, ValueError, ("CERT_REQUIRED requires server_hostname",)),
        ({"cadata": None}, OSError, (-30336, "MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED")),
        ({"cadata": (pki / "server.der").read_bytes()}, ValueError, (not_trusted,)),
        ({"cadata": str(pki / "ca.der")}, ValueError, ("invalid cert",)),
    ]
    for overrides, kind, args in cases:
        with pytest.raises(kind) as info:
            tls_client(tls_echo, **device_params(pki, **overrides)).close()
        assert info.value.args == args, overrides
    with pytest.raises(TypeError):
        tls_client(tls_echo, **device_params(pki, no_such_option=1))
    # CERT_OPTIONAL goes on whatever the verification says, as Mbed TLS does.
    wrong_ca = (pki / "server.der").read_bytes()
    tls = tls_client(tls_echo, **device_params(pki, cert_reqs=ussl.CERT_OPTIONAL, cadata=wrong_ca))
    tls.write(b"o")
    assert tls.read(6) == b"echo:o"
    tls.close()


def test_tls_context_api(pki: Path, tls_echo: Server) -> None:
    import tls as mp_tls

    for module in (ussl, mp_tls):
        ctx = module.SSLContext(module.PROTOCOL_TLS_CLIENT)
        assert ctx.verify_mode == module.CERT_NONE  # MicroPython's default, unlike CPython's
        ctx.load_cert_chain((pki / "device.der").read_bytes(), (pki / "device.key.der").read_bytes())
        if module is mp_tls:
            ctx.load_verify_locations((pki / "ca.der").read_bytes())
        else:
            ctx.load_verify_locations(cadata=(pki / "ca.der").read_bytes())
        ctx.verify_mode = module.CERT_REQUIRED
        sock = usocket.socket()
        sock.connect(("127.0.0.1", tls_echo.port))
        with pytest.raises(TypeError):
            ctx.wrap_socket(sock, nonsense=True)
        tls = ctx.wrap_socket(sock, server_hostname="localhost")
        tls.write(b"ctx")
        assert tls.read(8) == b"echo:ctx"
        tls.close()


def test_tls_server_side_and_lazy_handshake(pki: Path) -> None:
    listener = usocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    served: list[bytes | None] = []

    def serve() -> None:
        conn, _ = listener.accept()
        tls = ussl.wrap_socket(
            conn,
            server_side=True,
            key=(pki / "server.p8.der").read_bytes(),
            cert=(pki / "server.der").read_bytes(),
            cadata=(pki / "ca.der").read_bytes(),
            cert_reqs=ussl.CERT_REQUIRED,
        )
        served.append(tls.read(5))
        tls.write(b"world")
        tls.close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    sock = usocket.socket()
    sock.connect(("127.0.0.1", listener._s.getsockname()[1]))
    # do_handshake=False: the handshake happens with the first write, as with Mbed TLS.
    tls = ussl.wrap_socket(sock, **device_params(pki), do_handshake=False)
    assert tls.write(b"hello") == 5
    assert tls.read(5) == b"world"
    assert tls.read(1) == b""
    tls.close()
    server.join(WAIT)
    listener.close()
    assert served == [b"hello"]


def test_tls_timeout_is_final_and_poll_sees_buffered_data(pki: Path) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    go = threading.Event()

    def two_records(conn: socket.socket) -> None:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            go.wait(WAIT)
            tls.sendall(b"one\n")
            tls.sendall(b"two\n")
            recv_all(tls)

    server = Server(two_records)
    try:
        tls = tls_client(server)
        raw = tls._raw
        raw.settimeout(0.05)
        with pytest.raises(OSError) as info:
            tls.read(1)
        assert info.value.errno == errno.ETIMEDOUT
        go.set()
        raw.settimeout(None)
        # Measured on the unix port: after a timeout the TLS socket keeps failing with it.
        with pytest.raises(OSError) as info:
            tls.read(1)
        assert info.value.errno == errno.ETIMEDOUT
        tls.close()

        go.clear()
        tls = tls_client(server)
        tls.setblocking(False)
        assert tls.read(4) is None
        go.set()
        mp_poll = uselect.poll()
        mp_poll.register(tls, uselect.POLLIN)
        got = b""
        while got != b"one\ntwo\n":
            assert mp_poll.poll(int(WAIT * 1000)), got
            got += tls.read(4) or b""
        tls.close()
    finally:
        server.close()


# ---- umqtt.simple, unmodified, against mosquitto ---------------------------------------------------


def exchange(client: Any, topic_root: str) -> list[tuple[bytes, bytes]]:
    got: list[tuple[bytes, bytes]] = []
    client.set_callback(lambda topic, msg: got.append((topic, msg)))
    client.subscribe(topic_root + "/#", 1)
    client.publish(topic_root + "/q0", b"zero")
    client.publish(topic_root + "/q1", b"one", qos=1)
    deadline = time.monotonic() + WAIT
    while len(got) < 2 and time.monotonic() < deadline:
        if readable(client.sock, 0.1) or client.sock._pending():
            client.check_msg()
    client.disconnect()
    return got


def test_umqtt_simple_talks_to_mosquitto(mosquitto: Mosquitto) -> None:
    import umqtt.simple

    assert Path(umqtt.simple.__file__) == ROOT / "build" / "umqtt" / "umqtt" / "simple.py"
    client_id = "shim-" + uuid.uuid4().hex[:8]
    client = umqtt.simple.MQTTClient(client_id, mosquitto.host, mosquitto.port, keepalive=30)
    assert client.connect() == 0
    assert isinstance(client.sock, usocket.socket)
    topic = "shim/" + uuid.uuid4().hex[:8]
    got = exchange(client, topic)
    assert sorted(got) == [((topic + "/q0").encode(), b"zero"), ((topic + "/q1").encode(), b"one")]


def test_umqtt_simple_over_mutual_tls(pki: Path) -> None:
    import umqtt.simple

    tls = {
        "cafile": pki / "ca.pem",
        "certfile": pki / "server.pem",
        "keyfile": pki / "server.key",
        "require_certificate": True,
    }
    with Mosquitto(tls=tls) as broker:
        client = umqtt.simple.MQTTClient(
            "shim-tls", broker.host, broker.port, keepalive=30, ssl=True, ssl_params=device_params(pki)
        )
        assert client.connect() == 0
        assert isinstance(client.sock, ussl.SSLSocket)
        got = exchange(client, "shim/tls")
    assert sorted(got) == [(b"shim/tls/q0", b"zero"), (b"shim/tls/q1", b"one")]


# ---- the same script on the unix port and on the shim ----------------------------------------------

SAME_SCRIPT = """
import sys
import usocket as socket, uselect as select, ubinascii as binascii, utime as time
try:
    import ussl as ssl
except ImportError:
    import ssl
PORT, TLS_PORT, PKI = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def conn(cmd, port=PORT):
    s = socket.socket()
    s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    if cmd:
        s.write(cmd)
    return s

def err(f):
    try:
        return f()
    except OSError as e:
        return ("OSError", e.args[0])
    except ValueError as e:
        return ("ValueError",)

s = conn(b"a")
print("read", s.read(5), s.readline(), s.read(), s.read(3), s.read(), s.readline())
s.close()
print("closed", err(lambda: s.read(1)))
s = conn(b"x")
p = select.poll()
p.register(s, select.POLLIN)
print("poll", len(p.poll(10000)))
s.setblocking(False)
print("nb", s.read(10), s.read(10), s.readinto(bytearray(4)), s.readline(), err(lambda: s.recv(1)))
s.settimeout(0.05)
print("timeout", err(lambda: s.read(1)), err(lambda: s.recv(1)), err(lambda: s.readinto(bytearray(1))))
s.settimeout(0)
print("timeout 0", s.read(1))
s.settimeout(None)
print("write", s.write(b"12345", 2), s.write(b"abcdef", 1, 3), s.write("str"), s.send(b"!"))
s.close()
print("refused", err(lambda: conn(None, 1)))

print("hexlify", binascii.hexlify(b"\\x01\\xab"), binascii.hexlify(b"\\x01\\xab", ":"),
      binascii.hexlify("ab"))
print("base64", binascii.b2a_base64(b"hi"), binascii.b2a_base64(b"hi", newline=False),
      binascii.a2b_base64(b"aG\\nk="))
print("crc32", binascii.crc32(b"abc"), binascii.crc32(b"c", binascii.crc32(b"ab")),
      err(lambda: binascii.unhexlify(b"0")))
print("ticks", time.ticks_diff(5, 3), time.ticks_diff(3, 5), time.ticks_add(7, -2))

def rd(name):
    with open(PKI + "/" + name, "rb") as f:
        return f.read()

def tls(**kw):
    params = dict(key=rd("device.key.der"), cert=rd("device.der"), cadata=rd("ca.der"),
                  cert_reqs=ssl.CERT_REQUIRED, server_hostname="localhost")
    params.update(kw)
    s = conn(None, TLS_PORT)
    try:
        t = ssl.wrap_socket(s, **params)
    except Exception as e:
        s.close()
        return (type(e).__name__,) + tuple(e.args)
    t.write(b"hi")
    r = t.read(7)
    t.close()
    return r

print("tls", tls())
print("tls p8 path", tls(key=PKI + "/device.p8.der"))
print("tls pem", tls(key=rd("device.key")), tls(cert=rd("device.pem")))
print("tls host", tls(server_hostname="example.com"), tls(server_hostname=None))
print("tls ca", tls(cadata=rd("server.der")), tls(cadata=None), tls(cadata=PKI + "/ca.der"))
print("tls optional", tls(cert_reqs=ssl.CERT_OPTIONAL, cadata=rd("server.der")))
print("tls bundle", tls(cadata=rd("ca.der") + rd("server.der")), tls(cadata=rd("server.der") + rd("ca.der")))
try:
    ssl.wrap_socket(socket.socket(), nonsense=1)
except TypeError:
    print("tls kwarg TypeError")
"""


def test_same_script_same_output_on_the_unix_port(tmp_path: Path, pki: Path, tls_echo: Server) -> None:
    assert MICROPYTHON.exists(), "no MicroPython unix port in .venv: tools/setup.sh installs it"
    received: list[bytes] = []

    def plain(conn: socket.socket) -> None:
        cmd = conn.recv(1)
        if cmd == b"a":
            conn.sendall(b"abcdef\nghi")
        elif cmd == b"x":
            conn.sendall(b"xy")
            received.append(recv_all(conn))

    server = Server(plain)
    script = tmp_path / "same.py"
    script.write_text(SAME_SCRIPT)
    args = [str(script), str(server.port), str(tls_echo.port), str(pki)]
    try:
        outputs = []
        for cmd in ([str(MICROPYTHON), *args], [sys.executable, str(MPRUN), *args]):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT * 3, env=mprun_env())
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout)
    finally:
        server.close()
    unix_port, shim = outputs
    assert shim.splitlines() == unix_port.splitlines()
    assert "('OSError', 110)" in shim and "b'echo:hi'" in shim
    assert received == [b"12bcdstr!", b"12bcdstr!"]
    assert server.errors == []
