"""FaultProxy: every fault against a raw upstream socket held by the test, and through mosquitto with paho."""

from __future__ import annotations

import queue
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from faultproxy import FaultProxy
from localjobs.broker import Mosquitto, free_port
from localjobs.mqtt_api import no_delay

WAIT = 5.0
Pair = tuple[socket.socket, socket.socket]


# ---- helpers -------------------------------------------------------------------------------------


def connect(proxy: FaultProxy, upstream: socket.socket) -> Pair:
    """A client through the proxy and the upstream end of the same connection."""
    client = socket.create_connection((proxy.host, proxy.port), timeout=WAIT)
    server, _ = upstream.accept()
    server.settimeout(WAIT)
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, server


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"EOF after {len(data)} of {n} bytes"
        data += chunk
    return data


def recv_to_end(sock: socket.socket) -> tuple[bytes, OSError | None]:
    """Everything until EOF (error None) or until the connection fails (the error)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError as exc:
            return data, exc
        if not chunk:
            return data, None
        data += chunk


def nothing_to_read(*socks: socket.socket) -> bool:
    # No wait needed: callers first prove (held_up/held_down) that the proxy has read and kept the data.
    readable, _, _ = select.select(list(socks), [], [], 0)
    return not readable


@pytest.fixture
def upstream() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(WAIT)
        yield server


@pytest.fixture
def proxy(upstream: socket.socket) -> Iterator[FaultProxy]:
    host, port = upstream.getsockname()[:2]
    with FaultProxy(host, port) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def pair(proxy: FaultProxy, upstream: socket.socket) -> Iterator[Pair]:
    client, server = connect(proxy, upstream)
    with client, server:
        yield client, server


# ---- pass-through and lifecycle ------------------------------------------------------------------


def test_pass_through_both_directions_at_once(proxy: FaultProxy, pair: Pair) -> None:
    client, server = pair
    up = bytes(range(256)) * 1024
    down = bytes(reversed(range(256))) * 1024
    senders = [
        threading.Thread(target=client.sendall, args=(up,)),
        threading.Thread(target=server.sendall, args=(down,)),
    ]
    for sender in senders:
        sender.start()
    assert recv_exactly(server, len(up)) == up
    assert recv_exactly(client, len(down)) == down
    for sender in senders:
        sender.join(WAIT)
    assert (proxy.bytes_up, proxy.bytes_down) == (len(up), len(down))
    assert (proxy.held_up, proxy.held_down) == (0, 0)
    assert (proxy.connections, proxy.accepted) == (1, 1)
    assert proxy.events == ["accept"]


def test_peer_eof_passes_through_and_ends_the_connection(proxy: FaultProxy, pair: Pair) -> None:
    client, server = pair
    client.sendall(b"last words")
    client.shutdown(socket.SHUT_WR)
    assert recv_to_end(server) == (b"last words", None)
    server.sendall(b"reply after half-close")
    server.shutdown(socket.SHUT_WR)
    assert recv_to_end(client) == (b"reply after half-close", None)
    assert proxy.wait_for(lambda: proxy.connections == 0)
    assert proxy.events == ["accept", "client-eof", "upstream-eof"]


def test_stop_joins_every_thread_and_start_reuses_the_port(upstream: socket.socket) -> None:
    proxy = FaultProxy(*upstream.getsockname()[:2]).start()
    port = proxy.port
    client, server = connect(proxy, upstream)
    with client, server:
        proxy.stop()
        assert recv_to_end(client) == (b"", None)
        assert recv_to_end(server) == (b"", None)
    assert proxy.events == ["accept", "stop"]
    assert [t.name for t in threading.enumerate() if t.name.startswith(f"faultproxy-{port}-")] == []
    proxy.start()
    try:
        assert proxy.port == port
        client, server = connect(proxy, upstream)
        with client, server:
            client.sendall(b"again")
            assert recv_exactly(server, 5) == b"again"
            assert proxy.events == ["accept", "stop", "accept"]
    finally:
        proxy.stop()


def test_wait_connections_counts_accepts(proxy: FaultProxy, upstream: socket.socket) -> None:
    assert not proxy.wait_connections(1, timeout=0.01)
    first, first_up = connect(proxy, upstream)
    second, second_up = connect(proxy, upstream)
    with first, first_up, second, second_up:
        assert proxy.wait_connections(2, timeout=0)
        assert proxy.connections == 2


def test_upstream_down_resets_the_client() -> None:
    with FaultProxy("127.0.0.1", free_port()) as proxy:
        with pytest.raises(ConnectionResetError):
            with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as client:
                client.recv(1)
        assert proxy.events == ["accept", "upstream-down"]
        assert proxy.connections == 0


# ---- close, reset, refuse ------------------------------------------------------------------------


def test_close_gives_eof_on_both_sides(proxy: FaultProxy, pair: Pair) -> None:
    client, server = pair
    client.sendall(b"ping")
    assert recv_exactly(server, 4) == b"ping"
    proxy.close()
    assert proxy.connections == 0
    assert recv_to_end(client) == (b"", None)
    assert recv_to_end(server) == (b"", None)
    assert proxy.events == ["accept", "close"]


def test_reset_gives_econnreset_on_the_client_and_closes_upstream(proxy: FaultProxy, pair: Pair) -> None:
    client, server = pair
    server.sendall(b"before")
    assert recv_exactly(client, 6) == b"before"
    proxy.reset()
    assert proxy.connections == 0
    data, error = recv_to_end(client)
    assert data == b"" and isinstance(error, ConnectionResetError)
    assert recv_to_end(server) == (b"", None)
    assert proxy.events == ["accept", "reset"]


def test_refuse_resets_new_connections_only(proxy: FaultProxy, upstream: socket.socket, pair: Pair) -> None:
    client, server = pair
    proxy.refuse(True)
    # The RST can beat connect()'s return, or come with the first read.
    with pytest.raises(ConnectionResetError):
        with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as refused:
            refused.recv(1)
    client.sendall(b"still up")
    assert recv_exactly(server, 8) == b"still up"
    proxy.refuse(False)
    # Had the refused connection reached upstream, this accept would return it and the bytes would not match.
    fresh, fresh_up = connect(proxy, upstream)
    with fresh, fresh_up:
        fresh.sendall(b"fresh")
        assert recv_exactly(fresh_up, 5) == b"fresh"
        assert proxy.accepted == 3
        assert proxy.events == ["accept", "refuse on", "accept", "refused", "refuse off", "accept"]


def test_reset_many_concurrent_connections(proxy: FaultProxy, upstream: socket.socket) -> None:
    pairs = [connect(proxy, upstream) for _ in range(12)]
    try:

        def exchange(index: int, client: socket.socket, server: socket.socket) -> None:
            message = b"%03d" % index * 1000
            client.sendall(message)
            server.sendall(recv_exactly(server, len(message)))
            assert recv_exactly(client, len(message)) == message

        workers = [threading.Thread(target=exchange, args=(i, *p)) for i, p in enumerate(pairs)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(WAIT)
        assert proxy.bytes_up == proxy.bytes_down == 12 * 3000
        proxy.reset()
        assert proxy.connections == 0
        for client, server in pairs:
            assert isinstance(recv_to_end(client)[1], ConnectionResetError)
            assert recv_to_end(server) == (b"", None)
    finally:
        for client, server in pairs:
            client.close()
            server.close()


# ---- stall, delay --------------------------------------------------------------------------------


def test_stall_holds_everything_and_resume_delivers_in_order(
    proxy: FaultProxy, upstream: socket.socket, pair: Pair
) -> None:
    client, server = pair
    proxy.stall()
    client.sendall(b"one,")
    client.sendall(b"two,")
    client.shutdown(socket.SHUT_WR)
    server.sendall(b"down")
    late, late_up = connect(proxy, upstream)  # accepted during the stall: frozen too
    with late, late_up:
        late.sendall(b"late")
        assert proxy.wait_for(lambda: (proxy.held_up, proxy.held_down) == (12, 4))
        assert nothing_to_read(client, server, late_up)
        assert (proxy.bytes_up, proxy.bytes_down) == (0, 0)
        assert proxy.connections == 2
        proxy.resume()
        assert recv_to_end(server) == (b"one,two,", None)  # the EOF was held behind the data
        assert recv_exactly(client, 4) == b"down"
        assert recv_exactly(late_up, 4) == b"late"
    assert proxy.events[:4] == ["accept", "stall", "accept", "resume"]


def test_close_works_during_a_stall(proxy: FaultProxy, pair: Pair) -> None:
    client, server = pair
    proxy.stall()
    client.sendall(b"dropped")
    assert proxy.wait_for(lambda: proxy.held_up == 7)
    proxy.close()
    assert recv_to_end(client) == (b"", None)
    assert recv_to_end(server) == (b"", None)
    assert proxy.wait_for(lambda: proxy.held_up == 0)


def test_delay_adds_latency_and_keeps_order(proxy: FaultProxy, pair: Pair) -> None:
    client, server = pair
    proxy.delay(0.2)
    start = time.monotonic()
    client.sendall(b"slow,")
    assert proxy.wait_for(lambda: proxy.held_up == 5)  # read under the 0.2 s delay
    proxy.delay(0)
    client.sendall(b"fast")
    assert proxy.wait_for(lambda: proxy.held_up == 9)
    assert recv_exactly(server, 9) == b"slow,fast"  # "fast" is due first but must not overtake
    assert time.monotonic() - start >= 0.2
    assert proxy.events == ["accept", "delay 0.2", "delay 0"]


# ---- cut_after -----------------------------------------------------------------------------------


def test_cut_after_down_delivers_exactly_n_bytes_then_resets(proxy: FaultProxy, pair: Pair) -> None:
    client, server = pair
    server.sendall(b"hello")
    assert recv_exactly(client, 5) == b"hello"
    proxy.cut_after(10, "down")
    server.sendall(b"0123456789abcdef")
    data, error = recv_to_end(client)
    assert data == b"0123456789" and isinstance(error, ConnectionResetError)
    assert recv_to_end(server) == (b"", None)
    assert proxy.bytes_down == 15
    assert proxy.events == ["accept", "cut 10"]


def test_cut_after_up_counts_across_chunks(proxy: FaultProxy, pair: Pair) -> None:
    client, server = pair
    proxy.cut_after(15, "up")
    client.sendall(b"A" * 10)
    assert recv_exactly(server, 10) == b"A" * 10
    client.sendall(b"B" * 10)
    assert recv_to_end(server) == (b"B" * 5, None)
    assert isinstance(recv_to_end(client)[1], ConnectionResetError)
    assert proxy.bytes_up == 15
    assert proxy.events == ["accept", "cut 15"]


# ---- on_pattern ----------------------------------------------------------------------------------


def test_pattern_split_across_chunks_resets_before_the_chunk(proxy: FaultProxy, pair: Pair) -> None:
    client, server = pair
    proxy.on_pattern(b"start-next/accepted", "down", "reset", before=True)
    server.sendall(b"$aws/things/t/jobs/start-ne")
    # Received before the rest is sent, so the proxy saw the two halves as two chunks.
    assert recv_exactly(client, 27) == b"$aws/things/t/jobs/start-ne"
    server.sendall(b'xt/accepted{"execution":{}}')
    data, error = recv_to_end(client)
    assert data == b"" and isinstance(error, ConnectionResetError)
    assert recv_to_end(server) == (b"", None)
    assert proxy.bytes_down == 27
    assert proxy.events == ["accept", "pattern b'start-next/accepted' reset", "reset"]


def test_pattern_after_stall_forwards_the_chunk_then_freezes(proxy: FaultProxy, pair: Pair) -> None:
    client, server = pair
    proxy.on_pattern(b'"SUCCEEDED"', "up", "stall", before=False)
    update = b'{"status":"SUCCEEDED","expectedVersion":2}'
    client.sendall(update)
    assert recv_exactly(server, len(update)) == update
    server.sendall(b"accepted")
    assert proxy.wait_for(lambda: proxy.held_down == 8)
    assert nothing_to_read(client)
    proxy.resume()
    assert recv_exactly(client, 8) == b"accepted"
    assert proxy.events == ["accept", "pattern b'\"SUCCEEDED\"' stall", "stall", "resume"]


def test_pattern_before_stall_holds_the_chunk_and_fires_once_per_chunk(proxy: FaultProxy, pair: Pair) -> None:
    client, server = pair
    proxy.on_pattern(b"X", "up", "stall", before=True, once=False)
    client.sendall(b"aXb")
    assert proxy.wait_for(lambda: "stall" in proxy.events and proxy.held_up == 3)
    assert nothing_to_read(server)
    proxy.resume()  # the held chunk goes on: the rule does not fire on it again
    assert recv_exactly(server, 3) == b"aXb"
    client.sendall(b"cXd")  # a new chunk fires again (once=False)
    assert proxy.wait_for(lambda: proxy.events.count("stall") == 2 and proxy.held_up == 3)
    proxy.resume()
    assert recv_exactly(server, 3) == b"cXd"


def test_pattern_after_close_delivers_the_chunk_then_eof(proxy: FaultProxy, pair: Pair) -> None:
    client, server = pair
    proxy.on_pattern(b"bye", "down", "close", before=False)
    server.sendall(b"bye!")
    assert recv_to_end(client) == (b"bye!", None)
    assert recv_to_end(server) == (b"", None)
    assert proxy.events == ["accept", "pattern b'bye' close", "close"]


def test_pattern_callables_see_before_and_after(proxy: FaultProxy, pair: Pair) -> None:
    client, server = pair
    before: list[int] = []
    after: list[int] = []
    proxy.on_pattern(b"ping", "up", lambda p: before.append(p.bytes_up), before=True, once=False)
    proxy.on_pattern(b"ping", "up", lambda p: after.append(p.bytes_up), before=False, once=True)
    for _ in range(3):
        client.sendall(b"ping")
        assert recv_exactly(server, 4) == b"ping"
    server.sendall(b"ping")  # the other direction: no rule
    assert recv_exactly(client, 4) == b"ping"
    assert before == [0, 4, 8]
    assert after == [4]


def test_on_pattern_rejects_bad_arguments(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError):
        proxy.on_pattern(b"x", "sideways", "reset")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        proxy.on_pattern(b"x", "up", "explode")
    with pytest.raises(ValueError):
        proxy.on_pattern(b"", "up", "reset")
    with pytest.raises(ValueError):
        proxy.cut_after(-1)


# ---- through mosquitto ---------------------------------------------------------------------------


class PahoDevice:
    """A paho client with its callbacks turned into events and a message queue."""

    def __init__(self, host: str, port: int) -> None:
        self.connects: queue.Queue[Any] = queue.Queue()
        self.disconnected = threading.Event()
        self.subscribed = threading.Event()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        # paho accepts float delays though its hints say int; a short one keeps the reconnect quick.
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, reason, p: self.disconnected.set()
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        no_delay(client)
        self.connects.put(reason)

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(WAIT)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_round_trip_then_reset_disconnects_and_the_client_reconnects(mosquitto: Mosquitto) -> None:
    with FaultProxy(mosquitto.host, mosquitto.port) as proxy:
        device = PahoDevice(proxy.host, proxy.port)
        try:
            assert not device.connects.get(timeout=WAIT).is_failure
            device.subscribe("faultproxy/round-trip")
            device.client.publish("faultproxy/round-trip", b"there and back", qos=1).wait_for_publish(WAIT)
            assert device.messages.get(timeout=WAIT) == ("faultproxy/round-trip", b"there and back")
            assert proxy.bytes_up > 0 and proxy.bytes_down > 0
            proxy.reset()
            assert device.disconnected.wait(WAIT)
            assert proxy.wait_connections(2)
            assert not device.connects.get(timeout=WAIT).is_failure
        finally:
            device.stop()
        assert proxy.events[:3] == ["accept", "reset", "accept"]


def test_mqtt_pattern_reset_drops_the_message_before_the_device(mosquitto: Mosquitto) -> None:
    topic = "faultproxy/start-next/accepted"
    with FaultProxy(mosquitto.host, mosquitto.port) as proxy:
        device = PahoDevice(proxy.host, proxy.port)
        service = PahoDevice(mosquitto.host, mosquitto.port)  # straight to the broker
        try:
            assert not device.connects.get(timeout=WAIT).is_failure
            device.subscribe(topic)
            proxy.on_pattern(topic.encode(), "down", "reset", before=True)
            service.client.publish(topic, b'{"execution":{}}', qos=1).wait_for_publish(WAIT)
            assert device.disconnected.wait(WAIT)
            assert device.messages.empty()
        finally:
            device.stop()
            service.stop()
        assert proxy.events[:3] == ["accept", f"pattern {topic.encode()!r} reset", "reset"]
