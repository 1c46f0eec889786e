# Freezes the iotjobs library into MicroPython firmware. Include this file from your board's manifest, e.g.
#   include("$(PORT_DIR)/boards/manifest.py")
#   include("/path/to/iotjobs/firmware/manifest.py")
# and build with FROZEN_MANIFEST=/absolute/path/to/that/manifest.py (README: "Freeze it into your firmware").
# umqtt.simple is not here: ESP32 firmware freezes it already (elsewhere add require("umqtt.simple")).
# opt=1 as iotjobs-deploy's -O1: no asserts, but line numbers kept for tracebacks.
package("iotjobs", base_path="lib", opt=1)
