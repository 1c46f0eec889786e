"""MicroPython's binascii for CPython: hexlify and b2a_base64 also take str, and hexlify's sep is one char."""

import binascii as _binascii
from typing import Any

a2b_base64 = _binascii.a2b_base64
unhexlify = _binascii.unhexlify
crc32 = _binascii.crc32


def _bytes(data: Any) -> Any:
    # MicroPython reads a str through the buffer protocol: its UTF-8 bytes.
    return data.encode() if isinstance(data, str) else data


def hexlify(data: Any, sep: Any = None) -> bytes:
    if sep is None:
        return _binascii.hexlify(_bytes(data))
    # MicroPython uses the first character of a longer separator; CPython rejects it.
    return _binascii.hexlify(_bytes(data), _bytes(sep)[:1])


def b2a_base64(data: Any, *, newline: bool = True) -> bytes:
    return _binascii.b2a_base64(_bytes(data), newline=newline)
