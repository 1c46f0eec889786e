"""The MQTT session: owns the umqtt.simple client and its socket, pings, notices a dead link, reconnects."""

import select
import time

import umqtt.simple as umqtt_simple
from micropython import const

from iotjobs import net
from iotjobs.document import Stored
from iotjobs.net import LinkDown, backoff_ms

INBOX_MAX = const(16)


def _put_length(packet, size):
    """Append MQTT's variable-length encoding of size."""
    while True:
        packet.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
        size >>= 7
        if not size:
            return


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


class _Link:
    """The socket as umqtt.simple sees it: a "blocking" read or write gives up after a bound instead of hanging."""

    def __init__(self, sock, session):
        self.sock = sock
        self.session = session
        self.blocking = True
        sock.setblocking(False)
        self._readable = select.poll()
        self._readable.register(sock, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(sock, select.POLLOUT)

    def setblocking(self, flag):
        self.blocking = flag

    def _deadline(self):
        return time.ticks_add(time.ticks_ms(), self.session.response_ms)

    def read(self, n):
        data = self.sock.read(n)
        if not self.blocking or (data and len(data) == n):
            # Most reads find their bytes waiting: one allocation, no poll.
            if data:
                self.session.received()
            return data
        if data == b"":
            raise LinkDown("connection closed by the broker")
        buf = bytearray(n)
        got = len(data) if data else 0
        if got:
            buf[:got] = data
        self.readinto(memoryview(buf)[got:])
        return bytes(buf)

    def readinto(self, view):
        """Fill view exactly, within the bound."""
        net.transfer(self.sock.readinto, view, self._deadline(), self._readable)
        self.session.received()

    def write(self, data, n=None):
        if isinstance(data, str):
            data = data.encode()  # umqtt.simple writes topics as they were given
        view = memoryview(data)[: len(data) if n is None else n]
        sent = net.transfer(self.sock.write, view, self._deadline(), self._writable)
        self.session.sent()
        return sent

    def close(self):
        self.sock.close()


class _TimedSockets:
    """umqtt.simple 1.3.4's view of the socket module: sockets it opens time out (it has no connect timeout)."""

    def __init__(self, real, timeout_s):
        self.real = real
        self.timeout_s = timeout_s

    def socket(self, *args):
        sock = self.real.socket(*args)
        sock.settimeout(self.timeout_s)
        return sock

    def getaddrinfo(self, *args):
        return self.real.getaddrinfo(*args)


class Session:
    """One MQTT connection that comes back by itself.

    mqtt: a umqtt.simple MQTTClient (or the same interface); topics: what to subscribe after each connect.
    on_connect(): called after every successful (re)connect and subscribe; the client re-sends from there.
    """

    def __init__(
        self,
        mqtt,
        qos=1,
        inbox_max=INBOX_MAX,
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
        keepalive = getattr(mqtt, "keepalive", 0) or 60
        # Half the keepalive: the broker drops a client that is silent for 1.5 keepalives.
        self.ping_ms = ping_ms or keepalive * 500
        self.backoff_floor_ms = backoff_floor_ms
        self.backoff_ceiling_ms = backoff_ceiling_ms
        self.backoff_factor = backoff_factor
        self.stable_ms = stable_ms
        self.wlan_ms = wlan_ms
        self.max_message = max_message
        # One receive buffer for the whole life of the session: small messages allocate nothing.
        self._rx = bytearray(rx_buffer)
        self._rx_busy = False
        self._rx_lent = False
        # Bigger messages go to a file (two, used in turn) instead of the heap; None keeps them in RAM.
        self.spill = spill
        self._spill_turn = 0
        self.topics = []  # type: list[str]
        self.on_connect = None
        self.on_drop = None
        self.connected = False
        self.inbox = []
        self.overflowed = 0
        self.oversized = 0
        self.connects = 0
        self.link_losses = 0
        self.wifi_waits = 0
        self.last_error = None
        now = time.ticks_ms()
        self._attempt = 0
        self._next_attempt = now
        self._up_since = now
        self._last_rx = now
        self._last_tx = now
        self._ping_at = None
        self._raw = None
        self._poller = select.poll()
        mqtt.set_callback(self._arrived)
        # umqtt.simple's own loops (subscribe, QoS 1 publish, check_msg) call self.wait_msg(): this one
        # reads payloads into the buffer or a file rather than a new bytes object of the message's size.
        mqtt.wait_msg = self._wait_msg

    # ---- what the link tells us ------------------------------------------------------------------

    def _arrived(self, topic, msg):
        # Called from inside wait_msg(): only enqueue, since publishing here would re-enter umqtt.
        if len(self.inbox) >= self.inbox_max:
            if isinstance(self.inbox.pop(0)[1], memoryview):
                self._rx_busy = False
            self.overflowed += 1
            self._report("inbox full", "oldest message dropped")
        self.inbox.append((topic, msg))

    def received(self):
        self._last_rx = time.ticks_ms()
        self._ping_at = None

    def sent(self):
        self._last_tx = time.ticks_ms()

    def _report(self, reason, detail):
        if self.on_drop is not None:
            self.on_drop(reason, detail)

    # ---- connecting ------------------------------------------------------------------------------

    def connect(self, topics):
        """Connect and subscribe to topics now; raise OSError if that fails (later losses are handled here)."""
        self.topics = list(topics)
        if self._connect_once(self.wlan_ms):
            return
        error = self.last_error
        if isinstance(error, OSError):
            raise error
        # umqtt.simple fails a CONNACK cut short or refused otherwise (IndexError, AssertionError, MQTTException):
        # one kind of error for the caller, whose retry loop (a board's main) must not die of it.
        raise OSError("connect failed: %s: %s" % (type(error).__name__, error))

    def _wlan_up(self, budget_ms):
        """Bring WiFi back first, waiting for it up to wlan_ms (or the budget)."""
        if net.wlan_up(self.wlan, min(self.wlan_ms, budget_ms)):
            return True
        self.wifi_waits += 1
        return False

    def _open(self):
        try:
            self._dial()
        except Exception as e:
            raise broker_error(e, self.mqtt) from None

    def _dial(self):
        try:
            self.mqtt.connect(True, timeout=self.response_ms / 1000)
            return
        except TypeError:
            pass
        real = umqtt_simple.socket  # type: ignore[attr-defined]
        umqtt_simple.socket = _TimedSockets(real, self.response_ms / 1000)  # type: ignore[attr-defined]
        try:
            self.mqtt.connect(True)
        finally:
            umqtt_simple.socket = real  # type: ignore[attr-defined]

    def _connect_once(self, budget_ms):
        self._close_socket()
        try:
            if not self._wlan_up(budget_ms):
                raise OSError("WiFi did not come up: waited up to %d ms" % min(self.wlan_ms, budget_ms))
            self._open()
            self._raw = self.mqtt.sock
            self.mqtt.sock = _Link(self._raw, self)
            for topic in self.topics:
                self._subscribe(topic)
            self._poller.register(self._raw, select.POLLIN)
        except Exception as e:  # any failure of an attempt is the same to us: try again later
            self._failed(e)
            return False
        now = time.ticks_ms()
        self.connected = True
        self.connects += 1
        self._up_since = self._last_rx = self._last_tx = now
        self._ping_at = None
        self.last_error = None
        if self.on_connect is not None:
            self.on_connect()
        return self.connected

    def _failed(self, error):
        was_connected = self.connected
        self.connected = False
        self.last_error = error
        self._close_socket()
        if was_connected:
            self.link_losses += 1
        self._report("link lost" if was_connected else "connect failed", error)
        delay = backoff_ms(self._attempt, self.backoff_floor_ms, self.backoff_ceiling_ms, self.backoff_factor)
        self._attempt += 1
        self._next_attempt = time.ticks_add(time.ticks_ms(), delay)

    def _close_socket(self):
        raw = self._raw
        if raw is None:
            return
        self._raw = None
        try:
            self._poller.unregister(raw)
        except (OSError, KeyError, ValueError):
            pass
        try:
            raw.close()
        except OSError:
            pass

    def link_lost(self, error):
        """Mark the link dead (the next wait() reconnects when the backoff allows)."""
        if self.connected:
            self._failed(error)

    # ---- using the link --------------------------------------------------------------------------

    def publish(self, topic, payload):
        """Publish now; False if the link is down or failed while publishing."""
        if not self.connected:
            return False
        try:
            self._publish(topic, payload)
            return True
        except Exception as e:  # a broken link shows up as OSError, IndexError or AssertionError
            self._failed(e)
            return False

    def _publish(self, topic, payload):
        # Ours, not umqtt.simple's: one write per packet. umqtt writes a PUBLISH in four pieces, and with
        # Nagle on (it is, on a board) each piece after the first waits for the broker's delayed ACK, ~40 ms;
        # over TLS each piece is also a record of its own.
        if isinstance(payload, str):
            payload = payload.encode()
        name = topic.encode() if isinstance(topic, str) else topic
        qos = self.qos
        size = 2 + len(name) + len(payload) + (2 if qos else 0)
        packet = bytearray(b"\x30" if not qos else b"\x32")
        _put_length(packet, size)
        packet += bytes((len(name) >> 8, len(name) & 0xFF))
        packet += name
        pid = 0
        if qos:
            mqtt = self.mqtt
            mqtt.pid = pid = mqtt.pid % 0xFFFF + 1
            packet += bytes((pid >> 8, pid & 0xFF))
        packet += payload
        sock = self.mqtt.sock
        sock.write(packet)
        del packet
        while qos:
            if self._wait_msg() == 0x40:
                ack = sock.read(3)
                if ack[1] == pid >> 8 and ack[2] == pid & 0xFF:
                    return

    def wait(self, timeout_ms):
        """Wait up to timeout_ms for a packet and take it in; reconnects and pings as due. True if anything came."""
        if not self.connected:
            return self._wait_down(timeout_ms)
        before = len(self.inbox)
        try:
            if self._keepalive():
                return False
            # A TLS socket can hold a decrypted packet that poll() cannot see, so look before waiting.
            self.mqtt.check_msg()
            if len(self.inbox) > before:
                return True
            if self._poller.poll(max(0, min(timeout_ms, self._until_timer()))):
                self.mqtt.check_msg()
                return True
        except Exception as e:  # see publish()
            self._failed(e)
        return len(self.inbox) > before

    def _wait_down(self, timeout_ms):
        due = time.ticks_diff(self._next_attempt, time.ticks_ms())
        if due > 0:
            time.sleep_ms(min(due, timeout_ms))
            if due > timeout_ms:
                return False
        # A call waiting on the link does not wait for WiFi beyond its own time.
        return self._connect_once(max(0, timeout_ms - max(due, 0)))

    def _until_timer(self):
        now = time.ticks_ms()
        if self._ping_at is not None:
            return time.ticks_diff(time.ticks_add(self._ping_at, self.response_ms), now)
        return self.ping_ms - max(time.ticks_diff(now, self._last_rx), time.ticks_diff(now, self._last_tx))

    def _keepalive(self):
        """Ping when the link has been quiet, and give up on it when a ping goes unanswered. True if it died."""
        now = time.ticks_ms()
        if self._attempt and time.ticks_diff(now, self._up_since) >= self.stable_ms:
            self._attempt = 0
        if self._ping_at is not None:
            if time.ticks_diff(now, self._ping_at) >= self.response_ms:
                self._failed(LinkDown("no answer from the broker within %d ms" % self.response_ms))
                return True
            return False
        if (
            time.ticks_diff(now, self._last_rx) >= self.ping_ms
            or time.ticks_diff(now, self._last_tx) >= self.ping_ms
        ):
            self.mqtt.ping()
            self._ping_at = now
        return False

    def take(self):
        """The oldest arrived (topic, message), or None.

        The message is bytes, a memoryview of the receive buffer (valid until release()), or a Stored file.
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
            self._rx_lent = False
            self._rx_busy = False

    # ---- receiving ---------------------------------------------------------------------------------

    def _wait_msg(self):
        """umqtt.simple's wait_msg(): one packet; None for PUBLISH and PINGRESP, else the packet type for its caller."""
        sock = self.mqtt.sock
        first = sock.read(1)
        sock.setblocking(True)
        if first is None:
            return None
        if first == b"":
            raise LinkDown("connection closed by the broker")
        op = first[0]
        if op == 0xD0:  # PINGRESP
            sock.read(1)
            return None
        if op & 0xF0 != 0x30:
            return op
        size = self._length(sock)
        head = sock.read(2)
        topic_len = head[0] << 8 | head[1]
        size -= topic_len + 2
        if topic_len > 256:
            # No Jobs topic is that long: not ours, and not worth the heap.
            self._discard(sock, topic_len + size)
            self._report("unknown topic", "%d-byte topic" % topic_len)
            return None
        topic = sock.read(topic_len)
        pid = 0
        if op & 6:
            head = sock.read(2)
            pid = head[0] << 8 | head[1]
            size -= 2
        msg = self._payload(sock, size, topic)
        if msg is not None:
            self._arrived(topic, msg)
        if op & 6 == 2:
            sock.write(bytes((0x40, 2, pid >> 8, pid & 0xFF)))
        elif op & 6 == 4:
            raise LinkDown("QoS 2 message: this client subscribes with QoS 1 at most")
        return None

    def _subscribe(self, topic):
        # Ours, not umqtt.simple's: 1.3.4 writes SUBSCRIBE's length in one byte, which a topic of a
        # thing name longer than ~90 characters (128 are allowed) overflows.
        mqtt = self.mqtt
        mqtt.pid = pid = mqtt.pid % 0xFFFF + 1
        name = topic.encode()
        size = 2 + 2 + len(name) + 1
        packet = bytearray(b"\x82")
        _put_length(packet, size)
        packet += bytes((pid >> 8, pid & 0xFF, len(name) >> 8, len(name) & 0xFF))
        packet += name
        packet.append(self.qos)
        sock = mqtt.sock
        sock.write(packet)
        while True:
            if self._wait_msg() == 0x90:
                ack = sock.read(4)
                if ack[1] != pid >> 8 or ack[2] != pid & 0xFF:
                    raise LinkDown("SUBACK for another packet")
                if ack[3] == 0x80:
                    raise OSError("the broker refused the subscription to " + topic)
                return

    def _length(self, sock):
        n = shift = 0
        while True:
            b = sock.read(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7

    def _payload(self, sock, size, topic):
        if size > self.max_message:
            self._discard(sock, size)
            self._report("message too large", "%d bytes on %s" % (size, topic))
            return None
        if size <= len(self._rx) and not self._rx_busy:
            view = memoryview(self._rx)[:size]
            sock.readinto(view)
            self._rx_busy = True
            return view
        if self.spill is not None and size > len(self._rx):
            return self._store(sock, size)
        try:
            return sock.read(size)
        except MemoryError:
            self._discard(sock, size)
            self._report("message too large", "%d bytes on %s: no memory" % (size, topic))
            return None

    def _chunk(self):
        # The receive buffer when it is free, else a small one: either way a bounded amount of RAM.
        return memoryview(self._rx) if not self._rx_busy else memoryview(bytearray(256))

    def _store(self, sock, size):
        self._spill_turn ^= 1
        path = "%s%d.bin" % (self.spill, self._spill_turn)
        chunk = self._chunk()
        left = size
        with open(path, "wb") as f:
            while left:
                piece = chunk[: min(left, len(chunk))]
                sock.readinto(piece)
                f.write(piece)
                left -= len(piece)
        return Stored(path, size)

    def _discard(self, sock, size):
        # Read off the socket and dropped, so that the next packet still parses.
        chunk = self._chunk()
        while size > 0:
            piece = chunk[: min(size, len(chunk))]
            sock.readinto(piece)
            size -= len(piece)
        self.oversized += 1

    def disconnect(self):
        if self.connected:
            try:
                self.mqtt.disconnect()
            except Exception:  # the link is already gone; the socket is released below either way
                pass
        self.connected = False
        self._close_socket()
        self.inbox = []
