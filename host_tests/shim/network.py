"""MicroPython's network module for CPython: a WLAN whose link a test switches down and up."""

# Kept importable by MicroPython too (no typing, no f-strings), so a board-side test can use it.
import os

STA_IF = 0
AP_IF = 1

# The ESP32 port's values (from micropython-esp32-stubs 1.29).
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_CONNECT_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

AUTH_OPEN = 0
AUTH_WEP = 1
AUTH_WPA_PSK = 2
AUTH_WPA2_PSK = 3
AUTH_WPA_WPA2_PSK = 4

_link_forced_down = False


def set_link(up):
    """Take this process's link down (False) or let it follow MPSHIM_LINK_FILE again (True)."""
    global _link_forced_down
    _link_forced_down = not up


def link_up():
    """True unless set_link(False) or the file named by MPSHIM_LINK_FILE says `down`."""
    if _link_forced_down:
        return False
    # Read afresh on every call: a test flips the file while the firmware runs in another process.
    getenv = getattr(os, "getenv", None)
    path = getenv("MPSHIM_LINK_FILE") if getenv else None
    if not path:
        return True
    try:
        with open(path) as f:
            return f.read().strip() != "down"
    except OSError:
        return True


_hostname = "mpy-esp32"


def hostname(name=None):
    global _hostname
    if name is None:
        return _hostname
    _hostname = name


def country(code=None):
    return "XX" if code is None else None


# One state per interface: on a board every WLAN(STA_IF) is the same radio.
_states = {}  # type: dict[int, dict]


class WLAN:
    IF_STA = STA_IF
    IF_AP = AP_IF
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2

    def __init__(self, interface=STA_IF):
        if interface not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        self._if = interface
        st = _states.get(interface)
        if st is None:
            st = {
                "active": False,
                "joined": False,
                "ifconfig": None,
                "config": {
                    "mac": b"\x24\x0a\xc4\x00\x00" + (b"\x01" if interface == STA_IF else b"\x02"),
                    "ssid": "" if interface == STA_IF else "mpy-ap",
                    "key": "",
                    "channel": 1,
                    "hidden": False,
                    "security": AUTH_OPEN,
                    "hostname": _hostname,
                    "reconnects": -1,
                    "txpower": 20,
                    "pm": 1,
                },
            }
            _states[interface] = st
        self._st = st

    def active(self, is_active=None):
        if is_active is None:
            return self._st["active"]
        self._st["active"] = bool(is_active)
        if not is_active:
            self._st["joined"] = False

    def connect(self, ssid=None, key=None, bssid=None):
        if self._if != STA_IF:
            raise OSError("STA required")
        if not self._st["active"]:
            raise OSError("WLAN not active")
        if ssid is not None:
            self._st["config"]["ssid"] = ssid
        if key is not None:
            self._st["config"]["key"] = key
        # Joining is remembered; whether it is connected is decided by the link on every query,
        # so the radio "reconnects by itself" when the link comes back, as the ESP32 port does.
        self._st["joined"] = True

    def disconnect(self):
        self._st["joined"] = False

    def isconnected(self):
        return bool(self._if == STA_IF and self._st["active"] and self._st["joined"] and link_up())

    def status(self, param=None):
        if param == "rssi":
            if not self.isconnected():
                raise OSError("STA is not connected")
            return -55
        if param is not None:
            raise ValueError("unknown status param")
        if not self._st["active"] or not self._st["joined"]:
            return STAT_IDLE
        return STAT_GOT_IP if link_up() else STAT_NO_AP_FOUND

    def ifconfig(self, config=None):
        if config is not None:
            self._st["ifconfig"] = tuple(config)
            return None
        if not self.isconnected() and self._if == STA_IF:
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
        return self._st["ifconfig"] or ("192.168.4.23", "255.255.255.0", "192.168.4.1", "192.168.4.1")

    def config(self, *args, **kwargs):
        cfg = self._st["config"]
        if args and kwargs:
            raise TypeError("either query or set")
        if args:
            if len(args) != 1:
                raise TypeError("can query only one param")
            name = "ssid" if args[0] == "essid" else args[0]
            if name not in cfg:
                raise ValueError("unknown config param")
            return cfg[name]
        for name, value in kwargs.items():
            name = "ssid" if name == "essid" else name
            if name not in cfg or name == "mac":
                raise ValueError("unknown config param")
            cfg[name] = value
        return None

    def scan(self):
        if self._if != STA_IF or not self._st["active"]:
            raise OSError("STA must be active")
        if not link_up():
            return []
        ssid = self._st["config"]["ssid"] or "shim-ap"
        return [(ssid.encode(), b"\x02\x00\x00\x00\x00\x01", 6, -55, AUTH_WPA2_PSK, False)]
