"""Command line of the local Jobs service: `iotjobs-local serve`, `iotjobs-local certs`."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType

from . import certs, terminal
from .broker import Mosquitto
from .clock import Clock
from .console import Console
from .service import JobsService

# The same endpoints at every start, so devices and shells configured once keep working across restarts.
DEFAULT_MQTT = ("127.0.0.1", 1883)
DEFAULT_HTTP = ("127.0.0.1", 8089)


class ServeError(Exception):
    """A problem the user fixes with an option; the message names it."""


def default_db() -> Path:
    # Outside any checkout, so one state survives across projects' clean builds (XDG's place for state).
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "iotjobs-local" / "jobs.db"


class OffsetClock(Clock):
    """The wall clock moved by a fixed offset: try timers and rollouts hours ahead without waiting."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return super().now() + self.offset


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT; port 0 means any free port."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def check_free(address: tuple[str, int], option: str) -> None:
    """Fail with a line naming the address and the option that moves it when something already listens there."""
    host, port = address
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers bind: a port in TIME_WAIT after our own last run is free for them.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ServeError("%s:%d is already in use (another iotjobs-local?): choose another with %s HOST:PORT"
                                 % (host, port, option)) from None
            raise ServeError("cannot listen on %s:%d (%s): choose another with %s HOST:PORT"
                             % (host, port, e.strerror or e, option)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iotjobs-local", description="A local AWS IoT Jobs service.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="answer the Jobs device API over MQTT until stopped")
    serve.add_argument(
        "--mqtt",
        type=parse_address,
        default=DEFAULT_MQTT,
        metavar="HOST:PORT",
        help="where the mosquitto it starts listens for devices (default %s:%d; port 0: any free one)" % DEFAULT_MQTT,
    )
    serve.add_argument(
        "--broker",
        type=parse_address,
        metavar="HOST:PORT",
        help="use this MQTT broker, already running, instead of starting one",
    )
    serve.add_argument(
        "--http",
        type=parse_address,
        default=DEFAULT_HTTP,
        metavar="HOST:PORT",
        help="serve the management and iot-jobs-data REST APIs here (default %s:%d; port 0: any free one)"
        % DEFAULT_HTTP,
    )
    serve.add_argument(
        "--db",
        default=str(default_db()),
        metavar="PATH",
        help=f"SQLite file that keeps all state across restarts (default {default_db()}; ':memory:' keeps none)",
    )
    serve.add_argument(
        "--files",
        metavar="DIR",
        help="folder standing in for S3: s3://BUCKET/KEY is DIR/BUCKET/KEY (documentSource, presigned URLs)",
    )
    serve.add_argument(
        "--time-offset",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="run the service's clock this far ahead of the wall clock (to try timers and rollouts)",
    )
    serve.add_argument(
        "--quiet", action="store_true", help="print no line per device request and state change"
    )
    serve.add_argument(
        "--log-level",
        default="WARNING",
        help="the service's own diagnostics on stderr: WARNING (default) shows failures, DEBUG adds each HTTP request",
    )
    add_tls_arguments(serve)
    certs.add_commands(commands)
    terminal.add_commands(commands)
    return parser


def start_broker(address: tuple[str, int]) -> Mosquitto:
    check_free(address, "--mqtt")
    return Mosquitto(port=address[1], host=address[0]).start()


def start_service(host: str, port: int, args: argparse.Namespace, clock: Clock) -> JobsService:
    """The service on the broker at host:port, started; a ServeError naming what is wrong when it cannot start."""
    check_free(args.http, "--http")
    activity = None if args.quiet else print_line
    try:
        service = JobsService(host, port, clock=clock, http=args.http, db=args.db, files=args.files,
                              activity=activity)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ServeError("%s:%d is already in use: choose another with --http HOST:PORT" % args.http) from None
        raise
    try:
        return service.start()
    except (OSError, RuntimeError) as e:
        service.stop()
        if args.broker is None:
            raise
        raise ServeError("no MQTT broker answers at %s:%d (%s): --broker names a broker that is already running; "
                         "without it the service starts its own (--mqtt, default %s:%d)"
                         % (host, port, e, *DEFAULT_MQTT)) from None


def print_line(text: str) -> None:
    print(text, flush=True)


def add_tls_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--tls",
        metavar="DIR",
        help="serve devices as AWS does, with the certificates of DIR (`certs init DIR`): MQTT over TLS and the "
        "device API over HTTPS, each for a client certificate of DIR's CA that reaches only its own thing",
    )
    serve.add_argument(
        "--mqtts",
        type=parse_address,
        default=("127.0.0.1", 8883),
        metavar="HOST:PORT",
        help="with --tls: the broker's MQTT-over-TLS listener for devices (default 127.0.0.1:8883)",
    )
    serve.add_argument(
        "--https",
        type=parse_address,
        default=("127.0.0.1", 8443),
        metavar="HOST:PORT",
        help="with --tls: the device API over HTTPS (default 127.0.0.1:8443)",
    )


def serve(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    clock = OffsetClock(args.time_offset) if args.time_offset else Clock()
    if args.tls is not None:
        return serve_tls(args, clock, stop)
    broker: Mosquitto | None = None
    if args.broker is None:
        broker = start_broker(args.mqtt)
        host, port = broker.host, broker.port
    else:
        host, port = args.broker
    try:
        service = start_service(host, port, args, clock)
        try:
            assert service.http is not None
            print(f"ready mqtt={host}:{port} http={service.http.address}", flush=True)
            print(f"console {service.http.url}{Console.PATH}/", flush=True)
            # wait() with a timeout keeps the main thread responsive to signals on every platform.
            while not stop.wait(0.5):
                pass
        finally:
            service.stop()
    finally:
        if broker is not None:
            broker.stop()
    return 0


def serve_tls(args: argparse.Namespace, clock: Clock, stop: threading.Event) -> int:
    """`serve --tls DIR`: the service's own mosquitto for devices over TLS, and the device API over HTTPS."""
    if args.broker is not None:
        raise RuntimeError("--tls starts its own broker (devices need its TLS listener): leave out --broker")
    for address, option in ((args.mqtts, "--mqtts"), (args.https, "--https"), (args.http, "--http")):
        check_free(address, option)
    host, port = args.mqtts
    with JobsService(host, port, clock=clock, http=args.http, db=args.db, files=args.files,
                     tls=args.tls, https=args.https, activity=None if args.quiet else print_line) as service:
        assert service.http is not None and service.https is not None
        mqtts = "%s:%d" % service.mqtts
        print(f"ready mqtts={mqtts} https={service.https.address} http={service.http.address}", flush=True)
        print(f"console {service.http.url}{Console.PATH}/", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "certs":
        return certs.run(args)
    if args.command in ("jobs", "watch"):
        return terminal.run(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return serve(args)
    except (OSError, RuntimeError, ServeError) as exc:
        print(f"iotjobs-local: {exc}", file=sys.stderr)
        return 1
