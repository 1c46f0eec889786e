"""iotjobs: the AWS IoT Jobs device API for MicroPython, over MQTT (umqtt.simple) or HTTPS (iotjobs.https)."""

from iotjobs.errors import JobsError, RequestTimeout

__all__ = ["JobsClient", "JobsError", "RequestTimeout"]


def __getattr__(name):
    # The MQTT client, and umqtt.simple with it, loads when it is first asked for: a device on HTTPS never is.
    if name == "JobsClient":
        from iotjobs.client import JobsClient

        return JobsClient
    if name.startswith("__"):
        raise AttributeError(name)  # dir(), hasattr(): no submodule has such a name
    # MicroPython asks here before it imports a submodule for `from iotjobs import runner`.
    __import__(__name__ + "." + name)
    return globals()[name]
