"""firmware/lib is copied into users' firmware as it is: it may use only what MicroPython itself has."""

import ast
from pathlib import Path

import pytest

from device import CPYTHONPATH, ROOT, run
from mpylib import MICROPYTHON_RUNTIMES

LIB = ROOT / "firmware" / "lib"
SOURCES = sorted(LIB.rglob("*.py"))
# MicroPython built-in modules the library may use, plus umqtt.simple (frozen on ESP32 firmware).
ALLOWED = {"json", "os", "time", "select", "random", "micropython", "gc", "sys", "errno", "socket", "ssl", "hashlib",
           "binascii", "struct", "machine", "network", "esp32", "umqtt.simple",
           # Built into MicroPython too, and the names under which the CPython shim gives MicroPython's semantics
           # (there plain socket/ssl are CPython's): usocket as umqtt.simple imports it; tls, the SSLContext
           # module of MicroPython 1.23+; ussl, which umqtt.simple 1.3.4 imports (iotjobs.tls aliases it to ssl
           # where it is missing, as on the unix port and 1.23+ firmware).
           "usocket", "tls", "ussl"}


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(LIB)))
def test_imports_only_micropython_modules(path: Path) -> None:
    foreign = {m for m in imported_modules(path) if not m.startswith("iotjobs") and m not in ALLOWED}
    assert not foreign, "%s imports %s, which MicroPython does not have" % (path, foreign)


def test_every_module_says_its_job() -> None:
    for path in SOURCES:
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and "\n" not in doc.strip(), "%s needs a one-line docstring" % path


@pytest.mark.parametrize("runtime", MICROPYTHON_RUNTIMES)
def test_library_compiles_on_micropython(runtime: str) -> None:
    # The unix port's own compiler is the judge of syntax (f-string '=', match...), and its imports must resolve:
    # 1.28 and the esp32like 1.27.0 (no .frozen on the path given here: its frozen copy is not imported).
    script = ROOT / "build" / "checks" / "import_all.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    names = ["iotjobs." + p.stem for p in SOURCES if p.stem != "__init__"]
    script.write_text("import iotjobs\n" + "".join("import %s\n" % n for n in names) + "print('imported', %d)\n"
                      % len(names))
    # From the sources, all modules at once: this checks syntax, not the heap (the scenarios do that).
    done = run(runtime, script, env={"MICROPYPATH": CPYTHONPATH}, heapsize="1m")
    assert done.returncode == 0 and done.stdout.strip() == "imported %d" % len(names), done.stdout + done.stderr
