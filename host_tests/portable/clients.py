"""The Jobs client a device script asks for on its command line: over HTTPS (an https:// host) or MQTT."""

_made: list = []


def take_options(args):
    """The leading key=value items of args, removed from it, as a dict (digits become ints)."""
    options = {}
    while args and "=" in args[0]:
        key, _, value = args.pop(0).partition("=")
        options[key] = int(value) if value.isdigit() else value
    return options


def client_for(host, port, thing, options):
    """A client for thing, over HTTPS or MQTT as host says (see harness.run_scenario); another() makes more."""
    timeout_ms = options.pop("timeout_ms", 5000)
    if host.startswith("https://"):
        from iotjobs.https import JobsHttpsClient

        files = (options.pop("cert"), options.pop("key"), options.pop("ca"))

        def make(name):
            return JobsHttpsClient(host[8:], name, *files, port=port, timeout_ms=timeout_ms, **options)
    else:
        from umqtt.simple import MQTTClient

        from iotjobs import JobsClient

        mqtt = MQTTClient(thing + "-device", host, port, keepalive=60)

        def make(name):
            return JobsClient(mqtt, name, timeout_ms=timeout_ms, **options)

    _made.append(make)
    return make(thing)


def another(thing):
    """A client of the same kind and connection as the scenario's, for another thing (not connected)."""
    return _made[-1](thing)
