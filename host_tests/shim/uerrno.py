"""MicroPython's u-name for errno: on CPython it is CPython's errno module itself."""

import errno
import sys

sys.modules[__name__] = errno
