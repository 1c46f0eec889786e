"""The MQTT session: owns the umqtt.simple client, its subscriptions, and the inbox of arrived messages."""

import select

from micropython import const

INBOX_MAX = const(16)


class Session:
    def __init__(self, mqtt, qos=1, inbox_max=INBOX_MAX):
        self.mqtt = mqtt
        self.qos = qos
        self.inbox_max = inbox_max
        self.inbox = []
        self.overflowed = 0
        self._poller = select.poll()
        mqtt.set_callback(self._arrived)

    def _arrived(self, topic, msg):
        # umqtt calls this from inside wait_msg(): only enqueue, since publishing here would re-enter it.
        if len(self.inbox) >= self.inbox_max:
            self.inbox.pop(0)
            self.overflowed += 1
        self.inbox.append((topic, msg))

    def connect(self, topics):
        """Connect with a clean session and subscribe to topics."""
        self.mqtt.connect()
        for topic in topics:
            self.mqtt.subscribe(topic, self.qos)
        self._poller.register(self.mqtt.sock, select.POLLIN)

    def publish(self, topic, payload):
        # umqtt counts len(payload), which for a str with non-ASCII text is not its size on the wire.
        if isinstance(payload, str):
            payload = payload.encode()
        self.mqtt.publish(topic, payload, False, self.qos)

    def wait(self, timeout_ms):
        """Take in at most one packet, waiting up to timeout_ms for one; True if anything was read."""
        before = len(self.inbox)
        # A TLS socket can hold a decrypted packet that poll() cannot see, so look before waiting.
        self.mqtt.check_msg()
        if len(self.inbox) > before:
            return True
        if self._poller.poll(timeout_ms):
            self.mqtt.check_msg()
            return True
        return False

    def take(self):
        """The oldest arrived (topic, message), or None."""
        return self.inbox.pop(0) if self.inbox else None

    def disconnect(self):
        self._poller.unregister(self.mqtt.sock)
        try:
            self.mqtt.disconnect()
        except OSError:
            # The link is already gone; the socket still has to be released.
            self.mqtt.sock.close()
        self.inbox = []
