"""Fetch umqtt/simple.py from the PyPI sdist micropython-umqtt.simple, pinned by SHA-256."""

import hashlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

VERSION = "1.3.4"
SIMPLE_SHA256 = "8555d2f654deb8eb0d724f79b0811a78cc94029d070f3d96bbd74288653d63a5"
MEMBER = "micropython-umqtt.simple-%s/umqtt/simple.py" % VERSION


def sdist_url() -> str:
    # The sdist has no setup.py, so pip cannot install it; but `pip download -v` names the file's URL on
    # pip's configured index before it gives up, which keeps every index host out of this repository.
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-v",
             "--disable-pip-version-check", "-d", tmp, "micropython-umqtt.simple==" + VERSION],
            capture_output=True, text=True, check=False,
        )
    found = re.search(r"(?:https?|file)://\S+?micropython[-_.]umqtt[-_.]simple-%s\.tar\.gz" % re.escape(VERSION),
                      run.stdout + run.stderr)
    if not found:
        raise SystemExit("fetch_umqtt: pip did not name a URL for micropython-umqtt.simple==%s:\n%s"
                         % (VERSION, (run.stdout + run.stderr)[-2000:]))
    return found.group(0)


def main() -> None:
    dest = Path(sys.argv[1] if len(sys.argv) > 1 else "build/umqtt") / "umqtt" / "simple.py"
    if dest.exists() and hashlib.sha256(dest.read_bytes()).hexdigest() == SIMPLE_SHA256:
        return
    url = sdist_url()
    with urllib.request.urlopen(url, timeout=60) as resp:
        sdist = resp.read()
    with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            raise SystemExit("fetch_umqtt: %s is not in the sdist" % MEMBER)
        source = member.read()
    digest = hashlib.sha256(source).hexdigest()
    if digest != SIMPLE_SHA256:
        raise SystemExit("fetch_umqtt: umqtt/simple.py has SHA-256 %s, expected %s" % (digest, SIMPLE_SHA256))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(source)
    print("fetch_umqtt: umqtt.simple %s -> %s" % (VERSION, dest))


if __name__ == "__main__":
    main()
