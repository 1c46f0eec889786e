"""Loopback relays for fair measurements: one that ACKs at once (no 40 ms delayed ACKs), one that adds TLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import threading

# Linux only; the kernel falls back to delayed ACKs after a while, so it is set again around every read.
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)


class QuickAckRelay:
    """Forwards every connection to host:port unchanged; its sockets ACK immediately and never delay a write.

    A client that leaves Nagle on (umqtt.simple, paho in SDK v1, awscrt in SDK v2: none can be told otherwise
    from Python in all cases) holds each small write until the previous one is ACKed, and the peer's delayed ACK
    then adds ~40 ms to every round trip on loopback. Through this relay all clients pay one same extra hop instead.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.host, self.port = self.listener.getsockname()
        self.sockets: list[socket.socket] = []
        self.closed = False

    def __enter__(self) -> QuickAckRelay:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True
        self.listener.close()
        for sock in self.sockets:
            sock.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sockets.append(sock)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                source.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
                data = source.recv(65536)
                if not data:
                    break
                source.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class RelayProcess:
    """The relay in a process of its own, so that its threads never hold the GIL of a client measured here."""

    def __init__(self, host: str, port: int, tls: bool = False) -> None:
        self.target = "%s:%d" % (host, port)
        self.tls = tls
        self.process: subprocess.Popen[str] | None = None
        self.host = "127.0.0.1"
        self.port = 0

    def __enter__(self) -> RelayProcess:
        command = [sys.executable, "-m", "bench.relay", self.target] + (["tls"] if self.tls else [])
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline().split()[-1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


async def tls_relay(host: str, port: int) -> None:
    """Plain TCP in, TLS (server not verified) out: devices reach a TLS-only broker over the same plain-TCP path."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port, ssl=context)
        except OSError:
            writer.close()
            return
        for w in (writer, up_writer):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=4096)
    print("relay listening on", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    host, _, port = sys.argv[1].rpartition(":")
    if sys.argv[2:] == ["tls"]:
        asyncio.run(tls_relay(host, int(port)))
        return
    with QuickAckRelay(host, int(port)) as relay:
        print("relay listening on", relay.port, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
