"""The soak's firmware updates: OTA jobs planned to succeed or fail, their images served as S3 would, their checks."""

from __future__ import annotations

import hashlib
import json
import random
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bench.ota import app_image
from localjobs.documents import PRESIGNED_PREFIX
from localjobs.service import JobsService

BUCKET = "firmware"
PLACEHOLDER = "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/%s/%s}"
# Two 64 KiB app partitions (the test esp32's ESP32_PARTITIONS) and images of 8-48 KiB: a soak stays quick.
PARTITIONS = "ota_0:0x10000,ota_1:0x10000"
SLOTS = 2
IMAGE_KIB = (8, 48)
FIRST_VERSION = "1.0.0"
BROKEN = "-broken"  # device.py's self-test fails on a version with this suffix
SELF_TEST_MS = 200
# What each planned update must end with: its status and how its FAILED message starts. A bad hash is refused
# before set_boot(); a broken image boots, fails its self-test and is rolled back.
KINDS = ("update", "update", "bad hash", "self-test")
FINAL = {"update": "SUCCEEDED", "bad hash": "FAILED", "self-test": "FAILED"}
FAILED_BECAUSE = {"bad hash": "SHA-256 mismatch: ", "self-test": "rolled back to ", "update": "rolled back to "}


@dataclass
class Update:
    """An OTA job of the plan: what it is meant to show, and the version of its image."""

    kind: str
    version: str

    @property
    def final(self) -> str:
        return FINAL[self.kind]


def plan_update(rng: random.Random, index: int, files: Path) -> tuple[dict[str, Any], Update]:
    """An image in files/BUCKET and the ota job document for it; the update as planned."""
    kind = rng.choice(KINDS)
    version = "2.%d.0%s" % (index, BROKEN if kind == "self-test" else "")
    image = app_image(version, rng.randrange(*IMAGE_KIB) * 1024 + rng.randrange(1024))
    key = "app-%s.bin" % version
    (files / BUCKET).mkdir(parents=True, exist_ok=True)
    (files / BUCKET / key).write_bytes(image)
    named = image if kind != "bad hash" else image[::-1]
    document = {"operation": "ota", "url": PLACEHOLDER % (BUCKET, key), "sha256": hashlib.sha256(named).hexdigest(),
                "size": len(image), "version": version}
    return document, Update(kind, version)


def first_firmware(esp32_flash: Path) -> None:
    """The board as flashed: FIRST_VERSION in ota_0, no OTA data yet."""
    esp32_flash.mkdir()
    (esp32_flash / "ota_0.bin").write_bytes(app_image(FIRST_VERSION, 4096))


def image_version(head: bytes) -> str | None:
    """The version in an app image's first 80 bytes (its esp_app_desc_t), as iotjobs.ota.app_version reads it."""
    if head[32:36] != b"\x32\x54\xcd\xab":
        return None
    return head[48:80].split(b"\0", 1)[0].decode() or None


def unconfirmed(esp32_flash: Path) -> str | None:
    """The version of an image booted and not yet confirmed (the bootloader rolls it back at the next boot), or None.

    Read from the test esp32's OTA data: an entry in PENDING_VERIFY, its slot given by its sequence number.
    """
    try:
        entries = json.loads((esp32_flash / "otadata.json").read_text())
    except (OSError, ValueError):
        return None
    for entry in entries:
        if entry and entry.get("state") == "PENDING_VERIFY":
            slot = "ota_%d.bin" % ((int(entry["seq"]) - 1) % SLOTS)
            return image_version((esp32_flash / slot).read_bytes()[:80])
    return None


class ImageServer:
    """The images' S3: the presigned URLs that the Jobs service puts in documents, answered from its files folder.

    Apart from the Jobs service, as S3 is apart from AWS IoT: the soak's service restarts leave it up, so that
    an update fails only as planned.
    """

    def __init__(self, service: JobsService) -> None:
        documents = service.documents

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlsplit(self.path)
                status, body = (404, b"NoSuchKey")
                if url.path.startswith(PRESIGNED_PREFIX):
                    status, body = documents.open(url.path, dict(parse_qsl(url.query, keep_blank_values=True)))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        documents.base_url = "http://127.0.0.1:%d" % self.server.server_address[1]
        service.model.presign = documents.presign
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="soak-s3", daemon=True)

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def firmware_checks(plan: list[tuple[str, Update | None]], outcomes: dict[str, tuple[str, dict[str, Any]]],
                    handler_firmware: dict[str, list[str]], final_firmware: str | None,
                    cut_unconfirmed: set[str]) -> tuple[dict[str, str], dict[str, list[str]], list[str]]:
    """Each job's expected status, the problems of the updates (by job), and of the firmware the jobs ran on.

    plan: (job id, its update or None) in the order the device runs them; outcomes: each job's terminal status
    and statusDetails; handler_firmware: the versions each job's handler started on; cut_unconfirmed: versions a
    power cut caught booted and unconfirmed, which may then end FAILED (rolled back) instead of SUCCEEDED.
    """
    expected: dict[str, str] = {}
    problems: dict[str, list[str]] = {}
    wrong: list[str] = []
    running = FIRST_VERSION
    for job_id, update in plan:
        seen = handler_firmware.get(job_id, [])
        status, details = outcomes.get(job_id, ("", {}))
        if update is None:
            if any(version != running for version in seen):
                wrong.append("%s: its handler ran on %s, not %s" % (job_id, seen, running))
            continue
        # A bad hash is refused before set_boot(): its image never runs.
        booted = (running,) if update.kind == "bad hash" else (running, update.version)
        if seen[:1] != [running] or any(version not in booted for version in seen):
            wrong.append("%s: an update from %s to %s ran on %s" % (job_id, running, update.version, seen))
        allowed = {update.final}
        if update.kind == "update" and update.version in cut_unconfirmed:
            allowed.add("FAILED")
        expected[job_id] = status if status in allowed else update.final
        found = problems.setdefault(job_id, [])
        if status == "SUCCEEDED" and status in allowed:
            if details.get("version") != update.version:
                found.append("SUCCEEDED with version %s, not %s" % (details.get("version"), update.version))
            running = update.version
        elif status == "FAILED" and status in allowed:
            message = str(details.get("message", ""))
            if not message.startswith(FAILED_BECAUSE[update.kind]):
                found.append("FAILED for another reason: %s" % message)
    if final_firmware != running:
        wrong.append("the device ended on firmware %s, not %s" % (final_firmware, running))
    return expected, problems, wrong
