"""Unit cases of the session's receive path over a real loopback socket, run on MicroPython and CPython."""

import random

import usocket as socket

from harness import main
from iotjobs.document import Stored
from iotjobs.session import Session, _Link

TOPIC = b"$aws/things/t/jobs/notify"


class FakeClient:
    """What the session needs of an MQTT client when the test writes the broker's bytes itself."""

    keepalive = 60
    pid = 0

    def set_callback(self, callback):
        self.cb = callback


def publish_packet(topic, payload, qos=0):
    body = bytes((len(topic) >> 8, len(topic) & 0xFF)) + topic + (b"\x00\x07" if qos else b"") + payload
    size = len(body)
    head = bytearray((0x30 | qos << 1,))
    while True:
        head.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
        size >>= 7
        if not size:
            break
    return bytes(head) + body


def linked(**options):
    """A session whose socket is one end of a loopback TCP connection; the other end plays the broker."""
    server = socket.socket()
    for _ in range(20):
        port = random.randrange(20000, 60000)
        try:
            server.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            break
        except OSError:
            continue
    server.listen(1)
    device = socket.socket()
    device.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    broker = server.accept()[0]
    server.close()
    session = Session(FakeClient(), response_ms=2000, **options)
    session.mqtt.sock = _Link(device, session)
    session.connected = True
    return session, broker


def arrive(session, broker, payload, topic=TOPIC, qos=0):
    broker.write(publish_packet(topic, payload, qos))
    session.mqtt.sock.setblocking(True)
    assert session._wait_msg() is None


def case_receive_buffer_is_reused_only_when_its_message_is_done():
    session, broker = linked()
    try:
        a, b, c, d = (bytes([x]) * 300 for x in b"ABCD")
        arrive(session, broker, a)
        arrive(session, broker, b)  # the buffer holds A: B gets bytes of its own
        topic, msg = session.take()
        assert isinstance(msg, memoryview) and bytes(msg) == a
        session.release()
        arrive(session, broker, c)  # the buffer is free again: C goes there
        topic, msg = session.take()
        assert not isinstance(msg, memoryview) and bytes(msg) == b
        session.release()  # B was not in the buffer: C still is, and must stay
        arrive(session, broker, d)
        got_c = session.take()[1]
        assert bytes(got_c) == c, bytes(got_c)[:4]
        session.release()
        assert bytes(session.take()[1]) == d
    finally:
        broker.close()


def case_qos1_publish_is_acknowledged_with_its_packet_id():
    session, broker = linked()
    try:
        arrive(session, broker, b"{}", qos=1)
        assert broker.read(4) == b"\x40\x02\x00\x07"
        assert bytes(session.take()[1]) == b"{}"
    finally:
        broker.close()


def case_large_message_goes_to_a_file_and_too_large_is_dropped():
    reported = []
    session, broker = linked(rx_buffer=256, max_message=3000, spill="/tmp/iotjobs-session-case-")
    session.on_drop = lambda reason, detail: reported.append(reason)
    try:
        big = b'{"k": "' + b"v" * 1000 + b'"}'
        arrive(session, broker, big)
        stored = session.take()[1]
        assert isinstance(stored, Stored) and stored.size == len(big)
        with open(stored.path, "rb") as f:
            assert f.read() == big
        arrive(session, broker, b"x" * 5000)
        assert session.take() is None and reported == ["message too large"] and session.oversized == 1
        arrive(session, broker, b"after")  # the stream is still in step
        assert bytes(session.take()[1]) == b"after"
    finally:
        broker.close()


if __name__ == "__main__":
    main(globals())
