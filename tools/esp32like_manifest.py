# Build-only manifest of the esp32like test runtime (tools/esp32like.py): the unix port's standard modules,
# umqtt.simple frozen as ESP32 firmware freezes it (require() there: default optimisation, asserts kept), and
# iotjobs through the manifest customers use.
include("$(PORT_DIR)/variants/standard/manifest.py")
package("umqtt", base_path="../build/umqtt")
include("../firmware/manifest.py")
