"""iotjobs: the AWS IoT Jobs device API for MicroPython, over umqtt.simple."""

from iotjobs.client import JobsClient
from iotjobs.errors import JobsError, RequestTimeout

__all__ = ["JobsClient", "JobsError", "RequestTimeout"]
