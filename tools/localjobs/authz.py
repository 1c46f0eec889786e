"""Who may do what with the TLS service: each thing's certificate reaches only its own thing's jobs.

Over MQTT mosquitto's dynamic-security plugin enforces it: the device listener takes the certificate's
Common Name as the user name (`use_identity_as_username`), and each recorded thing has a client of that
name whose one role allows publish, receive, subscribe and unsubscribe under `$aws/things/<thing>/jobs/#`
and nothing else; the default for everyone is deny. (mosquitto's `acl_file` would not do: it never checks
SUBSCRIBE, so another thing's subscription would be granted and merely stay silent.) The service's own
client signs in on a loopback listener with a password made at each start. Over HTTPS the check is the
adapter's (see https_api.py), against the same record: the presented certificate must be the one recorded
for the thing in the request's path.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .certs import CertificateFolder, certificate_id

SERVICE_USER = "iotjobs-local"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
PLUGIN = "mosquitto_dynamic_security.so"
# The plugin's own defaults for a password it hashes itself (PBKDF2-SHA512, a 12-byte salt).
PASSWORD_ITERATIONS = 101
SALT_BYTES = 12
ACL_TYPES = ("publishClientSend", "publishClientReceive", "subscribePattern", "unsubscribePattern")


def find_plugin(executable: str) -> str:
    """The dynamic-security plugin that ships with mosquitto 2 (Debian, Homebrew, a source build)."""
    prefix = Path(os.path.realpath(executable)).parent.parent
    candidates = [
        *glob.glob(f"/usr/lib/*/{PLUGIN}"),
        f"/usr/lib/{PLUGIN}",
        f"/usr/lib/mosquitto/{PLUGIN}",
        str(prefix / "lib" / PLUGIN),
        f"/usr/local/lib/{PLUGIN}",
        f"/opt/homebrew/lib/{PLUGIN}",
    ]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"mosquitto's {PLUGIN} was not found (it comes with mosquitto 2.0 or later)")


def thing_filter(thing: str) -> str:
    return f"$aws/things/{thing}/jobs/#"


def role_name(thing: str) -> str:
    return f"thing:{thing}"


def acls(topic: str) -> list[dict[str, Any]]:
    return [{"acltype": kind, "topic": topic, "allow": True} for kind in ACL_TYPES]


def hashed_password(password: str) -> dict[str, Any]:
    salt = os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PASSWORD_ITERATIONS)
    return {
        "salt": base64.b64encode(salt).decode(),
        "password": base64.b64encode(digest).decode(),
        "iterations": PASSWORD_ITERATIONS,
    }


def broker_config(password: str, things: dict[str, str]) -> dict[str, Any]:
    """The plugin's starting config: the service (everything under `$aws/`, plus the plugin's control
    topic) and one client per thing (`things`: thing -> its certificate's Common Name). A client signed
    in by certificate has no password here: mosquitto checks none for it."""
    service_topics = ["#", "$aws/#", CONTROL_TOPIC + "/#"]
    return {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": False},
        "clients": [
            {"username": SERVICE_USER, "roles": [{"rolename": SERVICE_USER}], **hashed_password(password)},
            *({"username": name, "roles": [{"rolename": role_name(thing)}]} for thing, name in things.items()),
        ],
        "groups": [],
        "roles": [
            {"rolename": SERVICE_USER, "acls": [acl for topic in service_topics for acl in acls(topic)]},
            *({"rolename": role_name(thing), "acls": acls(thing_filter(thing))} for thing in things),
        ],
    }


def thing_commands(thing: str, name: str) -> list[dict[str, Any]]:
    """The plugin's commands that let a running broker admit a thing recorded after it started."""
    return [
        {"command": "createRole", "rolename": role_name(thing), "acls": acls(thing_filter(thing))},
        {"command": "createClient", "username": name, "roles": [{"rolename": role_name(thing)}]},
    ]


class Principals:
    """The folder's record of which certificate belongs to which thing, re-read when the file changes."""

    def __init__(self, folder: CertificateFolder) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._by_id: dict[str, str] = {}
        self._names: dict[str, str] = {}

    def things(self) -> dict[str, str]:
        """Each recorded thing and its certificate's Common Name (the broker's user name for it)."""
        with self._lock:
            self._refresh()
            return dict(self._names)

    def thing_of(self, cert_der: bytes) -> str | None:
        """The thing the certificate is attached to, None for a certificate the record does not name."""
        with self._lock:
            self._refresh()
            return self._by_id.get(certificate_id(cert_der))

    def _refresh(self) -> None:
        try:
            info = self.folder.record.stat()
        except FileNotFoundError:
            self._stamp, self._by_id, self._names = None, {}, {}
            return
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            things = self.folder.things()
            self._by_id = {entry["certificateId"]: thing for thing, entry in things.items()}
            self._names = {thing: entry["commonName"] for thing, entry in things.items()}
            self._stamp = stamp


class BrokerAdmin:
    """Sends dynamic-security commands with the service's credentials and waits for the plugin's answer."""

    def __init__(self, host: str, port: int, password: str) -> None:
        self.host, self.port, self.password = host, port, password

    def apply(self, commands: list[dict[str, Any]], timeout: float = 10.0) -> None:
        answered = threading.Event()
        ready = threading.Event()
        responses: list[dict[str, Any]] = []
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{SERVICE_USER}-admin-{uuid.uuid4().hex[:8]}")
        client.username_pw_set(SERVICE_USER, self.password)
        client.on_connect = lambda c, u, f, reason, p: c.subscribe(RESPONSE_TOPIC, 1)
        client.on_subscribe = lambda c, u, mid, reasons, p: ready.set()

        def on_message(c: mqtt.Client, u: Any, message: mqtt.MQTTMessage) -> None:
            responses.extend(json.loads(message.payload).get("responses", []))
            answered.set()

        client.on_message = on_message
        client.connect(self.host, self.port)
        client.loop_start()
        try:
            if not ready.wait(timeout):
                raise RuntimeError(f"the broker's admin connection at {self.host}:{self.port} got no SUBACK")
            client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
            if not answered.wait(timeout):
                raise RuntimeError("the broker's dynamic-security plugin did not answer")
        finally:
            client.disconnect()
            client.loop_stop()
        # A thing admitted before (a restart of the service on the same broker) is not an error.
        errors = [r for r in responses if r.get("error") and "already exists" not in r["error"]]
        if errors:
            raise RuntimeError(f"the broker refused {errors}")

