"""Headless Chromium from Debian's package, driven by Playwright: the browser of the console's tests and benchmark.

Playwright never downloads a browser here (these machines cannot): it drives /usr/bin/chromium, which
tools/setup.sh installs with apt. The flags keep Chromium from reaching for the network on its own (as
root, without them its background connections were refused many at a time) and from needing a sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(playwright: Any) -> Any:
    """A Chromium browser (Playwright gives each launch a fresh profile of its own)."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"no {CHROMIUM}: run `make setup` (it installs Debian's chromium package)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
