"""The virtual board: the MicroPython unix port running jobs from an MQTT broker, as an ESP32 would."""

import sys
import time

import iotboard

from iotjobs import handlers

USAGE = "usage: main.py [--broker HOST:PORT] [--thing NAME] [--jobs N]  (defaults: config.json)"


def greet(execution, progress):
    """The demo operation: report each step as progress, then succeed with the document's message."""
    params = execution["input"]
    steps = int(params.get("steps", 1))
    for step in range(1, steps + 1):
        time.sleep_ms(100)
        progress({"step": "%d/%d" % (step, steps)})
        iotboard.log("job %s progress step %d/%d" % (execution["jobId"], step, steps))
    return {"result": params.get("message", "done")}


HANDLERS = {"greet": greet, "download": handlers.download, "reboot": handlers.reboot, "config": handlers.config}


def options(argv, cfg):
    """cfg with the command line's --broker, --thing and --jobs applied (the demo runs the board that way)."""
    i = 0
    while i < len(argv):
        if argv[i] not in ("--broker", "--thing", "--jobs") or i + 1 >= len(argv):
            raise SystemExit(USAGE)
        name, value = argv[i], argv[i + 1]
        if name == "--broker":
            host, port = value.rsplit(":", 1)
            cfg["endpoint"], cfg["port"] = host, int(port)
        elif name == "--thing":
            cfg["thing"] = value
        else:
            cfg["max_jobs"] = int(value)
        i += 2
    return cfg


def main():
    argv = [a for a in sys.argv[1:] if a]
    cfg = {} if argv else iotboard.load_config("copy config.example.json and deploy it")
    cfg = options(argv, cfg)
    if "endpoint" not in cfg or "thing" not in cfg:
        raise SystemExit(USAGE)
    # No WiFi and no NTP here: the host has the network and its clock is right.
    # The runner's default reset ends the process here (no machine.reset()): iotjobs-vboard starts it again.
    iotboard.run_jobs(cfg, HANDLERS, iotboard.Led(None), max_jobs=cfg.get("max_jobs"))


main()
