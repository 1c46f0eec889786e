"""Jobs MQTT topics: name validation, topic building and matching, with no I/O."""

from micropython import const

# What a topic is for; responses add ACCEPTED or REJECTED.
GET_PENDING = const(1)
START_NEXT = const(2)
DESCRIBE = const(3)
UPDATE = const(4)
NOTIFY = const(5)
NOTIFY_NEXT = const(6)

ACCEPTED = const(1)
REJECTED = const(2)

NEXT = "$next"
THING_NAME_MAX = const(128)
JOB_ID_MAX = const(64)

_PREFIX = "$aws/things/"
_JOBS = "/jobs/"


def _name_ok(name, max_len, colon):
    if not isinstance(name, str) or not 0 < len(name) <= max_len:
        return False
    for c in name:
        if not (
            "a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c == "_" or c == "-" or (colon and c == ":")
        ):
            return False
    return True


def check_thing_name(name):
    """Raise ValueError unless name is a valid thing name: 1-128 of [a-zA-Z0-9:_-]."""
    if not _name_ok(name, THING_NAME_MAX, True):
        raise ValueError("invalid thing name %r: 1-128 characters of a-z A-Z 0-9 : _ -" % (name,))
    return name


def check_job_id(job_id, allow_next=False):
    """Raise ValueError unless job_id is a valid job id (1-64 of [a-zA-Z0-9_-]), or $next where allowed."""
    if allow_next and job_id == NEXT:
        return job_id
    if not _name_ok(job_id, JOB_ID_MAX, False):
        raise ValueError(
            "invalid job id %r: 1-64 characters of a-z A-Z 0-9 _ -%s" % (job_id, " or $next" if allow_next else "")
        )
    return job_id


def _base(thing):
    return _PREFIX + check_thing_name(thing) + "/jobs"


def get_pending(thing):
    return _base(thing) + "/get"


def start_next(thing):
    return _base(thing) + "/start-next"


def describe(thing, job_id):
    return _base(thing) + "/" + check_job_id(job_id, True) + "/get"


def update(thing, job_id):
    return _base(thing) + "/" + check_job_id(job_id) + "/update"


def notify(thing):
    return _base(thing) + "/notify"


def notify_next(thing):
    return _base(thing) + "/notify-next"


def subscriptions(thing):
    """The exact topics a device needs: every response and both notifications, never its own requests."""
    base = _base(thing)
    subs = []
    for request in ("/get", "/start-next", "/+/get", "/+/update"):
        subs.append(base + request + "/accepted")
        subs.append(base + request + "/rejected")
    subs.append(base + "/notify")
    subs.append(base + "/notify-next")
    return subs


def match(topic, thing):
    """Classify an incoming topic of this thing: (kind, job_id or None, ACCEPTED/REJECTED/0), or None."""
    if isinstance(topic, (bytes, bytearray)):
        try:
            topic = topic.decode()
        except UnicodeError:
            return None
    prefix = _PREFIX + thing + _JOBS
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix):].split("/")
    n = len(parts)
    if n == 1:
        if parts[0] == "notify":
            return (NOTIFY, None, 0)
        if parts[0] == "notify-next":
            return (NOTIFY_NEXT, None, 0)
        return None
    outcome = ACCEPTED if parts[-1] == "accepted" else REJECTED if parts[-1] == "rejected" else 0
    if not outcome:
        return None
    if n == 2:
        if parts[0] == "get":
            return (GET_PENDING, None, outcome)
        if parts[0] == "start-next":
            return (START_NEXT, None, outcome)
        return None
    if n == 3:
        job_id = parts[0]
        if parts[1] == "get" and (job_id == NEXT or _name_ok(job_id, JOB_ID_MAX, False)):
            return (DESCRIBE, job_id, outcome)
        if parts[1] == "update" and _name_ok(job_id, JOB_ID_MAX, False):
            return (UPDATE, job_id, outcome)
    return None
