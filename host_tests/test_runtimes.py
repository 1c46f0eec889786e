"""Each MicroPython runtime is what its name says: the esp32like ones are v1.27.0, 32-bit, single floats, with
the library frozen in (esp32like) or loaded as .mpy files from the same build's mpy-cross (esp32like-mpy)."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path

import pytest

import esp32like
from device import PORTABLE, ROOT, RUNTIMES, run
from mpylib import ESP32LIKE_MPY_LIB, MPY_LIB


def test_the_suite_runs_on_three_runtimes() -> None:
    assert RUNTIMES == ("cpython", "unix64", "esp32like")


def test_unix64_is_the_64_bit_pypi_port_with_the_library_as_mpy() -> None:
    facts = run("unix64", PORTABLE / "runtime_facts.py")
    assert facts["maxsize"] == 2**63 - 1 and not facts["single_float"]
    assert facts["iotjobs"] == {"file": str(MPY_LIB / "iotjobs" / "__init__.mpy"), "frozen": False}


def test_esp32like_is_a_32_bit_single_float_v1_27_with_the_library_frozen() -> None:
    facts = run("esp32like", PORTABLE / "runtime_facts.py")
    assert facts["version"] == [1, 27, 0]
    assert facts["maxsize"] == 2**31 - 1 and facts["single_float"]
    assert facts["iotjobs"]["frozen"] and facts["umqtt.simple"]["frozen"], facts.stdout


def test_esp32like_mpy_loads_the_library_compiled_by_its_own_mpy_cross() -> None:
    facts = run("esp32like-mpy", PORTABLE / "runtime_facts.py")
    assert facts["version"] == [1, 27, 0] and facts["maxsize"] == 2**31 - 1 and facts["single_float"]
    assert facts["iotjobs"] == {"file": str(ESP32LIKE_MPY_LIB / "iotjobs" / "__init__.mpy"), "frozen": False}
    assert facts["umqtt.simple"] == {"file": str(ESP32LIKE_MPY_LIB / "umqtt" / "simple.mpy"), "frozen": False}


def test_esp32like_mpy_runs_the_protocol_cases() -> None:
    # The build the benchmarks measure .mpy on: a smoke test that the library works there.
    done = run("esp32like-mpy", PORTABLE / "protocol_cases.py", heapsize="512k")
    last = done.stdout.strip().splitlines()[-1:]
    assert last and last[0].startswith("DONE ") and last[0].endswith(" 0"), done.stdout + done.stderr


def test_the_frozen_build_is_stale_when_a_frozen_source_or_a_manifest_changes(tmp_path: Path) -> None:
    assert esp32like.stale() is None
    for name in (*esp32like.FROZEN_INPUTS, *esp32like.FROZEN_TREES):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        else:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, tmp_path / name)
    # The copy is what the runtime was built from; each change below is a rebuild of the frozen binary.
    assert esp32like.frozen_inputs_digest(tmp_path) == esp32like.frozen_inputs_digest()
    seen = {esp32like.frozen_inputs_digest(tmp_path)}
    for changed in ("firmware/lib/iotjobs/runner.py", "build/umqtt/umqtt/simple.py", "firmware/manifest.py",
                    "tools/esp32like_manifest.py"):
        with (tmp_path / changed).open("a") as f:
            f.write("\n")
        seen.add(esp32like.frozen_inputs_digest(tmp_path))
    (tmp_path / "firmware/lib/iotjobs/extra.py").write_text("")
    seen.add(esp32like.frozen_inputs_digest(tmp_path))
    assert len(seen) == 6


def test_a_failed_build_says_what_failed_and_what_to_install(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = tmp_path / "micropython"
    for folder in ("py", "ports/unix", "mpy-cross"):
        (checkout / folder).mkdir(parents=True)
    (checkout / "mpy-cross" / "Makefile").write_text("all:\n\t@echo 'fatal error: stdio.h: No such file'; false\n")
    monkeypatch.setenv(esp32like.SOURCE_ENV, str(checkout))
    with pytest.raises(esp32like.BuildError) as failed:
        esp32like.build(tmp_path / "out")
    message = str(failed.value)
    assert "building mpy-cross failed" in message and "fatal error: stdio.h" in message
    assert "apt-get install -y build-essential gcc-multilib" in message
    assert "fatal error" in (tmp_path / "out" / "mpy-cross.log").read_text()


def test_a_source_that_is_not_micropython_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(esp32like.SOURCE_ENV, str(tmp_path))
    with pytest.raises(esp32like.BuildError, match="is neither a MicroPython source tarball nor a checkout"):
        esp32like.build(tmp_path / "out")


def fake_source_tarball(path: Path) -> Path:
    """A tarball shaped like MicroPython's source: one top folder holding py/ and ports/unix/."""
    tree = path.parent / "fake-src" / "micropython-1.27.0"
    for folder in ("py", "ports/unix"):
        (tree / folder).mkdir(parents=True)
    (tree / "py" / "mpconfig.h").write_text("/* fake */\n")
    with tarfile.open(path, "w:xz") as archive:
        archive.add(tree, arcname=tree.name)
    return path


def test_a_tarball_named_by_the_environment_is_unpacked_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = fake_source_tarball(tmp_path / "mp.tar.xz")
    monkeypatch.setenv(esp32like.SOURCE_ENV, str(tarball))
    tree, identity = esp32like.source(tmp_path / "out")
    assert tree == tmp_path / "out" / "src" and (tree / "py" / "mpconfig.h").is_file()
    assert identity == "tarball sha256 %s" % hashlib.sha256(tarball.read_bytes()).hexdigest()
    (tree / "py" / "mpconfig.h").write_text("kept\n")
    assert esp32like.source(tmp_path / "out") == (tree, identity)
    assert (tree / "py" / "mpconfig.h").read_text() == "kept\n"


def test_the_offline_tarball_must_have_the_pinned_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(esp32like.SOURCE_ENV, raising=False)
    monkeypatch.setattr(esp32like, "TARBALL", fake_source_tarball(tmp_path / "micropython-1.27.0-unix-src.tar.xz"))
    with pytest.raises(esp32like.BuildError, match="not the pinned %s" % esp32like.TARBALL_SHA256):
        esp32like.source(tmp_path / "out")
    assert not (tmp_path / "out" / "src").exists()
