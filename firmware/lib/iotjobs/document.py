"""Large messages kept on flash: the envelope read field by field, the job document left in place until asked for."""

import json
import os

from micropython import const

_CHUNK = const(256)


class _Scanner:
    """Walks the JSON text in f between start and end, a chunk at a time, without building values.

    Each chunk is read into one buffer (buf, or a new one), never into a new block: on a heap nearly full of small
    objects a scan goes on where a fresh chunk would find no room.
    """

    def __init__(self, f, start, end, buf=None):
        self.f = f
        self.pos = start
        self.end = end
        self.base = start
        self.n = 0  # bytes of the file from base that buf holds
        self.buf = buf or bytearray(_CHUNK)

    def _at(self, space=False):
        # The byte at pos (past whitespace first, if space), or -1 past the end.
        while True:
            i = self.pos - self.base
            if i < 0 or i >= self.n:
                if self.pos >= self.end:
                    return -1
                self.f.seek(self.pos)
                self.base = self.pos
                self.n = min(self.f.readinto(self.buf) or 0, self.end - self.pos)
                if not self.n:
                    return -1
                i = 0
            c = self.buf[i]
            if not space or c not in b" \t\r\n":
                return c
            self.pos += 1

    def _skip_string(self):
        self.pos += 1  # the opening quote
        while True:
            i = self.pos - self.base
            n = self.n
            if i < 0 or i >= n:
                if self._at() < 0:
                    raise ValueError("unterminated JSON string")
                continue
            quote = self.buf.find(b'"', i, n)
            slash = self.buf.find(b"\\", i, n)
            if slash >= 0 and (quote < 0 or slash < quote):
                self.pos = self.base + slash + 2
            elif quote >= 0:
                self.pos = self.base + quote + 1
                return
            else:
                self.pos = self.base + n

    def skip_value(self):
        """Move past one value; return its (start, end)."""
        c = self._at(True)
        start = self.pos
        if c == 0x22:  # "
            self._skip_string()
        elif c >= 0 and c in b"{[":
            depth = 0
            while True:
                c = self._at()
                if c < 0:
                    raise ValueError("unterminated JSON value")
                if c == 0x22:
                    self._skip_string()
                    continue
                if c in b"{[":
                    depth += 1
                elif c in b"}]":
                    depth -= 1
                    if depth == 0:
                        self.pos += 1
                        break
                self.pos += 1
        elif c >= 0:
            while c >= 0 and c not in b",}] \t\r\n":
                self.pos += 1
                c = self._at()
        else:
            raise ValueError("missing JSON value")
        return start, self.pos

    def text(self, start, end):
        self.f.seek(start)
        return self.f.read(end - start)

    def members(self):
        """(key, start, end) of each member of the object that starts here."""
        if self._at(True) != 0x7B:  # {
            raise ValueError("malformed JSON at byte %d" % self.pos)
        self.pos += 1
        if self._at(True) == 0x7D:  # }
            self.pos += 1
            return
        while True:
            if self._at(True) != 0x22:
                raise ValueError("malformed JSON object key at byte %d" % self.pos)
            key = json.loads(self.text(*self.skip_value()))
            if self._at(True) != 0x3A:  # :
                raise ValueError("malformed JSON at byte %d" % self.pos)
            self.pos += 1
            start, end = self.skip_value()
            yield key, start, end
            c = self._at(True)
            self.pos += 1
            if c == 0x7D:
                return
            if c != 0x2C:  # ,
                raise ValueError("malformed JSON object at byte %d" % (self.pos - 1))


class JobDocument:
    """A job document left in a file: its size, a field at a time, whole, or in chunks, as the handler can afford."""

    def __init__(self, path, offset, size):
        self.path = path
        self.offset = offset
        self.size = size

    def get(self, key, default=None):
        """The value of one top-level field, parsed alone."""
        with open(self.path, "rb") as f:
            scanner = _Scanner(f, self.offset, self.offset + self.size)
            for name, start, end in scanner.members():
                if name == key:
                    return json.loads(scanner.text(start, end))
        return default

    def __getitem__(self, key):
        value = self.get(key, self)  # the document itself stands for "missing": no JSON value is it
        if value is self:
            raise KeyError(key)
        return value

    def chunks(self, size=_CHUNK):
        """The document's JSON text, size bytes at a time."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            left = self.size
            while left:
                piece = f.read(min(size, left))
                if not piece:
                    return
                left -= len(piece)
                yield piece

    def read(self):
        """The whole JSON text (size bytes of RAM)."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read(self.size)

    def load(self):
        """The whole document parsed: as costly as json.loads of the text."""
        return json.loads(self.read())


def read_envelope(path, size, budget):
    """A response or notification stored in a file, as a dict; job documents over budget bytes stay JobDocuments."""
    with open(path, "rb") as f:
        return _object(_Scanner(f, 0, size), path, budget)


def keep(document, path):
    """Move a JobDocument's file to path, out of the way of the next large message; the document follows it."""
    if document.path == path:
        return
    try:
        os.remove(path)
    except OSError:
        pass
    os.rename(document.path, path)
    document.path = path


def _object(scanner, path, budget):
    found = {}
    for key, start, end in scanner.members():
        if key == "jobDocument" and end - start > budget:
            found[key] = JobDocument(path, start, end - start)
        elif key == "execution" and end - start > budget:
            found[key] = _object(_Scanner(scanner.f, start, end, scanner.buf), path, budget)
            scanner.n = 0  # its buffer now holds what the inner scan read last
        else:
            found[key] = json.loads(scanner.text(start, end))
    return found
