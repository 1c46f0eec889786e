# Build-only manifest of the esp32like test runtime (tools/esp32like.py): the unix port's standard modules,
# umqtt.simple as ESP32 firmware has it frozen, and iotjobs through the manifest customers use.
include("$(PORT_DIR)/variants/standard/manifest.py")
package("umqtt", base_path="../build/umqtt", opt=1)
include("../firmware/manifest.py")
