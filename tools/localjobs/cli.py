"""Command line of the local Jobs service: `iotjobs-local serve`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from .broker import Mosquitto
from .service import JobsService


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
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
    serve.add_argument("--log-level", default="WARNING", help="Python logging level (default WARNING)")
    return parser


def serve(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    broker: Mosquitto | None = None
    if args.broker is None:
        broker = Mosquitto().start()
        host, port = broker.host, broker.port
    else:
        host, port = args.broker
    try:
        with JobsService(host, port):
            print(f"ready mqtt={host}:{port}", flush=True)
            # wait() with a timeout keeps the main thread responsive to signals on every platform.
            while not stop.wait(0.5):
                pass
    finally:
        if broker is not None:
            broker.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return serve(args)
    except (OSError, RuntimeError) as exc:
        print(f"iotjobs-local: {exc}", file=sys.stderr)
        return 1
