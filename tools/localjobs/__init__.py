"""The local AWS IoT Jobs service: device API over MQTT, management and device APIs over HTTP, state in SQLite."""

from .broker import Mosquitto
from .clock import Clock, ManualClock
from .documents import Documents
from .http_api import HttpApi
from .model import ApiError, Job, JobExecution, JobsModel, Notification, Thing, ThingGroup, group_arn, thing_arn
from .mqtt_api import Exchange, parse_topic
from .service import JobsService
from .store import Store

__all__ = [
    "ApiError",
    "Clock",
    "Documents",
    "Exchange",
    "HttpApi",
    "Job",
    "JobExecution",
    "JobsModel",
    "JobsService",
    "ManualClock",
    "Mosquitto",
    "Notification",
    "Store",
    "Thing",
    "ThingGroup",
    "group_arn",
    "parse_topic",
    "thing_arn",
]
