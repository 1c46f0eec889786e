"""MicroPython's u-name for json: on CPython it is CPython's json module itself."""

import json
import sys

sys.modules[__name__] = json
