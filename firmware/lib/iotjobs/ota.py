"""The ota handler: a firmware image into the next OTA partition, booted once, then confirmed or rolled back."""

import binascii
import hashlib

from iotjobs import download
from iotjobs.runner import Reboot

BLOCK = 4096  # esp32.Partition's block: one flash sector, the unit of erase
WRITING = "writing"
# Checkpoints after the image is in place, each followed by the partition's label ("boot:ota_1"):
BOOT = "boot"  # set_boot() is next or done; then the reset
AGAIN = "again"  # back on the old firmware before the new one got as far as the runner: booted a second time
CHECK = "check"  # the new firmware is running its self-test
IMAGE_MAGIC = 0xE9  # an ESP-IDF app image's first byte
APP_DESC_MAGIC = b"\x32\x54\xcd\xab"  # esp_app_desc_t's magic word, little-endian


class OtaError(Exception):
    """The update stops here: the image does not fit or is not the one named, or the new firmware rolled back."""


def update(execution, progress, self_test=None, ca=None):
    """{"operation": "ota", "url", "sha256", "size", "version"?}: write, verify, set_boot(), reset; then confirm."""
    step = execution.get("checkpoint")
    if isinstance(step, str) and ":" in step:
        return _after_boot(step, execution, progress, self_test)
    return _write(execution, progress, ca)


def _write(execution, progress, ca):
    from esp32 import Partition

    params = execution.get("input") or {}
    url = params.get("url")
    sha256 = params.get("sha256")
    size = params.get("size")
    if not isinstance(url, str) or not isinstance(sha256, str) or len(sha256) != 64:
        raise ValueError("ota needs a url and a sha256 of 64 hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError("ota needs the image's size in bytes")
    running = Partition(Partition.RUNNING)  # type: ignore[arg-type]  # the stubs take only a label
    try:
        target = running.get_next_update()
    except OSError:
        raise OtaError("the partition table has no OTA app partition") from None
    info = target.info()
    label = info[4]
    if label == running.info()[4]:
        raise OtaError("the partition table has no OTA app partition besides the running %s" % label)
    if size > info[3]:
        raise OtaError("an image of %d bytes does not fit %s (%d bytes)" % (size, label, info[3]))

    buf = bytearray(download.CHUNK)  # divides BLOCK: no piece straddles two sectors
    written = [0]

    def write_piece(piece):
        at = written[0]
        if not at and piece[0] != IMAGE_MAGIC:
            raise OtaError("not an ESP32 app image: it starts with 0x%02x, not 0x%02x" % (piece[0], IMAGE_MAGIC))
        if not at % BLOCK:
            target.ioctl(6, at // BLOCK)  # the block device protocol's erase, before the sector's first write
        target.writeblocks(at // BLOCK, piece, at % BLOCK)
        written[0] = at + len(piece)

    def on_progress(percent):
        progress({"progress": "%d%%" % percent, "partition": label}, WRITING)

    # After a reset mid-way the checkpoint is WRITING: the image is simply written again from its start.
    progress({"progress": "0%", "partition": label}, WRITING)
    got, digest = download.stream(url, write_piece, buf, None, size, on_progress, ca)
    if got != size:
        raise OtaError("short image: got %d of %d bytes" % (got, size))
    if digest != sha256.lower():
        raise OtaError("SHA-256 mismatch: expected %s, got %s" % (sha256.lower(), digest))
    # Read back: what set_boot() makes bootable is the image the job named, not just what came over the wire.
    if partition_sha256(target, size, buf) != digest:
        raise OtaError("%s does not read back as written" % label)
    # The last point a cancel can stop the update: from the commit on, the runner sees it through, across resets.
    progress({"progress": "100%", "state": "booting", "partition": label}, "%s:%s" % (BOOT, label), True)
    target.set_boot()
    raise Reboot()


def _after_boot(step, execution, progress, self_test):
    from esp32 import Partition

    phase, label = step.split(":", 1)
    running = Partition(Partition.RUNNING)  # type: ignore[arg-type]  # the stubs take only a label
    now = running.info()[4]
    if now == label:
        progress({"state": "self-test", "partition": label}, "%s:%s" % (CHECK, label), True)
        if not _passes(self_test):
            # Not confirmed: at this reset the bootloader marks it aborted and starts the previous firmware.
            print("iotjobs ota: self-test failed; resetting to roll back")
            raise Reboot()
        Partition.mark_app_valid_cancel_rollback()
        params = execution.get("input") or {}
        version = app_version(running) or params.get("version") or "unknown"
        return {"version": version, "partition": label}
    if phase == BOOT:
        # Back on the old firmware with no word from the new one: the reset came before set_boot() took, or
        # the new firmware was reset before it reached the runner and the bootloader rolled it back. Once more.
        progress({"state": "booting again", "partition": label}, "%s:%s" % (AGAIN, label), True)
        Partition(label).set_boot()
        raise Reboot()
    if phase == CHECK:
        why = "failed its self-test or was reset before it passed"
    else:
        why = "was started twice and did not reach the runner either time"
    raise OtaError("rolled back to %s: the firmware written to %s %s" % (now, label, why))


def _passes(self_test):
    if self_test is None:
        # The default test has passed by now: the runner connected and the service answered with this job.
        return True
    try:
        return bool(self_test())
    except Exception as e:  # a self-test that raises has failed, and says why
        print("iotjobs ota: self-test raised %s: %s" % (type(e).__name__, e))
        return False


def partition_sha256(partition, size, buf):
    """SHA-256 (hex) of the first size bytes of partition, read len(buf) bytes at a time (a divisor of BLOCK)."""
    digest = hashlib.sha256()
    view = memoryview(buf)
    at = 0
    while at < size:
        partition.readblocks(at // BLOCK, buf, at % BLOCK)
        digest.update(view[: min(len(buf), size - at)])
        at += len(buf)
    return binascii.hexlify(digest.digest()).decode()


def app_version(partition):
    """The version in an app partition's esp_app_desc_t (32 bytes in, after the image and segment headers), or None."""
    head = bytearray(80)
    partition.readblocks(0, head)
    if head[32:36] != APP_DESC_MAGIC:
        return None
    version = bytes(head[48:80])
    end = version.find(b"\x00")
    try:
        return version[: end if end >= 0 else 32].decode() or None
    except UnicodeError:
        return None
