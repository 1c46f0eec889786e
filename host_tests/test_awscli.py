"""The README's aws CLI lines, as they are written there, with the real awscli against the local service."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from localjobs.service import JobsService

ROOT = Path(__file__).resolve().parents[1]
AWS = ROOT / ".venv" / "bin" / "aws"
README_ENDPOINT = "127.0.0.1:8089"


def readme_block(marker: str) -> str:
    """The README's fenced block that contains marker."""
    blocks: list[list[str]] = []
    inside = False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
            if inside:
                blocks.append([])
        elif inside:
            blocks[-1].append(line)
    found = ["\n".join(b) + "\n" for b in blocks if any(marker in line for line in b)]
    assert len(found) == 1, "no single README block with %r" % marker
    return found[0]


def test_the_readme_aws_cli_lines_run_a_job_against_the_local_service(jobs_http: JobsService) -> None:
    assert AWS.is_file(), "make awscli (tools/setup.sh) installs it"
    script = readme_block("AWS_ENDPOINT_URL_IOT=").replace(README_ENDPOINT, jobs_http.http_url[len("http://"):])
    # Nothing from this machine's own AWS set-up: no profile, no credentials file, no other endpoint.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r'^"QUEUED"$.*^"SUCCEEDED"$', done.stdout, re.S | re.M), done.stdout
    statuses = [h["status"] for h in jobs_http.history("my-thing", "greet-1")]
    assert statuses == ["QUEUED", "IN_PROGRESS", "SUCCEEDED"]
