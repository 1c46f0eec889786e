"""Command line of the local Jobs service (placeholder until the service lands)."""


def main() -> None:
    raise SystemExit("iotjobs-local: not built yet")
