"""Small JSON files on flash, replaced atomically: a temporary file is written, then renamed over the old one."""

import json
import os


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def remove(path):
    """Remove path if it exists."""
    try:
        os.remove(path)
    except OSError:
        pass


def replace(tmp, path):
    """Rename tmp over path, which may exist."""
    try:
        os.rename(tmp, path)
    except OSError:
        # FAT refuses to rename over an existing file (littlefs and POSIX do not); read_json then falls back
        # to tmp for the moment in which path is gone.
        remove(path)
        os.rename(tmp, path)


def read_json(path, default=None):
    """The JSON value in path (or in its temporary file, if a replace was cut short), or default."""
    for candidate in (path, path + ".tmp"):
        if candidate != path and _exists(path):
            break
        try:
            with open(candidate) as f:
                return json.load(f)
        except (OSError, ValueError):
            pass
    return default


def write_json(path, value):
    """Replace path's content with value as JSON, atomically: a power cut at any moment leaves it or the old one."""
    tmp = path + ".tmp"
    # A replace cut between its remove and its rename (FAT) left the only copy of the value in tmp: finish it
    # before the next value's first bytes overwrite that copy. A half-written tmp never was the value: it stays,
    # to be overwritten.
    if not _exists(path):
        try:
            with open(tmp) as f:
                json.load(f)
            whole = True
        except (OSError, ValueError):
            whole = False
        if whole:
            os.rename(tmp, path)
    with open(tmp, "w") as f:
        # json.dump writes piece by piece, so a large value is never one string in RAM.
        json.dump(value, f)
    replace(tmp, path)
