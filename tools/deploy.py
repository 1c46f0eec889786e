"""iotjobs-deploy: compile the library, convert the certificates and copy what changed onto a board with mpremote.

A board whose firmware has iotjobs frozen in (built with firmware/manifest.py) is asked, and gets no copy of the
library: only the board's files, the config and the certificates (and umqtt.simple where it has none)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BOARDS = ROOT / "boards"
LIBRARY = ROOT / "firmware" / "lib" / "iotjobs"
COMMON = BOARDS / "common"
UMQTT = ROOT / "build" / "umqtt" / "umqtt" / "simple.py"
STAGING = ROOT / "build" / "deploy"
# -O1 drops asserts and `if __debug__:` blocks but keeps line numbers, so a traceback on the board's console
# still points at a line; -O3 would save only ~6% more (measured: 27.2 KB -> 25.6 KB for the library).
OPTIMIZE = "-O1"
# The .mpy major version mpy-cross 1.29 emits; a board loads only its own major version (bytecode is stable
# within it: v6 is MicroPython 1.19 and later).
MPY_MAJOR = 6
# Where the board keeps the DER files the config points at.
CERT_TARGETS = {"cert": "certs/cert.der", "key": "certs/key.der", "ca": "certs/ca.der"}
TRANSPORTS = ("mqtt", "https")
MARK = "DEPLOY-PROBE "
# What the board needs to connect (the library refuses other thing names before sending anything).
THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
# Written on the board by config jobs and overlaid on config.json there: deploy never copies or removes it.
SETTINGS = "settings.json"

# Runs on the board: its version, whether it has umqtt.simple, whether iotjobs is frozen into its firmware, and
# the SHA-256 of each file we may write. Only .frozen is searched for iotjobs: a copy in /lib does not count.
PROBE = """
import sys, os, gc, json, hashlib, binascii
_p = sys.path[:]
sys.path[:] = ['.frozen']
try:
    import iotjobs
    _f = True
except ImportError:
    _f = False
sys.path[:] = _p
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    d = hashlib.sha256()
    b = bytearray(512)
    m = memoryview(b)
    while True:
        n = f.readinto(b)
        if not n:
            break
        d.update(m[:n])
    f.close()
    return binascii.hexlify(d.digest()).decode()
try:
    import umqtt.simple
    _u = getattr(umqtt.simple, '__file__', 'built in')
except ImportError:
    _u = None
try:
    _l = os.listdir('lib/iotjobs')
except OSError:
    _l = []
try:
    with open(%(settings)r) as _sf:
        _s = sorted(json.load(_sf))
except Exception:
    _s = []
gc.collect()
print(%(mark)r + json.dumps({'version': list(sys.implementation.version[:3]),
    'mpy': getattr(sys.implementation, '_mpy', 0), 'platform': sys.platform, 'umqtt': _u, 'frozen': _f,
    'heap': gc.mem_free() + gc.mem_alloc(), 'lib': _l, 'settings': _s, 'hashes': [_h(p) for p in %(paths)r]}))
"""

MKDIRS = """
import os
for d in %r:
    try:
        os.mkdir(d)
    except OSError:
        pass
"""


class DeployError(Exception):
    """A problem the user can fix; its message says how."""


@dataclass
class Item:
    """One file for the board: where it goes, where it is staged, its size and SHA-256."""

    target: str
    source: Path
    size: int
    sha256: str


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def item(target: str, source: Path) -> Item:
    return Item(target, source, source.stat().st_size, sha256(source))


def load_board(name: str) -> dict[str, Any]:
    path = BOARDS / name / "board.json"
    if not path.is_file():
        known = sorted(p.parent.name for p in BOARDS.glob("*/board.json"))
        raise DeployError("unknown board %r; known boards: %s" % (name, ", ".join(known)))
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def read_config(path: Path) -> dict[str, Any]:
    """The JSON object in path; a DeployError that says where it stops being JSON."""
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DeployError("%s:%d:%d: not JSON: %s" % (path, e.lineno, e.colno, e.msg)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DeployError("cannot read %s: %s" % (path, e)) from None
    if not isinstance(settings, dict):
        raise DeployError("%s: a JSON object {...} is needed, not %s" % (path, type(settings).__name__))
    return settings


def cert_source(config: Path, certs: Path | None, name: str) -> Path:
    return Path(name) if Path(name).is_absolute() else (certs or config.parent) / name


def check_config(config: Path, board: dict[str, Any], certs: Path | None) -> dict[str, Any]:
    """config read and checked for what the board needs to connect, before anything is staged or copied."""
    settings = read_config(config)
    problems = []
    endpoint = settings.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint or "/" in endpoint or endpoint.count(":") == 1:
        problems.append('"endpoint" must be the broker\'s host name or address, without scheme or port '
                        "(aws iot describe-endpoint --endpoint-type iot:Data-ATS), not %r" % (endpoint,))
    port = settings.get("port", 1883)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        problems.append('"port" must be a number 1-65535, not %r' % (port,))
    thing = settings.get("thing")
    if not isinstance(thing, str) or not THING_NAME.fullmatch(thing):
        problems.append('"thing" must be a thing name (1-128 of a-z A-Z 0-9 : _ -), not %r' % (thing,))
    given = [key for key in CERT_TARGETS if settings.get(key)]
    if given and len(given) < len(CERT_TARGETS):
        problems.append('"cert", "key" and "ca" go together (all three for TLS, none for plain MQTT); only %s given'
                        % ", ".join(given))
    for key in given:
        source = cert_source(config, certs, str(settings[key]))
        if not source.is_file():
            problems.append('"%s" names %s, which does not exist (use --certs DIR for their folder)' % (key, source))
    transport = settings.get("transport", "mqtt")
    if transport not in TRANSPORTS:
        problems.append('"transport" is "mqtt" or "https", not %r' % (transport,))
    elif transport == "https" and not given:
        problems.append('"transport": "https" needs "cert", "key" and "ca": the HTTPS device API takes a client '
                        "certificate only")
    wifi = settings.get("wifi")
    if board.get("wifi") and (not isinstance(wifi, dict) or not isinstance(wifi.get("ssid"), str)):
        problems.append('"wifi" must be {"ssid": ..., "password": ...}: this board joins a WiFi network')
    if problems:
        raise DeployError("%s: %s" % (config, "; ".join(problems)))
    return settings


def _partial(dest: Path) -> Path:
    # Staged files are replaced whole, so a deploy or demo running at the same time never reads half a file.
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.with_name("%s.%d.part" % (dest.name, os.getpid()))


def put(dest: Path, data: bytes) -> None:
    part = _partial(dest)
    part.write_bytes(data)
    os.replace(part, dest)


def compile_mpy(source: Path, dest: Path, arch: str | None) -> None:
    part = _partial(dest)
    command = [str(BIN / "mpy-cross"), OPTIMIZE, "-o", str(part)]
    if arch:
        command.append("-march=" + arch)
    # -s names the source in tracebacks as the board will see it, not as a path on this machine.
    command += ["-s", dest.with_suffix(".py").name, str(source)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        part.unlink(missing_ok=True)
        raise DeployError("mpy-cross failed on %s:\n%s" % (source, done.stderr.strip()))
    os.replace(part, dest)


def to_der(source: Path, dest: Path, kind: str) -> None:
    """Write source as DER: the boards' TLS (mbedTLS in MicroPython) takes DER only."""
    data = source.read_bytes()
    if b"-----BEGIN" not in data:
        put(dest, data)  # already DER
        return
    if data.count(b"-----BEGIN CERTIFICATE-----") > 1:
        print("deploy: warning: %s holds several certificates; a board loads only the first" % source)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise DeployError("openssl is needed to convert %s to DER (Debian: apt-get install openssl)" % source)
    command = [openssl, "pkey" if kind == "key" else "x509", "-in", str(source), "-outform", "DER"]
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0:
        raise DeployError("cannot convert %s (%s) to DER: %s" % (source, kind, done.stderr.decode().strip()))
    put(dest, done.stdout)


def stage(board_name: str, board: dict[str, Any], config: Path | None, certs: Path | None) -> tuple[list[Item], Item]:
    """Build the board's files under build/deploy/<board>/: (the files to sync, umqtt/simple.mpy if needed)."""
    out = STAGING / board_name
    arch = board.get("mpy_cross_arch")
    items: list[Item] = []
    for source in sorted(LIBRARY.glob("*.py")):
        target = "lib/iotjobs/%s.mpy" % source.stem
        compile_mpy(source, out / target, arch)
        items.append(item(target, out / target))
    for source in sorted(COMMON.glob("*.py")):
        target = "lib/%s.mpy" % source.stem
        compile_mpy(source, out / target, arch)
        items.append(item(target, out / target))
    # main.py stays source: it is what a user reads and edits on the board.
    for name in ("main.py", "board.json"):
        put(out / name, (BOARDS / board_name / name).read_bytes())
        items.append(item(name, out / name))
    if config is not None:
        settings = read_config(config)
        for key, target in CERT_TARGETS.items():
            if not settings.get(key):
                continue
            source = cert_source(config, certs, str(settings[key]))
            if not source.is_file():
                raise DeployError("config %s names %s %r, but %s does not exist (use --certs DIR)"
                                  % (config, key, settings[key], source))
            to_der(source, out / target, key)
            items.append(item(target, out / target))
            settings[key] = target
        put(out / "config.json", (json.dumps(settings, indent=1, sort_keys=True) + "\n").encode())
        items.append(item("config.json", out / "config.json"))
    if not UMQTT.is_file():
        raise DeployError("%s is missing; run: bash tools/setup.sh" % UMQTT)
    compile_mpy(UMQTT, out / "lib/umqtt/simple.mpy", arch)
    umqtt = item("lib/umqtt/simple.mpy", out / "lib/umqtt/simple.mpy")
    # What an earlier run staged and this one does not (a removed module, an old config) must not linger.
    keep = {out / i.target for i in items} | {umqtt.source}
    for path in out.rglob("*"):
        if path.is_file() and path not in keep and not path.name.endswith(".part"):
            path.unlink(missing_ok=True)
    return items, umqtt


def print_plan(items: list[Item]) -> None:
    width = max(len(i.target) for i in items)
    for i in items:
        print("  %-*s %7d B  sha256 %s" % (width, i.target, i.size, i.sha256))
    print("  %d files, %d bytes" % (len(items), sum(i.size for i in items)))


class Board:
    """The board behind one serial port, driven by the real mpremote (one session per call)."""

    def __init__(self, port: str, timeout: float) -> None:
        self.port = port
        self.timeout = timeout

    def mpremote(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run([str(BIN / "mpremote"), "connect", self.port, *args], capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeployError("the board on %s did not answer within %g s: is MicroPython running on it, and is no "
                              "other program (a serial terminal, another mpremote) using the port?"
                              % (self.port, timeout)) from None
        if done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise DeployError("mpremote on %s failed: %s" % (self.port, detail[-1] if detail else done.returncode))
        return done

    def probe(self, targets: list[str]) -> dict[str, Any]:
        done = self.mpremote(["exec", PROBE % {"mark": MARK, "paths": targets, "settings": SETTINGS}], self.timeout)
        for line in done.stdout.splitlines():
            if line.startswith(MARK):
                found: dict[str, Any] = json.loads(line[len(MARK):])
                found["hashes"] = dict(zip(targets, found["hashes"]))
                return found
        raise DeployError("the board on %s answered, but not as MicroPython with hashlib does:\n%s"
                          % (self.port, (done.stdout + done.stderr).strip()[-500:]))

    def copy(self, items: list[Item], remove: list[str]) -> None:
        """Copy items and remove paths in one mpremote session, printing each file as mpremote reaches it."""
        dirs = sorted({"/".join(i.target.split("/")[: n + 1]) for i in items for n in range(i.target.count("/"))})
        args = ["exec", MKDIRS % dirs]
        for path in remove:
            args += ["+", "fs", "rm", ":" + path]
        for i in items:
            args += ["+", "fs", "cp", str(i.source), ":" + i.target]
        by_target = {i.target: i for i in items}
        process = subprocess.Popen([str(BIN / "mpremote"), "connect", self.port, *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        count = 0
        output = []
        for line in process.stdout:
            output.append(line)
            found = re.match(r"cp \S+ :(\S+)$", line.strip())
            if found and found.group(1) in by_target:
                count += 1
                copied = by_target[found.group(1)]
                print("deploy: [%d/%d] %s (%d B)" % (count, len(items), copied.target, copied.size), flush=True)
            elif line.startswith("rm :"):
                print("deploy: removed %s" % line[4:].strip(), flush=True)
        if process.wait() != 0:
            raise DeployError("copying to %s failed:\n%s" % (self.port, "".join(output[-5:]).strip()))


def check_platform(found: dict[str, Any], board_name: str, board: dict[str, Any], port: str, force: bool) -> None:
    """Refuse to deploy one board's files onto another kind of board (an ESP32 build onto the unix port, ...)."""
    wanted = board.get("platform")
    if wanted and found["platform"] != wanted and not force:
        raise DeployError("the board on %s says it is %r, but --board %s is for %r boards: name the right --board "
                          "(or --force to deploy anyway)" % (port, found["platform"], board_name, wanted))


def check_runtime(found: dict[str, Any], board: dict[str, Any], port: str) -> None:
    version = ".".join(str(n) for n in found["version"])
    mpy = found["mpy"] & 0xFF
    if mpy != MPY_MAJOR:
        raise DeployError("MicroPython %s on %s loads .mpy v%d, but this mpy-cross emits v%d: flash MicroPython "
                          "%s or newer (see README, 'Flash a real board')"
                          % (version, port, mpy, MPY_MAJOR, board.get("micropython_min", "1.22")))
    heap_kb = board.get("heap_kb")
    if heap_kb and found["heap"] < heap_kb * 1024 * 0.8:
        print("deploy: warning: the board has a %d KB heap; %s boards usually have %d KB"
              % (found["heap"] // 1024, board.get("name", "these"), heap_kb))


def deploy(args: argparse.Namespace) -> int:
    started = time.monotonic()
    board = load_board(args.board)
    config = None if args.no_config else args.config or BOARDS / args.board / "config.json"
    if config is not None and not config.is_file():
        raise DeployError("config file %s does not exist: copy boards/%s/config.example.json there and fill it in, "
                          "or name one with --config FILE (--no-config deploys the code alone and leaves the "
                          "board's config.json as it is)" % (config, args.board))
    certs = args.certs or (BOARDS / args.board / "certs" if (BOARDS / args.board / "certs").is_dir() else None)
    if config is not None:
        check_config(config, board, certs)
    items, umqtt = stage(args.board, board, config, certs)
    if args.dry_run:
        print("deploy: plan for %s (dry run: nothing sent; umqtt.simple is added only if the board lacks it, and "
              "lib/iotjobs/ is left out if the board has iotjobs frozen in)" % args.board)
        print_plan(items + [umqtt])
        return 0
    if args.port is None:
        raise DeployError("--port is needed (e.g. /dev/ttyUSB0; or --dry-run to see the plan)")
    if "/" in args.port and not os.path.exists(args.port):
        raise DeployError("no serial port %s: is the board plugged in? (ls /dev/ttyUSB* /dev/ttyACM*)" % args.port)
    device = Board(args.port, args.timeout)
    targets = [i.target for i in items] + [umqtt.target]
    found = device.probe(targets)
    check_platform(found, args.board, board, args.port, args.force)
    check_runtime(found, board, args.port)
    print("deploy: %s: MicroPython %s (%s), heap %d KB"
          % (args.port, ".".join(str(n) for n in found["version"]), found["platform"], found["heap"] // 1024))
    if found.get("frozen"):
        # Frozen modules come before /lib on a board's sys.path: a copy there would never be imported.
        items = [i for i in items if not i.target.startswith("lib/iotjobs/")]
        print("deploy: iotjobs is frozen into this board's firmware: the library is not copied (to change it, "
              "rebuild the firmware with firmware/manifest.py)")
    # umqtt.simple is frozen into ESP32 firmware; install ours only where the board has none (or has ours).
    if found["umqtt"] is None or "lib/umqtt/" in found["umqtt"]:
        items.append(umqtt)
    # A leftover .py (from mip or a manual copy) would be imported instead of our .mpy; with the library frozen,
    # every file in lib/iotjobs/ is a leftover.
    wanted = {i.target for i in items}
    remove = ["lib/iotjobs/" + name for name in found["lib"] if "lib/iotjobs/" + name not in wanted]
    changed = [i for i in items if found["hashes"].get(i.target) != i.sha256]
    for i in items:
        if i not in changed:
            print("deploy: unchanged %s" % i.target)
    if changed or remove:
        device.copy(changed, remove)
    after = device.probe([i.target for i in items])
    wrong = [i.target for i in items if after["hashes"].get(i.target) != i.sha256]
    if wrong:
        raise DeployError("after copying, these files on %s do not match: %s" % (args.port, ", ".join(wrong)))
    print("deploy: %d copied (%d B), %d unchanged, %d removed; all %d files verified by SHA-256 in %.1f s"
          % (len(changed), sum(i.size for i in changed), len(items) - len(changed), len(remove), len(items),
             time.monotonic() - started))
    if found.get("settings"):
        print("deploy: the board's %s (from config jobs) stays, and its keys win over config.json's: %s"
              % (SETTINGS, ", ".join(found["settings"])))
    print("deploy: reset the board (or `mpremote connect %s exec \"import main\"`) to run main.py" % args.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iotjobs-deploy", description=__doc__)
    parser.add_argument("--board", required=True, help="a folder of boards/ with a board.json: esp32, esp32s3, ...")
    parser.add_argument("--port", help="the board's serial port, e.g. /dev/ttyUSB0")
    parser.add_argument("--config", type=Path, help="config.json to install (default: boards/BOARD/config.json)")
    parser.add_argument("--no-config", action="store_true", help="deploy the code alone; the board keeps its config")
    parser.add_argument("--certs", type=Path, help="folder of the files the config names (default: boards/BOARD/certs,"
                        " else the config's folder)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (files, sizes, hashes); touch nothing")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds the board has to answer (default 20)")
    parser.add_argument("--force", action="store_true", help="deploy even onto a board of another platform")
    args = parser.parse_args(argv)
    try:
        return deploy(args)
    except DeployError as e:
        print("iotjobs-deploy: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
