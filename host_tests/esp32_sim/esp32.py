"""A file-backed stand-in for MicroPython's esp32.Partition and the ESP-IDF bootloader's OTA rollback, for tests.

Runs on CPython and on the MicroPython unix ports. Importing it is the power-on: the bootloader picks the app
partition from the OTA data as ESP-IDF's does with rollback enabled (the ESP32_GENERIC OTA variant):
- an app set by set_boot() starts NEW; its first boot makes it PENDING_VERIFY;
- a boot that finds it still PENDING_VERIFY (mark_app_valid_cancel_rollback() was not called) marks it ABORTED
  and boots the previous valid one;
- an image must start with 0xE9 (ESP_IMAGE_HEADER_MAGIC) for set_boot() and the bootloader to take it.
Flash keeps what flash keeps: a write clears bits and never sets them; only an erase (4096-byte sectors) does.

Environment:
- ESP32_FLASH: the folder holding the flash: LABEL.bin per app partition (missing bytes read as erased, 0xFF)
  and otadata.json (the two OTA data entries). Required.
- ESP32_PARTITIONS: the app partitions, "label:size,...", default that of MicroPython's partitions-4MiB-ota.csv:
  "ota_0:0x180000,ota_1:0x180000". Labels are factory or ota_N. App partitions only: no nvs, no vfs.
- ESP32_CUT: a power cut at a chosen call, "after:OP:N" or "before:OP:N" (the Nth call of OP in this process;
  OP is writeblocks, readblocks, set_boot, mark_app_valid_cancel_rollback or boot). The process dies on the
  spot, without running finally blocks or flushing files (SIGKILL on MicroPython, os._exit on CPython), after
  printing "ESP32 POWER CUT OP N". power_cut() does the same from anywhere.
"""

import json
import os
import sys

SECTOR = 4096
IMAGE_MAGIC = 0xE9
DEFAULT_TABLE = "ota_0:0x180000,ota_1:0x180000"
FIRST_ADDRESS = 0x10000
ERASED = b"\xff" * 256
CUT_EXIT_CODE = 215  # on CPython; on MicroPython the process dies of SIGKILL (-9)

# ESP-IDF error codes, raised as MicroPython's check_esp_err does: OSError(-code, name).
ESP_FAIL = -1
ESP_ERR_INVALID_ARG = 0x102
ESP_ERR_INVALID_SIZE = 0x104
ESP_ERR_NOT_FOUND = 0x105
ESP_ERR_OTA_VALIDATE_FAILED = 0x1503
_NAMES = {
    ESP_FAIL: "ESP_FAIL",
    ESP_ERR_INVALID_ARG: "ESP_ERR_INVALID_ARG",
    ESP_ERR_INVALID_SIZE: "ESP_ERR_INVALID_SIZE",
    ESP_ERR_NOT_FOUND: "ESP_ERR_NOT_FOUND",
    ESP_ERR_OTA_VALIDATE_FAILED: "ESP_ERR_OTA_VALIDATE_FAILED",
}
ENOENT = 2
EINVAL = 22

# OTA data entry states (esp_ota_img_states_t), kept by name in otadata.json.
NEW = "NEW"
PENDING_VERIFY = "PENDING_VERIFY"
VALID = "VALID"
INVALID = "INVALID"
ABORTED = "ABORTED"
UNDEFINED = "UNDEFINED"

_calls: dict = {}
_parts: list | None = None  # the partition table, read once
_fresh: dict = {}  # label: [offset, written] of the sector last erased in this process, and how much of it since
_running: tuple | None = None  # (label, subtype, address, size) of the app the bootloader started


def _error(code):
    return OSError(-code, _NAMES.get(code, "ESP_ERR_0x%X" % code))


def _power(when, op):
    cut = os.getenv("ESP32_CUT")
    if not cut:
        return
    if when == "before":
        _calls[op] = _calls.get(op, 0) + 1
    parts = cut.split(":")
    if len(parts) != 3 or parts[0] != when or parts[1] != op or int(parts[2]) != _calls.get(op, 0):
        return
    power_cut("%s %s" % (op, parts[2]))


def power_cut(why):
    """Not in the real module: the board loses power now (a test's self-test can call it). Never returns."""
    print("ESP32 POWER CUT", why)
    flush = getattr(sys.stdout, "flush", None)
    if flush is not None:
        flush()
    quit_now = getattr(os, "_exit", None)
    if quit_now is not None:
        quit_now(CUT_EXIT_CODE)
    os.system("kill -9 $PPID")  # the unix port has no os._exit; the shell's parent is this process
    raise SystemExit(CUT_EXIT_CODE)  # not reached while kill works


def _flash(name):
    folder = os.getenv("ESP32_FLASH")
    if not folder:
        raise OSError(ENOENT, "ESP32_FLASH names no folder for the test esp32's flash")
    return folder + "/" + name


# ---- the partition table ----------------------------------------------------------------------


def _table():
    global _parts
    if _parts is not None:
        return _parts
    parts = []
    address = FIRST_ADDRESS
    for item in (os.getenv("ESP32_PARTITIONS") or DEFAULT_TABLE).split(","):
        label, text = item.split(":")
        size = int(text, 0)
        if label == "factory":
            subtype = 0x00
        elif label.startswith("ota_"):
            subtype = 0x10 + int(label[4:])
        else:
            raise ValueError("test esp32: app partitions are factory or ota_N, not %r" % label)
        parts.append((label, subtype, address, size))
        address += size
    _parts = parts
    return parts


def _ota_parts():
    found = [p for p in _table() if p[1] >= 0x10]
    found.sort(key=lambda p: p[1])
    return found


def _by_subtype(subtype):
    for p in _table():
        if p[1] == subtype:
            return p
    return None


# ---- raw flash: a file per partition ----------------------------------------------------------


def _read(label, offset, buf):
    n = 0
    try:
        with open(_flash(label + ".bin"), "rb") as f:
            f.seek(offset)
            n = f.readinto(buf) or 0
    except OSError:
        pass
    for i in range(n, len(buf)):
        buf[i] = 0xFF


def _store(label, offset, data, erase=0):
    # data at offset, or erase bytes of 0xFF; the file grows with 0xFF to reach offset. In small pieces of
    # ERASED: the test esp32 should take as little as it can of the heap it measures with the library.
    path = _flash(label + ".bin")
    try:
        f = open(path, "r+b")
    except OSError:
        f = open(path, "w+b")
    with f:
        end = f.seek(0, 2)
        if end < offset:
            end += _fill(f, offset - end)
        f.seek(offset)
        if data is not None:
            f.write(data)
        else:
            _fill(f, erase)


def _fill(f, count):
    done = 0
    while done < count:
        left = count - done
        done += f.write(ERASED if left >= len(ERASED) else memoryview(ERASED)[:left])
    return count


def _check_erase(size, offset, length):
    # esp_partition_erase_range's checks: whole sectors, inside the partition.
    if offset > size:
        raise _error(ESP_ERR_INVALID_ARG)
    if length > size - offset or length % SECTOR:
        raise _error(ESP_ERR_INVALID_SIZE)
    if offset % SECTOR:
        raise _error(ESP_ERR_INVALID_ARG)


def _erase(label, size, offset, length):
    _check_erase(size, offset, length)
    done = 0
    while done < length:
        _store(label, offset + done, None, SECTOR)
        _fresh[label] = [offset + done, 0]
        done += SECTOR


def _program(label, offset, data):
    # NOR flash: a write can only clear bits, so what lands is the old content AND the new. Past what was written
    # since this process erased the sector, the old content is all ones: the data lands as it is, without a copy.
    fresh = _fresh.get(label)
    if fresh is not None and fresh[0] + fresh[1] <= offset and offset + len(data) <= fresh[0] + SECTOR:
        _store(label, offset, data)
        fresh[1] = offset + len(data) - fresh[0]
        return
    _fresh.pop(label, None)
    old = bytearray(len(data))
    _read(label, offset, old)
    for i in range(len(data)):
        old[i] &= data[i]
    _store(label, offset, old)


def _check_range(size, offset, length):
    if offset > size:
        raise _error(ESP_ERR_INVALID_ARG)
    if offset + length > size:
        raise _error(ESP_ERR_INVALID_SIZE)


def _valid_image(part):
    head = bytearray(1)
    _read(part[0], 0, head)
    return head[0] == IMAGE_MAGIC


# ---- OTA data ----------------------------------------------------------------------------------


def _otadata():
    try:
        with open(_flash("otadata.json")) as f:
            entries = json.load(f)
    except OSError:
        return [None, None]
    return entries


def _save_otadata(entries):
    path = _flash("otadata.json")
    with open(path + ".tmp", "w") as f:
        json.dump(entries, f)
    os.rename(path + ".tmp", path)


def _usable(entry):
    return entry is not None and entry["state"] not in (INVALID, ABORTED)


def _active(entries):
    # The usable entry with the highest sequence number (bootloader_common_get_active_otadata).
    best = -1
    for i in (0, 1):
        if _usable(entries[i]) and (best < 0 or entries[i]["seq"] > entries[best]["seq"]):
            best = i
    return best


def _default_app():
    factory = _by_subtype(0x00)
    if factory is not None:
        return factory
    otas = _ota_parts()
    return otas[0] if otas else None


def _boot_choice(entries):
    otas = _ota_parts()
    active = _active(entries)
    if active < 0 or not otas:
        return _default_app()
    return otas[(entries[active]["seq"] - 1) % len(otas)]


# ---- the bootloader, at import ------------------------------------------------------------------


def _power_on():
    global _running
    _power("before", "boot")
    otas = _ota_parts()
    entries = _otadata()
    changed = False
    for entry in entries:
        if entry is not None and entry["state"] == PENDING_VERIFY:
            # Booted once and never confirmed: roll back.
            entry["state"] = ABORTED
            changed = True
    active = _active(entries)
    initial = False
    if active < 0 or not otas:
        first = _default_app()
        initial = first is not None and first[1] != 0x00 and entries[0] is None and entries[1] is None
    else:
        first = otas[(entries[active]["seq"] - 1) % len(otas)]
        if entries[active]["state"] == NEW:
            entries[active]["state"] = PENDING_VERIFY
            changed = True
    if changed:
        _save_otadata(entries)
    # As the bootloader: the chosen app, else back towards factory, else forwards through the OTA slots.
    order = [p for p in _table() if p[1] == 0x00] + otas
    start = order.index(first) if first in order else 0
    candidates = order[: start + 1]
    candidates.reverse()
    for part in candidates + order[start + 1 :]:
        if _valid_image(part):
            if initial and part[1] >= 0x10:
                entries[0] = {"seq": part[1] - 0x10 + 1, "state": VALID}
                _save_otadata(entries)
            _running = part
            print("ESP32 BOOT", part[0])
            _power("after", "boot")
            return
    raise OSError(ENOENT, "test esp32: no bootable app partition in %s" % _flash(""))


# ---- esp32.Partition -----------------------------------------------------------------------------


class Partition:
    """esp32.Partition over the test flash: app partitions only, block size 4096 (the default) only."""

    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=SECTOR):
        if block_size != SECTOR:
            raise ValueError("test esp32: only the default block size, 4096")
        if id == Partition.BOOT:
            part = _boot_choice(_otadata()) if _ota_parts() else None
        elif id == Partition.RUNNING:
            part = _running
        elif isinstance(id, int):
            raise ValueError()
        else:
            part = None
            for p in _table():
                if p[0] == id:
                    part = p
        if part is None:
            raise OSError(ENOENT)
        self._part = part
        self.block_size = block_size

    def __repr__(self):
        label, subtype, address, size = self._part
        return "<Partition type=0, subtype=%d, address=%d, size=%d, label=%s, encrypted=0>" % (
            subtype, address, size, label)

    def __eq__(self, other):
        return isinstance(other, Partition) and other._part == self._part

    @staticmethod
    def find(type=TYPE_APP, subtype=0xFF, label=None, block_size=SECTOR):
        if type != Partition.TYPE_APP:
            return []
        found = []
        for p in _table():
            if (subtype == 0xFF or p[1] == subtype) and (label is None or p[0] == label):
                found.append(Partition(p[0], block_size))
        return found

    def info(self):
        label, subtype, address, size = self._part
        return (Partition.TYPE_APP, subtype, address, size, label, False)

    def readblocks(self, block_num, buf, offset=0):
        _power("before", "readblocks")
        start = block_num * self.block_size + offset
        _check_range(self._part[3], start, len(buf))
        _read(self._part[0], start, buf)
        _power("after", "readblocks")

    def writeblocks(self, block_num, buf, offset=None):
        _power("before", "writeblocks")
        start = block_num * self.block_size
        label, size = self._part[0], self._part[3]
        if offset is None:
            # The simple protocol: erase what the buffer covers, then write it (esp_partition_erase_range needs
            # whole sectors, so the buffer must be a multiple of 4096 bytes).
            _check_erase(size, start, len(buf))
            _store(label, start, buf)  # erased, then written: the buffer itself, stored without a copy
        else:
            # The extended protocol: no erase, the caller erased with ioctl(6, block) first.
            start += offset
            _check_range(size, start, len(buf))
            _program(label, start, buf)
        _power("after", "writeblocks")

    def ioctl(self, cmd, arg):
        if cmd in (1, 2, 3):  # init, deinit, sync
            return 0
        if cmd == 4:
            return self._part[3] // self.block_size
        if cmd == 5:
            return self.block_size
        if cmd == 6:
            _erase(self._part[0], self._part[3], arg * SECTOR, SECTOR)
            return 0
        return None

    def set_boot(self):
        _power("before", "set_boot")
        if not _valid_image(self._part):
            raise _error(ESP_ERR_OTA_VALIDATE_FAILED)
        otas = _ota_parts()
        subtype = self._part[1]
        if subtype == 0x00:
            if not otas:
                raise _error(ESP_ERR_NOT_FOUND)
            _save_otadata([None, None])
        else:
            count = len(otas)
            slot = subtype - 0x10
            entries = _otadata()
            active = _active(entries)
            if active >= 0:
                # esp_rewrite_ota_data: the next sequence number that maps to this slot, in the other entry.
                seq = entries[active]["seq"]
                i = 0
                while seq > (slot + 1) % count + i * count:
                    i += 1
                entries[1 - active] = {"seq": (slot + 1) % count + i * count, "state": NEW}
            else:
                entries[0] = {"seq": slot + 1, "state": NEW}
            _save_otadata(entries)
        _power("after", "set_boot")

    def get_next_update(self):
        result = None
        after = False
        for p in _ota_parts():
            if result is None:
                result = p
            if p == self._part:
                after = True
            elif after:
                result = p
                break
        if result is None:
            raise OSError(ENOENT)
        return Partition(result[0])

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        _power("before", "mark_app_valid_cancel_rollback")
        if not _ota_parts():
            raise _error(ESP_ERR_NOT_FOUND)
        entries = _otadata()
        active = _active(entries)
        if active < 0:
            raise _error(ESP_FAIL)  # "Running firmware is factory"
        if entries[active]["state"] != VALID:
            entries[active]["state"] = VALID
            _save_otadata(entries)
        _power("after", "mark_app_valid_cancel_rollback")


_power_on()
