"""Size: .mpy bytes of each firmware module and in total, at the deploy's optimisation level, beside umqtt.simple."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from deploy import OPTIMIZE
from mpylib import BIN, ROOT

from .common import table, write_json

LIBRARY = ROOT / "firmware" / "lib" / "iotjobs"
UMQTT = ROOT / "build" / "umqtt" / "umqtt" / "simple.py"


def mpy_bytes(source: Path, folder: Path) -> int:
    target = folder / (source.stem + ".mpy")
    subprocess.run([str(BIN / "mpy-cross"), OPTIMIZE, "-o", str(target), "-s", source.name, str(source)],
                   check=True, capture_output=True)
    return target.stat().st_size


def measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        modules = {p.name: {"source": p.stat().st_size, "mpy": mpy_bytes(p, Path(folder))}
                   for p in sorted(LIBRARY.glob("*.py"))}
        umqtt = {"source": UMQTT.stat().st_size, "mpy": mpy_bytes(UMQTT, Path(folder))}
    return {"optimize": OPTIMIZE, "modules": modules, "total_mpy": sum(m["mpy"] for m in modules.values()),
            "total_source": sum(m["source"] for m in modules.values()), "umqtt_simple": umqtt}


def report(figures: dict[str, Any]) -> str:
    rows = [["iotjobs/" + name, m["source"], m["mpy"]] for name, m in figures["modules"].items()]
    rows.append(["iotjobs total", figures["total_source"], figures["total_mpy"]])
    rows.append(["umqtt/simple.py (not ours)", figures["umqtt_simple"]["source"], figures["umqtt_simple"]["mpy"]])
    return table(["module (mpy-cross %s)" % figures["optimize"], "source bytes", ".mpy bytes"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    figures = measure()
    write_json("size", figures)
    print(report(figures))
    return figures


if __name__ == "__main__":
    main()
