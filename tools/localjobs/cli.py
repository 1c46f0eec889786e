"""Command line of the local Jobs service: `iotjobs-local serve`, `iotjobs-local certs`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from . import certs, terminal
from .broker import Mosquitto
from .clock import Clock
from .console import Console
from .service import JobsService


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iotjobs-local", description="A local AWS IoT Jobs service.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="answer the Jobs device API over MQTT until stopped")
    serve.add_argument(
        "--broker",
        type=parse_address,
        metavar="HOST:PORT",
        help="MQTT broker to serve on; without it, start a private mosquitto on a free loopback port",
    )
    serve.add_argument(
        "--http",
        type=parse_address,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="serve the management and iot-jobs-data REST APIs here (default: a free loopback port)",
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
    serve.add_argument("--log-level", default="WARNING", help="Python logging level (default WARNING)")
    add_tls_arguments(serve)
    certs.add_commands(commands)
    terminal.add_commands(commands)
    return parser


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
        broker = Mosquitto().start()
        host, port = broker.host, broker.port
    else:
        host, port = args.broker
    try:
        with JobsService(host, port, clock=clock, http=args.http, db=args.db, files=args.files) as service:
            assert service.http is not None
            print(f"ready mqtt={host}:{port} http={service.http.address}", flush=True)
            print(f"console {service.http.url}{Console.PATH}/", flush=True)
            # wait() with a timeout keeps the main thread responsive to signals on every platform.
            while not stop.wait(0.5):
                pass
    finally:
        if broker is not None:
            broker.stop()
    return 0


def serve_tls(args: argparse.Namespace, clock: Clock, stop: threading.Event) -> int:
    """`serve --tls DIR`: the service's own mosquitto for devices over TLS, and the device API over HTTPS."""
    if args.broker is not None:
        raise RuntimeError("--tls starts its own broker (devices need its TLS listener): leave out --broker")
    host, port = args.mqtts
    with JobsService(host, port, clock=clock, http=args.http, db=args.db, files=args.files,
                     tls=args.tls, https=args.https) as service:
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
    except (OSError, RuntimeError) as exc:
        print(f"iotjobs-local: {exc}", file=sys.stderr)
        return 1
