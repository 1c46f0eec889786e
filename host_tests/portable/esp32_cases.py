"""The test esp32 module against esp32.Partition's documented behaviour; on MicroPython and CPython alike.

Usage: esp32_cases.py cases [NAME ...] runs the case_* functions (PASS/FAIL lines); esp32_cases.py ACTION ...
does the named actions in order on this power-on (stage, confirm, report) for a multi-boot test. ESP32_FLASH
names the flash folder; ota_0 must hold an app image.
"""

import sys

import esp32  # importing it is the power-on

from harness import emit, raises, run_cases

Partition = esp32.Partition
SECTOR = 4096


def errno_of(e):
    return e.args[0]


def case_running_is_the_first_ota_slot_of_an_esptool_flashed_board():
    running = Partition(Partition.RUNNING)  # type: ignore[arg-type]
    assert running.info() == (Partition.TYPE_APP, 0x10, 0x10000, 0x180000, "ota_0", False), running.info()
    assert Partition(Partition.BOOT).info()[4] == "ota_0"  # type: ignore[arg-type]


def case_next_update_goes_round_the_ota_slots():
    running = Partition(Partition.RUNNING)  # type: ignore[arg-type]
    following = running.get_next_update()
    assert following.info()[4] == "ota_1"
    assert following.get_next_update().info()[4] == "ota_0"


def case_find_and_labels():
    assert [p.info()[4] for p in Partition.find(Partition.TYPE_APP)] == ["ota_0", "ota_1"]
    assert [p.info()[4] for p in Partition.find(label="ota_1")] == ["ota_1"]
    assert Partition.find(Partition.TYPE_DATA) == []
    assert errno_of(raises(OSError, Partition, "nvs")) == 2  # ENOENT


def case_block_device_ioctls():
    part = Partition("ota_1")
    assert part.ioctl(4, None) == 0x180000 // SECTOR
    assert part.ioctl(5, None) == SECTOR


def case_simple_write_takes_whole_sectors_only():
    part = Partition("ota_1")
    e = raises(OSError, part.writeblocks, 0, bytearray(100))
    assert errno_of(e) == -0x104, e  # ESP_ERR_INVALID_SIZE: esp_partition_erase_range wants whole sectors


def case_simple_write_erases_before_it_writes():
    part = Partition("ota_1")
    part.writeblocks(2, bytes(SECTOR))
    part.writeblocks(2, b"\xaa" * SECTOR)
    back = bytearray(SECTOR)
    part.readblocks(2, back)
    assert back == b"\xaa" * SECTOR


def case_extended_write_only_clears_bits_until_an_erase():
    part = Partition("ota_1")
    part.ioctl(6, 3)
    part.writeblocks(3, b"\xf0\x0f", 10)
    part.writeblocks(3, b"\x3c\x3c", 10)
    back = bytearray(4)
    part.readblocks(3, back, 9)
    assert back == b"\xff\x30\x0c\xff", back
    part.ioctl(6, 3)
    part.readblocks(3, back, 9)
    assert back == b"\xff\xff\xff\xff"


def case_reads_and_writes_stay_inside_the_partition():
    part = Partition("ota_1")
    last = 0x180000 // SECTOR - 1
    assert errno_of(raises(OSError, part.readblocks, last, bytearray(SECTOR + 1))) == -0x104
    assert errno_of(raises(OSError, part.writeblocks, last + 1, bytearray(SECTOR))) == -0x104


def case_set_boot_refuses_a_partition_without_an_app_image():
    part = Partition("ota_1")
    part.writeblocks(0, bytes(SECTOR))
    assert errno_of(raises(OSError, part.set_boot)) == -0x1503  # ESP_ERR_OTA_VALIDATE_FAILED


def stage():
    # The second slot gets a copy of the running app, then is set to boot at the next reset.
    running = Partition(Partition.RUNNING)  # type: ignore[arg-type]
    target = running.get_next_update()
    block = bytearray(SECTOR)
    for n in range(4):
        running.readblocks(n, block)
        target.writeblocks(n, block)
    target.set_boot()


def report():
    emit("running", Partition(Partition.RUNNING).info()[4])  # type: ignore[arg-type]
    emit("boot", Partition(Partition.BOOT).info()[4])  # type: ignore[arg-type]


def confirm():
    Partition.mark_app_valid_cancel_rollback()


if sys.argv[1] == "cases":
    run_cases(globals(), sys.argv[2:])
else:
    for action in sys.argv[1:]:
        globals()[action]()
