"""Unit cases of the session's receive path over a real loopback socket, run on MicroPython and CPython."""

import random
import select

import usocket as socket

from harness import main
from iotjobs.session import Session

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
    # As after a connect: the session's own socket, non-blocking, polled.
    session._sock = device
    device.setblocking(False)
    session._poller.register(device, select.POLLIN)
    session.connected = True
    return session, broker


def arrive(session, broker, payload, topic=TOPIC, qos=0):
    broker.write(publish_packet(topic, payload, qos))
    assert session._packet(True) == (0x30 | qos << 1, None)


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


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        more = sock.read(n - len(data))
        assert more, "the session's connection closed"
        data += more
    return data


def case_publish_writes_the_exact_packet_at_either_qos():
    # 200 bytes of payload: the remaining length takes two bytes, and packet ids follow each other from 1.
    payload = "p" * 200
    for qos in (0, 1):
        session, broker = linked(qos=qos)
        try:
            assert session.publish("$aws/things/t/jobs/get", payload)
            assert session.publish(b"$aws/things/t/jobs/get", payload.encode())
            for pid in (1, 2):
                packet = publish_packet(b"$aws/things/t/jobs/get", payload.encode(), qos)
                if qos:  # publish_packet gives the broker's id (7); ours counts from 1
                    packet = packet[:-len(payload) - 2] + bytes((0, pid)) + packet[-len(payload):]
                assert read_exactly(broker, len(packet)) == packet
        finally:
            broker.close()


def case_large_message_goes_to_a_file_and_too_large_is_dropped():
    reported = []
    session, broker = linked(rx_buffer=256, max_message=3000, spill="/tmp/iotjobs-session-case-")
    session.on_drop = lambda reason, detail: reported.append(reason)
    try:
        big = b'{"k": "' + b"v" * 1000 + b'"}'
        arrive(session, broker, big)
        path, size = session.take()[1]
        assert size == len(big)
        with open(path, "rb") as f:
            assert f.read() == big
        arrive(session, broker, b"x" * 5000)
        assert session.take() is None and reported == ["message too large"] and session.oversized == 1
        arrive(session, broker, b"after")  # the stream is still in step
        assert bytes(session.take()[1]) == b"after"
    finally:
        broker.close()


def case_a_burst_waits_in_the_socket_until_the_client_has_taken_each_message():
    session, broker = linked()
    try:
        messages = [bytes([x]) * 1000 for x in b"ABCDEFGH"]
        for payload in messages:
            broker.write(publish_packet(TOPIC, payload))
        got = []  # type: list[bytes]
        while len(got) < len(messages):
            assert session.wait(2000)
            assert session.wait(0) and len(session.inbox) == 1  # nothing more is read while one waits
            topic, msg = session.take()
            assert isinstance(msg, memoryview)  # each in the receive buffer: none on the heap
            got.append(bytes(msg))
            session.release()
        assert got == messages
    finally:
        broker.close()


def case_publish_does_not_wait_for_its_puback_and_owes_it_within_response_ms():
    session, broker = linked()
    try:
        broker.write(publish_packet(TOPIC, b"first"))
        assert session.publish("t/x", b"{}")  # returns with the broker's message still unread
        assert session._owed_at is not None and not session.inbox
        assert broker.read(11) == b"\x32\x09\x00\x03t/x\x00\x01{}"
        broker.write(b"\x40\x02\x00\x01")  # PUBACK
        assert session.wait(2000) and bytes(session.take()[1]) == b"first"
        session.release()
        assert not session.wait(200) and session._owed_at is None and session.connected
        assert session.publish("t/x", b"{}")
        session.wait(2500)  # waits at most until the PUBACK is overdue
        assert not session.wait(0) and not session.connected  # no PUBACK within response_ms: the link is dead
    finally:
        broker.close()


if __name__ == "__main__":
    main(globals())
