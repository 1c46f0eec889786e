"""The esp32like runtime: MicroPython v1.27.0's unix port built from source as an ESP32 is (32-bit, single floats).

Two binaries and the matching mpy-cross, under build/esp32like/bin:
- micropython-esp32like: iotjobs and umqtt.simple frozen in, through firmware/manifest.py;
- micropython-esp32like-mpy: the same build without them, for the library as .mpy files;
- mpy-cross: from the same source.

The source, first found: $IOTJOBS_MICROPYTHON_SRC (a tarball or a checkout), the offline tarball
../shared/micropython/ beside this checkout (SHA-256 pinned below), else a shallow git clone of the tag.
Run as a script (tools/setup.sh --esp32like does) it builds what is missing or stale and says what it did.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = "1.27.0"
SOURCE_ENV = "IOTJOBS_MICROPYTHON_SRC"
TARBALL = ROOT.parent / "shared" / "micropython" / ("micropython-%s-unix-src.tar.xz" % VERSION)
TARBALL_SHA256 = "76c362767a0848254323ba4b0e27a6afe63cb588f0ddae13cb1e038cbe70e8a6"
GIT_URL = "https://github.com/micropython/micropython.git"
GIT_SUBMODULES = ("lib/mbedtls", "lib/micropython-lib")

OUT = ROOT / "build" / "esp32like"
BIN = OUT / "bin"
FROZEN = BIN / "micropython-esp32like"
UNFROZEN = BIN / "micropython-esp32like-mpy"
MPY_CROSS = BIN / "mpy-cross"
MANIFEST = ROOT / "tools" / "esp32like_manifest.py"
# What the frozen binary is built from (relative to the checkout): a change to any of them rebuilds it, which
# recompiles only frozen_content.c and links.
FROZEN_INPUTS = ("tools/esp32like_manifest.py", "firmware/manifest.py")
FROZEN_TREES = ("firmware/lib/iotjobs", "build/umqtt")
# As a plain ESP32: 32-bit objects and small ints, single-precision floats; no btree or ffi (not in the source).
MAKE_FLAGS = ("MICROPY_FORCE_32BIT=1", "MICROPY_PY_BTREE=0", "MICROPY_PY_FFI=0",
              "CFLAGS_EXTRA=-DMICROPY_FLOAT_IMPL=MICROPY_FLOAT_IMPL_FLOAT")
# Recorded with a build: a change here (or of the source asked for) rebuilds everything.
RECIPE = "v%s %s" % (VERSION, " ".join(MAKE_FLAGS))
JOBS = "-j%d" % max(2, os.cpu_count() or 2)
INSTALL_HINT = ("Debian/Ubuntu: sudo apt-get install -y build-essential gcc-multilib (gcc-multilib gives gcc -m32 "
                "its 32-bit headers and libraries); or run: bash tools/setup.sh --esp32like")


class BuildError(Exception):
    """The runtime could not be built; the message says what failed and what to install."""


def frozen_inputs_digest(root: Path = ROOT) -> str:
    """SHA-256 over the manifests and every frozen source under root, by path and content."""
    digest = hashlib.sha256()
    files = [root / name for name in FROZEN_INPUTS]
    files += sorted(p for tree in FROZEN_TREES for p in (root / tree).rglob("*.py"))
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"(missing)")
    return digest.hexdigest()


def _state(out: Path) -> dict[str, str]:
    try:
        state: dict[str, str] = json.loads((out / "state.json").read_text())
        return state
    except (OSError, ValueError):
        return {}


def _save_state(out: Path, state: dict[str, str]) -> None:
    part = out / ("state.json.%d" % os.getpid())
    part.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(part, out / "state.json")


def _binaries(out: Path) -> tuple[Path, Path, Path]:
    """(frozen, unfrozen, mpy-cross) as built into out."""
    return (out / FROZEN.relative_to(OUT), out / UNFROZEN.relative_to(OUT), out / MPY_CROSS.relative_to(OUT))


def stale(out: Path = OUT) -> str | None:
    """Why the runtime needs building (a short reason), or None when every binary is there and current."""
    missing = [p.name for p in _binaries(out) if not p.exists()]
    if missing:
        return "not built yet (%s missing)" % ", ".join(missing)
    state = _state(out)
    if state.get("recipe") != RECIPE or state.get("asked") != os.environ.get(SOURCE_ENV, ""):
        return "the build settings or %s changed" % SOURCE_ENV
    if state.get("frozen") != frozen_inputs_digest():
        return "the frozen library or a manifest changed"
    return None


def _log(message: str) -> None:
    print("esp32like: %s" % message, file=sys.stderr, flush=True)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract(out: Path, tarball: Path, sha256: str | None) -> tuple[Path, str]:
    """The tarball unpacked under out/src (once per tarball); (source tree, its identity)."""
    actual = _file_sha256(tarball)
    if sha256 is not None and actual != sha256:
        raise BuildError("%s has SHA-256 %s, not the pinned %s: a damaged or different copy; remove it or point %s "
                         "at a good one" % (tarball, actual, sha256, SOURCE_ENV))
    identity = "tarball sha256 %s" % actual
    tree = out / "src"
    if _state(out).get("extracted") != identity or not tree.is_dir():
        _log("unpacking %s" % tarball)
        shutil.rmtree(tree, ignore_errors=True)
        unpacking = out / "src.partial"
        shutil.rmtree(unpacking, ignore_errors=True)
        with tarfile.open(tarball) as archive:
            # The "data" filter (Python 3.11.4+, 3.10.12+) refuses links and paths that leave the folder.
            if hasattr(tarfile, "data_filter"):
                archive.extractall(unpacking, filter="data")
            else:
                archive.extractall(unpacking)
        tops = list(unpacking.iterdir())
        if len(tops) != 1 or not (tops[0] / "py").is_dir():
            raise BuildError("%s is not a MicroPython source tarball (no single top folder holding py/)" % tarball)
        os.replace(tops[0], tree)
        shutil.rmtree(unpacking)
        _save_state(out, {**_state(out), "extracted": identity})
    return tree, identity


def _git(args: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise BuildError("git is needed to fetch the MicroPython source (apt-get install git), or set %s to a "
                         "v%s tarball or checkout" % (SOURCE_ENV, VERSION)) from None
    if done.returncode != 0:
        raise BuildError("git %s failed: %s\nSet %s to a MicroPython v%s tarball or checkout to build offline"
                         % (" ".join(args), done.stderr.strip()[-500:], SOURCE_ENV, VERSION))
    return done.stdout.strip()


def _clone(out: Path) -> tuple[Path, str]:
    tree = out / "src-git"
    if not (tree / "py").is_dir():
        _log("cloning %s v%s (no %s, no offline tarball at %s)" % (GIT_URL, VERSION, SOURCE_ENV, TARBALL))
        shutil.rmtree(tree, ignore_errors=True)
        _git(["clone", "--quiet", "--depth", "1", "--branch", "v" + VERSION, GIT_URL, str(tree)])
        _git(["submodule", "update", "--quiet", "--init", "--depth", "1", *GIT_SUBMODULES], cwd=tree)
    return tree, "git %s" % _git(["rev-parse", "HEAD"], cwd=tree)


def source(out: Path = OUT) -> tuple[Path, str]:
    """The MicroPython source tree to build and a string that identifies it, from the first place that has it."""
    given = os.environ.get(SOURCE_ENV)
    if given:
        path = Path(given).expanduser().resolve()
        if path.is_file():
            return _extract(out, path, None)
        if (path / "py").is_dir() and (path / "ports" / "unix").is_dir():
            return path, "checkout %s" % path
        raise BuildError("%s=%s is neither a MicroPython source tarball nor a checkout (with py/ and ports/unix/)"
                         % (SOURCE_ENV, given))
    if TARBALL.is_file():
        return _extract(out, TARBALL, TARBALL_SHA256)
    return _clone(out)


def _check_compiler() -> None:
    for tool in ("make", "gcc"):
        if shutil.which(tool) is None:
            raise BuildError("%s is missing. %s" % (tool, INSTALL_HINT))
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.c"
        probe.write_text("#include <stdio.h>\nint main(void) { return puts(\"\") < 0; }\n")
        done = subprocess.run(["gcc", "-m32", str(probe), "-o", str(Path(tmp) / "probe")],
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError("gcc cannot build 32-bit programs (gcc -m32: %s). %s"
                         % (done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode,
                            INSTALL_HINT))


def _make(out: Path, what: str, directory: Path, args: list[str], env: dict[str, str]) -> None:
    command = ["make", "-C", str(directory), JOBS, *args]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, **env))
    if done.returncode != 0:
        log = out / ("%s.log" % what.split()[0])
        log.write_text(done.stdout + done.stderr)
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BuildError("building %s failed (%s, exit %d); full output in %s:\n%s\n%s"
                         % (what, " ".join(command), done.returncode, log, tail, INSTALL_HINT))
    _log("built %s in %.0f s" % (what, time.monotonic() - started))


def _publish(built: Path, dest: Path) -> None:
    # Replaced whole: a test may be starting the old binary while this one is written.
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name("%s.%d" % (dest.name, os.getpid()))
    shutil.copy2(built, part)
    os.replace(part, dest)


def _clone_build_tree(source_dir: Path, dest: Path) -> None:
    """A copy of a unix port build tree that make takes as up to date: its dependency files name the new place."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source_dir, dest, symlinks=True)
    old, new = str(source_dir), str(dest)
    for deps in dest.rglob("*.P"):
        text = deps.read_text()
        if old in text:
            deps.write_text(text.replace(old, new))


def build(out: Path = OUT) -> bool:
    """Build what is missing or stale into out; True when something was built. Serialized across processes."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        reason = stale(out)
        if reason is None:
            return False
        _log("building MicroPython v%s, 32-bit, single floats: %s" % (VERSION, reason))
        started = time.monotonic()
        tree, identity = source(out)
        # An unpacked tarball under build/ sits in this repository's git tree: without a tag given, the banner
        # and os.uname() would carry this repository's commit as MicroPython's version.
        env = {"MICROPY_GIT_TAG": "v" + VERSION} if identity.startswith("tarball") else {}
        config = "%s | %s" % (identity, RECIPE)
        state = _state(out)
        if state.get("config") != config:
            for old in ("mpy-cross", "unix-mpy", "unix-frozen", "bin"):
                shutil.rmtree(out / old, ignore_errors=True)
            state = {"extracted": state.get("extracted", ""), "config": config, "recipe": RECIPE}
            _save_state(out, state)
        _check_compiler()
        frozen, unfrozen, mpy_cross = _binaries(out)
        built_mpy_cross = out / "mpy-cross" / "mpy-cross"
        if not mpy_cross.exists():
            _make(out, "mpy-cross", tree / "mpy-cross", ["BUILD=%s" % built_mpy_cross.parent], env)
            _publish(built_mpy_cross, mpy_cross)
        # The port's own frozen modules (asyncio, ssl, mip) are in both builds, as in ESP32 firmware.
        common = [*MAKE_FLAGS, "MICROPY_MPYCROSS=%s" % built_mpy_cross,
                  "MICROPY_MPYCROSS_DEPENDENCY=%s" % built_mpy_cross]
        port = tree / "ports" / "unix"
        if not unfrozen.exists():
            _make(out, "unix-mpy (the library not frozen)", port, [*common, "BUILD=%s" % (out / "unix-mpy")], env)
            _publish(out / "unix-mpy" / "micropython", unfrozen)
        digest = frozen_inputs_digest()
        if not frozen.exists() or state.get("frozen") != digest:
            missing = [name for name in FROZEN_INPUTS + FROZEN_TREES if not (ROOT / name).exists()]
            if missing:
                raise BuildError("the frozen manifest needs %s; run: bash tools/setup.sh" % ", ".join(missing))
            if not (out / "unix-frozen").is_dir():
                # Both builds compile the same C with the same flags; only frozen_content.c differs.
                _clone_build_tree(out / "unix-mpy", out / "unix-frozen")
            # makemanifest.py recompiles a module only when its source is newer than its .mpy: a manifest's
            # changed opt= (or a source put back older) would keep the old bytecode. All of it is ~2 s.
            shutil.rmtree(out / "unix-frozen" / "frozen_mpy", ignore_errors=True)
            _make(out, "unix-frozen (iotjobs frozen)", port,
                  [*common, "BUILD=%s" % (out / "unix-frozen"), "FROZEN_MANIFEST=%s" % MANIFEST], env)
            _publish(out / "unix-frozen" / "micropython", frozen)
            _save_state(out, {**_state(out), "frozen": digest})
        _save_state(out, {**_state(out), "asked": os.environ.get(SOURCE_ENV, "")})
        _log("ready in %.0f s: %s" % (time.monotonic() - started, frozen.parent))
        return True


def ensure() -> None:
    """Build the runtime if it is missing or stale; quick when it is current."""
    if stale() is not None:
        build()


def main() -> int:
    try:
        if not build():
            _log("up to date (%s)" % BIN)
    except BuildError as e:
        print("esp32like: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
