"""The MQTT session: owns the socket umqtt.simple connects, pings, notices a dead link, reconnects."""

import select
import time

import umqtt.simple as umqtt_simple

from iotjobs import net


def _header(first, size):
    """A packet's fixed header: its first byte, then MQTT's variable-length encoding of size."""
    head = [first]
    while True:
        head.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
        size >>= 7
        if not size:
            return bytes(head)


def broker_error(error, mqtt):
    """error, of the same type, reworded to name the broker ("[Errno 111] ECONNREFUSED" alone names none)."""
    where = "connect to %s:%s" % (getattr(mqtt, "server", "?"), getattr(mqtt, "port", "?"))
    args = error.args
    if isinstance(error, OSError) and args and isinstance(args[0], int):
        # The errno stays the first argument, where callers look for it (MicroPython prints its name too).
        return OSError(args[0], where if len(args) < 2 else "%s: %s" % (where, args[1]))
    try:
        return type(error)("%s: %s" % (where, error))
    except Exception:  # a type whose constructor wants something else: as it was
        return error


class _TimedSockets:
    """umqtt.simple 1.3.4's view of the socket module: sockets it opens time out (it has no connect timeout)."""

    def __init__(self, real, timeout_s):
        self.real = real
        self.timeout_s = timeout_s
        self.getaddrinfo = real.getaddrinfo

    def socket(self, *args):
        sock = self.real.socket(*args)
        sock.settimeout(self.timeout_s)
        return sock


def _ignore(*args):
    pass


class Session:
    """One MQTT connection that comes back by itself.

    mqtt: a umqtt.simple MQTTClient (or one with its constructor and connect()), which opens the connection; from
    its CONNACK on the session reads and writes the socket itself, each read or write bounded by response_ms.
    on_connect(): called after every successful (re)connect and subscribe; the client re-sends from there.
    on_drop(reason, detail): each message dropped, each connection lost or refused.

    A packet is read only when the client is ready for it (nothing waits in the inbox), and a publish does not wait
    for its PUBACK (owed within response_ms, as a ping's answer is): a burst of messages waits in the socket, not on
    the heap, and each message lands in the one receive buffer.
    """

    def __init__(
        self,
        mqtt,
        qos=1,
        inbox_max=16,
        wlan=None,
        response_ms=5000,
        ping_ms=None,
        backoff_floor_ms=1000,
        backoff_ceiling_ms=120000,
        backoff_factor=2,
        stable_ms=60000,
        wlan_ms=15000,
        max_message=40960,
        rx_buffer=4096,
        spill="iotjobs_rx",
    ):
        self.mqtt = mqtt
        self.qos = qos
        self.inbox_max = inbox_max
        self.wlan = wlan
        self.response_ms = response_ms
        # Half the keepalive: the broker drops a client that is silent for 1.5 keepalives.
        self.ping_ms = ping_ms or (getattr(mqtt, "keepalive", 0) or 60) * 500
        self.backoff_floor_ms = backoff_floor_ms
        self.backoff_ceiling_ms = backoff_ceiling_ms
        self.backoff_factor = backoff_factor
        self.stable_ms = stable_ms
        self.wlan_ms = wlan_ms
        self.max_message = max_message
        # One receive buffer for the whole life of the session: small messages allocate nothing.
        self._rx = bytearray(rx_buffer)
        self._rx_busy = False  # it holds a message not yet released
        self._rx_lent = False  # the message taken last is the one it holds
        # Bigger messages go to a file (two, used in turn) instead of the heap; None keeps them in RAM.
        self.spill = spill
        self._spill_turn = 0
        self.topics = None  # topics(): what to subscribe to after each connect
        self.on_connect = _ignore
        self.on_drop = _ignore
        self.connected = False
        self.inbox = []
        self.oversized = 0
        self.connects = 0
        self.link_losses = 0
        self.wifi_waits = 0
        self.last_error = None
        now = time.ticks_ms()
        self._attempt = 0
        self._next_attempt = self._up_since = self._last_rx = self._last_tx = now
        self._owed_at = None  # since when an answer (a PINGRESP, a PUBACK) is owed
        self._sock = None
        self._pid = 0
        self._poller = select.poll()

    # ---- connecting ------------------------------------------------------------------------------

    def connect(self, topics):
        """Connect and subscribe to topics() now; raise OSError if that fails (later losses are handled here)."""
        self.topics = topics
        if self._connect_once(self.wlan_ms):
            return
        error = self.last_error
        if isinstance(error, OSError):
            raise error
        # umqtt.simple fails a CONNACK cut short or refused otherwise (IndexError, AssertionError, MQTTException):
        # one kind of error for the caller, whose retry loop (a board's main) must not die of it.
        raise OSError("connect failed: %s: %s" % (type(error).__name__, error))

    def _connect_once(self, budget_ms):
        self._close_socket()
        mqtt = self.mqtt
        try:
            # WiFi first, waiting for it up to wlan_ms (or the budget).
            wait_ms = min(self.wlan_ms, budget_ms)
            if not net.wlan_up(self.wlan, wait_ms):
                self.wifi_waits += 1
                raise OSError("WiFi did not come up: waited up to %d ms" % wait_ms)
            try:
                try:
                    mqtt.connect(True, timeout=self.response_ms / 1000)
                except TypeError:  # umqtt.simple 1.3.4: no timeout argument
                    real = umqtt_simple.socket  # type: ignore[attr-defined]
                    umqtt_simple.socket = _TimedSockets(real, self.response_ms / 1000)  # type: ignore[attr-defined]
                    try:
                        mqtt.connect(True)
                    finally:
                        umqtt_simple.socket = real  # type: ignore[attr-defined]
            except Exception as e:
                raise broker_error(e, mqtt) from None
            self._sock = sock = mqtt.sock
            # Non-blocking from here, each wait a poll() with a deadline: a TLS socket has no settimeout().
            sock.setblocking(False)
            self._poller.register(sock, select.POLLIN)
            self._subscribe()
        except Exception as e:  # any failure of an attempt is the same to us: try again later
            self._failed(e)
            return False
        self.connected = True
        self.connects += 1
        self._up_since = self._last_rx = self._last_tx = time.ticks_ms()
        self._owed_at = self.last_error = None
        self.on_connect()
        return self.connected

    def _subscribe(self):
        # Ours, not umqtt.simple's: 1.3.4 writes SUBSCRIBE's length in one byte, which a topic of a thing name
        # longer than ~90 characters (128 are allowed) overflows. All are sent, then the SUBACKs read in order.
        wanted = self.topics()  # type: ignore[misc]  # set by connect()
        first = self._pid
        for topic in wanted:
            self._pid = pid = self._pid % 0xFFFF + 1
            name = topic.encode()
            n = len(name)
            self._send(b"".join((_header(0x82, n + 5), bytes((pid >> 8, pid & 0xFF, n >> 8, n & 0xFF)), name,
                                 bytes((self.qos,)))))
        pid = first
        for topic in wanted:
            pid = pid % 0xFFFF + 1
            while True:
                op, body = self._packet(True)
                if op == 0x90:
                    break
            if body[0] != pid >> 8 or body[1] != pid & 0xFF:
                raise OSError("SUBACK for another packet")
            if body[2] == 0x80:
                raise OSError("the broker refused the subscription to " + topic)

    def _failed(self, error):
        was_connected = self.connected
        self.connected = False
        self.last_error = error
        self._close_socket()
        if was_connected:
            self.link_losses += 1
        self.on_drop("link lost" if was_connected else "connect failed", error)
        delay = net.backoff_ms(self._attempt, self.backoff_floor_ms, self.backoff_ceiling_ms, self.backoff_factor)
        self._attempt += 1
        self._next_attempt = time.ticks_add(time.ticks_ms(), delay)

    def _close_socket(self):
        sock = self._sock
        if sock is None:
            return
        self._sock = None
        try:
            self._poller.unregister(sock)
        except (OSError, KeyError, ValueError):
            pass
        try:
            sock.close()
        except OSError:
            pass

    def disconnect(self):
        if self.connected:
            try:
                self._send(b"\xe0\x00")  # DISCONNECT
            except Exception:  # the link is already gone; the socket is released below either way
                pass
        self.connected = False
        self._close_socket()
        self.inbox = []

    # ---- using the link --------------------------------------------------------------------------

    def publish(self, topic, payload):
        """Publish now; False if the link is down or failed while publishing.

        MemoryError if the packet cannot be built: nothing was sent and the link stays up.
        """
        if not self.connected:
            return False
        # Ours, not umqtt.simple's: one write per packet. umqtt writes a PUBLISH in four pieces, and with
        # Nagle on (it is, on a board) each piece after the first waits for the broker's delayed ACK, ~40 ms;
        # over TLS each piece is also a record of its own.
        if isinstance(payload, str):
            payload = payload.encode()
        name = topic.encode() if isinstance(topic, str) else topic
        n = len(name)
        pid = b""
        if self.qos:
            self._pid = number = self._pid % 0xFFFF + 1
            pid = bytes((number >> 8, number & 0xFF))
        # Joined into one block of its exact size, never grown piece by piece: on a full heap each growth would
        # need a larger free block than the packet itself.
        packet = b"".join((_header(0x32 if pid else 0x30, 2 + n + len(pid) + len(payload)), bytes((n >> 8, n & 0xFF)),
                           name, pid, payload))
        try:
            self._send(packet)
        except Exception as e:  # a broken link shows up as OSError, IndexError or AssertionError
            self._failed(e)
            return False
        if self.qos and self._owed_at is None:
            self._owed_at = self._last_tx
        return True

    def wait(self, timeout_ms):
        """Wait up to timeout_ms for a message, reconnecting and pinging as due; True if one waits in the inbox.

        Nothing is read while a message waits there: take it (and release it) first.
        """
        if self.inbox:
            return True
        now = time.ticks_ms()
        if not self.connected:
            due = time.ticks_diff(self._next_attempt, now)
            if due > 0:
                time.sleep_ms(min(due, timeout_ms))
                if due > timeout_ms:
                    return False
            # A call waiting on the link does not wait for WiFi beyond its own time.
            return self._connect_once(max(0, timeout_ms - max(due, 0)))
        if self._attempt and time.ticks_diff(now, self._up_since) >= self.stable_ms:
            self._attempt = 0
        try:
            owed = self._owed_at
            if owed is not None:
                # An answer the broker owes for response_ms means the link is dead (a half-open TCP connection too).
                left = self.response_ms - time.ticks_diff(now, owed)
                if left <= 0:
                    raise OSError("no answer from the broker within %d ms" % self.response_ms)
            else:
                left = self.ping_ms - max(time.ticks_diff(now, self._last_rx), time.ticks_diff(now, self._last_tx))
                if left <= 0:
                    self._send(b"\xc0\x00")  # PINGREQ
                    self._owed_at = now
                    left = self.response_ms
            # A TLS socket can hold a decrypted packet that poll() cannot see, so read before waiting.
            polled = False
            while not self.inbox:
                if self._packet(False) is None:
                    if polled or not self._poller.poll(max(0, min(timeout_ms, left))):
                        break
                    polled = True
        except Exception as e:  # see publish()
            self._failed(e)
        return bool(self.inbox)

    def take(self):
        """The oldest arrived (topic, message), or None.

        The message is bytes, a memoryview of the receive buffer (valid until release()), or, stored in a file,
        a tuple (path, size).
        """
        if not self.inbox:
            return None
        message = self.inbox.pop(0)
        # Only the receive buffer's own message frees it: one that came while it was busy is plain bytes.
        self._rx_lent = isinstance(message[1], memoryview)
        return message

    def release(self):
        """The message taken last is parsed: if it was in the receive buffer, the buffer may be reused."""
        if self._rx_lent:
            self._rx_lent = self._rx_busy = False

    # ---- the socket --------------------------------------------------------------------------------

    def _send(self, data):
        sock = self._sock
        poller = self._poller
        poller.modify(sock, select.POLLOUT)
        net.transfer(sock.write, memoryview(data), time.ticks_add(time.ticks_ms(), self.response_ms), poller)  # type: ignore[union-attr]
        poller.modify(sock, select.POLLIN)
        self._last_tx = time.ticks_ms()

    def _fill(self, view):
        """Fill view from the socket within response_ms."""
        net.transfer(self._sock.readinto, view, time.ticks_add(time.ticks_ms(), self.response_ms), self._poller)  # type: ignore[union-attr]

    def _read(self, n):
        data = self._sock.read(n) if n else b""  # type: ignore[union-attr]
        if data is not None and len(data) == n:
            return data  # most reads find their bytes waiting: one allocation, no poll
        if data == b"":
            raise OSError("connection closed by the broker")
        buf = bytearray(n)
        got = len(data) if data else 0
        buf[:got] = data or b""
        self._fill(memoryview(buf)[got:])
        return bytes(buf)

    def _packet(self, block):
        """Read one packet, if one has come (block: wait for it up to response_ms): (type, body), the body None
        for a PUBLISH, which goes to the inbox; None if none had come."""
        first = self._sock.read(1)  # type: ignore[union-attr]
        if first is None and not block:
            return None
        if not first:
            if first == b"":
                raise OSError("connection closed by the broker")
            first = self._read(1)
        op = first[0]
        size = shift = 0
        while True:
            b = self._read(1)[0]
            size |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        self._last_rx = time.ticks_ms()
        self._owed_at = None
        if op & 0xF0 != 0x30:
            # A broker sends nothing else of any length (SUBACK, PUBACK, PINGRESP ...).
            if size > 64:
                raise OSError("a %d-byte packet of type 0x%02x" % (size, op))
            return op, self._read(size) if size else b""
        head = self._read(2)
        topic_len = head[0] << 8 | head[1]
        size -= topic_len + 2
        if topic_len > 256:
            # No Jobs topic is that long: not ours, and not worth the heap.
            self._discard(topic_len + size)
            self.on_drop("unknown topic", "%d-byte topic" % topic_len)
            return op, None
        topic = self._read(topic_len)
        if op & 6:
            head = self._read(2)
            size -= 2
        msg = self._payload(size, topic)
        if msg is not None:
            if len(self.inbox) >= self.inbox_max:
                if isinstance(self.inbox.pop(0)[1], memoryview):
                    self._rx_busy = False
                self.on_drop("inbox full", "oldest message dropped")
            self.inbox.append((topic, msg))
        if op & 6 == 2:
            self._send(bytes((0x40, 2, head[0], head[1])))  # PUBACK
        elif op & 6 == 4:
            raise OSError("QoS 2 message: this client subscribes with QoS 1 at most")
        return op, None

    def _payload(self, size, topic):
        rx = self._rx
        if size > self.max_message:
            self._discard(size)
            self.on_drop("message too large", "%d bytes on %s" % (size, topic))
            return None
        if size <= len(rx) and not self._rx_busy:
            view = memoryview(rx)[:size]
            self._fill(view)
            self._rx_busy = True
            return view
        if self.spill is None or size <= len(rx):
            try:
                return self._read(size)
            except MemoryError:
                self._discard(size)
                self.on_drop("message too large", "%d bytes on %s: no memory" % (size, topic))
                return None
        self._spill_turn ^= 1
        path = "%s%d.bin" % (self.spill, self._spill_turn)
        with open(path, "wb") as f:
            self._discard(size, f.write)
        return path, size

    def _discard(self, size, sink=None):
        # Read off the socket a chunk at a time, to sink or dropped, so that the next packet still parses: through
        # the receive buffer when it is free, else a small one; either way a bounded amount of RAM.
        if sink is None:
            self.oversized += 1
            sink = _ignore
        chunk = memoryview(self._rx if not self._rx_busy else bytearray(256))
        while size > 0:
            piece = chunk[: min(size, len(chunk))]
            self._fill(piece)
            sink(piece)
            size -= len(piece)

