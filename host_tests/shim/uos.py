"""MicroPython's u-name for os: CPython's os module itself (mprun.install() adds ilistdir)."""

import os
import sys

sys.modules[__name__] = os
