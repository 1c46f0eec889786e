"""Unit cases of the flash store (store.py) under power cuts at every point of a replace, on MicroPython and CPython.

A cut is an exception raised in the middle of a write, a remove or a rename: what reached the file system by
then stays, nothing after it happens; the next read is what the board sees after its reset.
"""

import io
import os

from harness import main, raises
from iotjobs import store

DIR = "/tmp/iotjobs-store-%s" % "".join("%02x" % b for b in os.urandom(4))
os.mkdir(DIR)
PATH = DIR + "/state.json"
STATE = {"jobId": "job-1", "executionNumber": 1, "step": "2", "final": ["SUCCEEDED", {"result": "ok"}]}
NEWER = {"jobId": "job-2", "executionNumber": 1, "step": None}


class PowerCut(Exception):
    pass


class CutFile(io.IOBase):
    """A file whose power goes after `left` more bytes."""

    def __init__(self, f, left):
        self.f = f
        self.left = left

    def write(self, data):
        if len(data) > self.left:
            self.f.write(data[: self.left])
            raise PowerCut("cut in the middle of a write")
        self.left -= len(data)
        return self.f.write(data)

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Flash:
    """os as the store sees it: FAT's rename if asked, and a cut after the named operation if asked."""

    def __init__(self, fat=False, cut_after=None):
        self.fat = fat
        self.cut_after = cut_after

    def stat(self, path):
        return os.stat(path)

    def remove(self, path):
        os.remove(path)
        if self.cut_after == "remove":
            raise PowerCut("cut after the remove")

    def rename(self, old, new):
        if self.fat and store._exists(new):
            raise OSError(17)  # EEXIST: FAT renames only to a free name
        os.rename(old, new)
        if self.cut_after == "rename":
            raise PowerCut("cut after the rename")


def fresh():
    for name in os.listdir(DIR):
        os.remove(DIR + "/" + name)


def write(value, fat=False, cut_after=None, cut_at_byte=None):
    """store.write_json on a flash that may lose power; True if the cut came."""
    real_open = open
    store.os = Flash(fat, cut_after)  # type: ignore[assignment]
    if cut_at_byte is not None:
        def cut_open(path, mode="r"):
            f = real_open(path, mode)
            return CutFile(f, cut_at_byte) if "w" in mode else f

        store.open = cut_open  # type: ignore[attr-defined]
    try:
        store.write_json(PATH, value)
        return False
    except PowerCut:
        return True
    finally:
        store.os = os
        if cut_at_byte is not None:
            del store.open  # type: ignore[attr-defined]


def left_over():
    return sorted(os.listdir(DIR))


def case_a_cut_in_the_middle_of_a_write_keeps_the_last_value():
    for fat in (False, True):
        fresh()
        write(STATE, fat)
        assert write(NEWER, fat, cut_at_byte=17)
        assert left_over() == ["state.json", "state.json.tmp"]
        assert store.read_json(PATH) == STATE
        write(NEWER, fat)
        assert store.read_json(PATH) == NEWER and left_over() == ["state.json"]


def case_a_cut_in_the_first_write_leaves_no_value_and_no_error():
    for fat in (False, True):
        fresh()
        assert write(STATE, fat, cut_at_byte=5)
        assert store.read_json(PATH, "none") == "none"
        assert write(NEWER, fat, cut_at_byte=9)  # the half-written file is not taken for a value to keep
        assert store.read_json(PATH, "none") == "none"
        write(NEWER, fat)
        assert store.read_json(PATH) == NEWER and left_over() == ["state.json"]


def case_fat_cut_between_remove_and_rename_keeps_the_new_value():
    fresh()
    write(STATE, True)
    assert write(NEWER, True, cut_after="remove")
    assert left_over() == ["state.json.tmp"]
    assert store.read_json(PATH) == NEWER


def case_fat_second_cut_after_an_unfinished_replace_keeps_the_value():
    # After a cut between remove and rename, the only copy is the temporary file: the next write must not
    # overwrite it before it is in place, or a cut in that write loses the value (an outcome, say) for good.
    fresh()
    write(STATE, True)
    assert write(NEWER, True, cut_after="remove")
    assert write(STATE, True, cut_at_byte=12)
    assert store.read_json(PATH) == NEWER
    assert write(STATE, True, cut_after="remove")
    assert store.read_json(PATH) == STATE
    write(NEWER, True)
    assert store.read_json(PATH) == NEWER and left_over() == ["state.json"]


def case_a_cut_after_the_rename_has_the_new_value():
    for fat in (False, True):
        fresh()
        write(STATE, fat)
        assert write(NEWER, fat, cut_after="rename")
        assert store.read_json(PATH) == NEWER and left_over() == ["state.json"]


def case_a_half_written_file_in_place_reads_as_nothing():
    fresh()
    with open(PATH, "w") as f:
        f.write('{"jobId": "job-1", "st')
    assert store.read_json(PATH, "none") == "none"
    raises(ValueError, store.json.loads, '{"jobId": "job-1", "st')


if __name__ == "__main__":
    main(globals())
    fresh()
    os.rmdir(DIR)
