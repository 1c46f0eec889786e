"""firmware/package.json installs the library and umqtt.simple with `mpremote mip install`, on the virtual board."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import deploy
from vboard import VirtualBoard

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
PACKAGE = ROOT / "firmware" / "package.json"
IMPORTS = ("import iotjobs, iotjobs.runner, iotjobs.handlers, iotjobs.tls, umqtt.simple\n"
           "print('imported', iotjobs.__file__)")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An HTTP server standing in for GitHub (the repository's firmware/) and the micropython-lib index."""
    root = tmp_path_factory.mktemp("site")
    # What is committed, as GitHub would serve it: not files another engineer is halfway through editing.
    archive = subprocess.run(["git", "archive", "HEAD", "firmware/lib"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    (root / "firmware" / "package.json").write_bytes(PACKAGE.read_bytes())
    # The index serves umqtt.simple as micropython-lib does: package/<mpy>/<name>/latest.json, file/<hash>.
    mpy = root / "umqtt-simple.mpy"
    deploy.compile_mpy(deploy.UMQTT, mpy, None)
    short = hashlib.sha256(mpy.read_bytes()).hexdigest()[:8]
    (root / "index" / "file" / short[:2]).mkdir(parents=True)
    mpy.rename(root / "index" / "file" / short[:2] / short)
    listing = root / "index" / "package" / str(deploy.MPY_MAJOR) / "umqtt.simple" / "latest.json"
    listing.parent.mkdir(parents=True)
    listing.write_text(json.dumps({"hashes": [["umqtt/simple.mpy", short]], "version": "1.3.4"}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1], root
    finally:
        server.shutdown()
        server.server_close()


def mip_install(board: VirtualBoard, package: str, index: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "mpremote"), "connect", board.path, "mip", "install", "--index", index, package],
                          capture_output=True, text=True, timeout=60)


def installed(board: VirtualBoard) -> str:
    done = subprocess.run([str(BIN / "mpremote"), "connect", board.path, "exec", IMPORTS], capture_output=True,
                          text=True, timeout=30)
    return done.stdout + done.stderr


def test_package_json_lists_every_library_module() -> None:
    urls = json.loads(PACKAGE.read_text())["urls"]
    # What is committed: the modules GitHub would serve.
    tracked = subprocess.run(["git", "ls-files", "firmware/lib/iotjobs/*.py"], capture_output=True, text=True,
                             cwd=ROOT, check=True).stdout.split()
    assert sorted(source for _, source in urls) == sorted(p[len("firmware/"):] for p in tracked)
    for target, source in urls:
        assert target == "iotjobs/" + source.rsplit("/", 1)[1]


@pytest.mark.parametrize("form", ["local package.json", "repository URL like github:OWNER/REPO/firmware"])
def test_mip_installs_the_library_and_umqtt(form: str, site: tuple[str, Path], tmp_path: Path) -> None:
    url, served = site
    package = str(served / "firmware" / "package.json") if form.startswith("local") else url + "/firmware"
    with VirtualBoard(tmp_path / "board", heapsize="160k") as board:
        done = mip_install(board, package, url + "/index")
        assert done.returncode == 0, done.stdout + done.stderr
        lib = board.directory / "lib"
        for _, source in json.loads(PACKAGE.read_text())["urls"]:
            assert (lib / source[len("lib/"):]).read_bytes() == (served / "firmware" / source).read_bytes()
        assert (lib / "umqtt" / "simple.mpy").is_file()
        assert "imported %s" % (lib / "iotjobs" / "__init__.py") in installed(board)
