"""The local AWS IoT Jobs service: the spec's device API over MQTT, driven from Python or HTTP."""

from .broker import Mosquitto
from .clock import Clock, ManualClock
from .model import ApiError, Job, JobExecution, JobsModel, Notification, Thing
from .mqtt_api import Exchange, parse_topic
from .service import JobsService

__all__ = [
    "ApiError",
    "Clock",
    "Exchange",
    "Job",
    "JobExecution",
    "JobsModel",
    "JobsService",
    "ManualClock",
    "Mosquitto",
    "Notification",
    "Thing",
    "parse_topic",
]
