"""ESP32-S3 (DevKitC-1, RGB status LED): WiFi, clock and TLS, then the job runner with the built-in handlers."""

import iotboard

from iotjobs import handlers

# The operations this board accepts from a job document; anything else is REJECTED.
# "ota" needs firmware with two OTA app partitions (README: Firmware updates); without them its jobs just fail.
iotboard.start({"download": handlers.download, "reboot": handlers.reboot, "config": handlers.config,
                "ota": handlers.ota})
