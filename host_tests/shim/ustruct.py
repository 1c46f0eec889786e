"""MicroPython's u-name for struct: on CPython it is CPython's struct module itself."""

import struct
import sys

sys.modules[__name__] = struct
