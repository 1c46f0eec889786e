"""What every board's main.py shares: config, WiFi, clock, the Jobs client (MQTT or HTTPS), status LED, runner."""

import json
import time

CONFIG_PATH = "config.json"  # written by iotjobs-deploy, and only by it
SETTINGS_PATH = "settings.json"  # written by config jobs, and only by them; its keys win over config.json's
BOARD_PATH = "board.json"
WIFI_ATTEMPTS = 5
WIFI_ATTEMPT_MS = 15000
NTP_ATTEMPTS = 5
CONNECT_ATTEMPTS = 5
# After a failed start-up the board resets and tries again from scratch, this long after.
RETRY_AFTER_MS = 60000

# One character per 100 ms tick, "#" on: each state is told apart by its rhythm, so a one-colour LED is enough.
PATTERNS = {
    "wifi": "#####.....",  # joining WiFi, setting the clock, connecting
    "idle": "#" + "." * 29,  # a short blink every 3 s
    "running": "#.",
    "succeeded": "#",
    "failed": "#.#.#." + "." * 14,
    "rejected": "#.#." + "." * 16,
    "canceled": "##..##" + "." * 14,
    "error": "##########..",  # start-up failed: waiting to reset
}
# An RGB LED shows the state in colour as well.
COLOURS = {
    "wifi": (16, 8, 0),
    "idle": (0, 8, 0),
    "running": (0, 0, 24),
    "succeeded": (0, 24, 0),
    "failed": (24, 0, 0),
    "rejected": (24, 8, 0),
    "canceled": (12, 0, 12),
    "error": (24, 0, 0),
}


def log(text):
    print("board:", text)


def read_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        raise OSError("%s is missing: %s (iotjobs-deploy installs it)" % (path, what)) from None
    except ValueError:
        raise ValueError("%s is not valid JSON" % path) from None


def load_config(hint):
    """config.json with settings.json (what config jobs changed) laid over it: neither file overwrites the other."""
    cfg = read_json(CONFIG_PATH, hint)
    try:
        settings = read_json(SETTINGS_PATH, "")
    except OSError:
        return cfg  # no config job has run yet
    except ValueError as e:
        log("%s ignored: %s" % (SETTINGS_PATH, e))
        return cfg
    if isinstance(settings, dict):
        cfg.update(settings)
    return cfg


class Led:
    """The status LED: a pattern per runner state, stepped by a hardware timer so it blinks while a job runs."""

    def __init__(self, spec):
        self.pattern = PATTERNS["wifi"]
        self.colour = COLOURS["wifi"]
        self.tick = 0
        self.pin = None
        self.rgb = None
        self.active = 1
        self.timer = None
        if not spec:
            return
        from machine import Pin, Timer

        pin = Pin(spec["pin"], Pin.OUT)
        if spec.get("kind") == "rgb":
            import neopixel

            self.rgb = neopixel.NeoPixel(pin, 1)
        else:
            self.pin = pin
            self.active = 0 if spec.get("active_low") else 1
        self.timer = Timer(spec.get("timer", 0))
        self.timer.init(period=100, mode=Timer.PERIODIC, callback=self._step)

    def show(self, state, job_id=None):
        """Switch to state's pattern (the runner's on_state); unknown states show "error"."""
        log("status %s" % state if job_id is None else "status %s %s" % (state, job_id))
        self.pattern = PATTERNS.get(state, PATTERNS["error"])
        self.colour = COLOURS.get(state, COLOURS["error"])
        self.tick = 0

    def _step(self, timer):
        on = self.pattern[self.tick % len(self.pattern)] == "#"
        self.tick += 1
        if self.rgb is not None:
            self.rgb[0] = self.colour if on else (0, 0, 0)
            self.rgb.write()
        elif self.pin is not None:
            self.pin.value(self.active if on else 1 - self.active)

    def off(self):
        if self.timer is not None:
            self.timer.deinit()


def wifi_up(ssid, password, attempts=WIFI_ATTEMPTS, attempt_ms=WIFI_ATTEMPT_MS):
    """The station interface, connected; OSError after attempts tries of attempt_ms each."""
    import network

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    for attempt in range(1, attempts + 1):
        if wlan.isconnected():
            break
        wlan.connect(ssid, password)
        deadline = time.ticks_add(time.ticks_ms(), attempt_ms)
        while not wlan.isconnected() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            time.sleep_ms(100)
        if wlan.isconnected():
            break
        log("WiFi %r: attempt %d/%d failed (status %s)" % (ssid, attempt, attempts, wlan.status()))
        wlan.disconnect()
        # Back off: an access point that is rebooting needs longer than a bad signal does.
        time.sleep_ms(1000 * attempt)
    else:
        raise OSError("WiFi %r did not come up after %d attempts" % (ssid, attempts))
    log("WiFi %r up: %s" % (ssid, wlan.ifconfig()[0]))
    return wlan


def clock_set(host, attempts=NTP_ATTEMPTS):
    """Set the RTC from NTP: TLS checks the certificates' validity dates against it, and boards boot in 2000."""
    import ntptime

    ntptime.host = host
    for attempt in range(1, attempts + 1):
        try:
            ntptime.settime()
            log("clock set from %s: %04d-%02d-%02d %02d:%02d:%02d UTC" % ((host,) + time.gmtime()[:6]))
            return
        except OSError as e:
            log("NTP %s: attempt %d/%d failed: %s" % (host, attempt, attempts, e))
            time.sleep_ms(1000 * attempt)
    raise OSError("NTP %s did not answer after %d attempts" % (host, attempts))


def mqtt_client(cfg):
    """umqtt.simple's MQTTClient for cfg: mutual TLS with the DER files it names, or plain MQTT without them."""
    keepalive = cfg.get("keepalive", 60)
    if not cfg.get("cert"):
        from umqtt.simple import MQTTClient

        return MQTTClient(cfg["thing"], cfg["endpoint"], cfg.get("port", 1883), keepalive=keepalive)
    from iotjobs.tls import make_client

    return make_client(cfg["thing"], cfg["endpoint"], cfg["cert"], cfg["key"], cfg["ca"], port=cfg.get("port", 8883),
                       keepalive=keepalive)


def jobs_client(cfg, wlan=None):
    """The Jobs client cfg asks for: "transport": "https" (mutual TLS; port 8443, AWS IoT's), else MQTT."""
    timeout_ms = cfg.get("timeout_ms", 10000)
    if cfg.get("transport", "mqtt") == "https":
        # Imported only here: an HTTPS board never loads the MQTT client or umqtt.simple.
        from iotjobs.https import JobsHttpsClient

        return JobsHttpsClient(cfg["endpoint"], cfg["thing"], cfg["cert"], cfg["key"], cfg["ca"],
                               port=cfg.get("port", 8443), timeout_ms=timeout_ms, wlan=wlan)
    from iotjobs import JobsClient

    return JobsClient(mqtt_client(cfg), cfg["thing"], timeout_ms=timeout_ms, wlan=wlan)


def connect(jc, attempts=CONNECT_ATTEMPTS):
    """First MQTT connect, with backoff; after it the session reconnects by itself."""
    for attempt in range(1, attempts + 1):
        try:
            jc.connect()
            return
        except OSError as e:
            log("connect: attempt %d/%d failed: %s" % (attempt, attempts, e))
            if attempt == attempts:
                raise
            time.sleep_ms(2000 * attempt)


def run_jobs(cfg, handlers, led, wlan=None, reset=None, max_jobs=None):
    """Connect as cfg's thing and run jobs with handlers until max_jobs are done (None: forever).

    Over HTTPS nothing stays connected: the runner asks for the next job every describe_every_ms.
    """
    from iotjobs import handlers as builtin_handlers
    from iotjobs.runner import Runner

    # The config handler writes settings.json: config.json is the deploy's, and a redeploy replaces it.
    builtin_handlers.CONFIG_PATH = SETTINGS_PATH
    jc = jobs_client(cfg, wlan)
    runner = Runner(jc, handlers, describe_every_ms=cfg.get("describe_every_ms", 60000), on_state=led.show,
                    reset=reset)
    if jc.notifies:
        connect(jc)
        log("connected to %s:%s as %s" % (cfg["endpoint"], cfg.get("port", "default port"), cfg["thing"]))
    else:
        log("polling https://%s:%s as %s every %d ms" % (cfg["endpoint"], jc.port, cfg["thing"],
                                                        runner.describe_every_ms))
    done = runner.run(max_jobs)
    jc.disconnect()
    log("done: %d job(s)" % done)


def start(handlers):
    """An ESP32 board's main: WiFi, clock, then jobs forever; a failed start-up resets the board to try again."""
    import machine

    cfg = load_config("copy config.example.json, fill it in, deploy it")
    board = read_json(BOARD_PATH, "the board description")
    led = Led(board.get("led"))
    led.show("wifi")
    wifi = cfg["wifi"]
    try:
        wlan = wifi_up(wifi["ssid"], wifi["password"], wifi.get("attempts", WIFI_ATTEMPTS),
                       wifi.get("attempt_ms", WIFI_ATTEMPT_MS))
        clock_set(cfg.get("ntp_host", "pool.ntp.org"))
        run_jobs(cfg, handlers, led, wlan=wlan, max_jobs=cfg.get("max_jobs"))
    except OSError as e:
        led.show("error")
        retry_ms = cfg.get("retry_after_ms", RETRY_AFTER_MS)
        log("start-up failed: %s; resetting in %d s" % (e, retry_ms // 1000))
        time.sleep_ms(retry_ms)
        led.off()
        machine.reset()
