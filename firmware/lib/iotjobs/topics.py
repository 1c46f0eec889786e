"""Jobs MQTT topics: name validation, topic building and matching, with no I/O."""

NEXT = "$next"


def is_name_byte(b, colon=True):
    """Whether byte b may stand in a thing name or statusDetails key (a-z A-Z 0-9 _ - :), or a job id (no colon)."""
    return 97 <= b <= 122 or 65 <= b <= 90 or 48 <= b <= 57 or b == 95 or b == 45 or (colon and b == 58)


def name_ok(name, max_len, colon=True):
    """Whether name is a str of 1 to max_len name bytes (see is_name_byte)."""
    if not isinstance(name, str) or not 0 < len(name) <= max_len:
        return False
    # Its bytes, not its characters: MicroPython interns each one-character str it makes (payloads.code_point).
    for b in name.encode():
        if not is_name_byte(b, colon):
            return False
    return True


def check_thing_name(name):
    """Raise ValueError unless name is a valid thing name: 1-128 of [a-zA-Z0-9:_-]."""
    if not name_ok(name, 128):
        raise ValueError("invalid thing name %r: 1-128 characters of a-z A-Z 0-9 : _ -" % (name,))
    return name


def check_job_id(job_id, allow_next=False):
    """Raise ValueError unless job_id is a valid job id (1-64 of [a-zA-Z0-9_-]), or $next where allowed."""
    if not (name_ok(job_id, 64, False) or allow_next and job_id == NEXT):
        raise ValueError(
            "invalid job id %r: 1-64 characters of a-z A-Z 0-9 _ -%s" % (job_id, " or $next" if allow_next else "")
        )
    return job_id


# The topic of each request and notification.
def _base(thing):
    return "$aws/things/" + check_thing_name(thing) + "/jobs/"


def get_pending(thing):
    return _base(thing) + "get"


def start_next(thing):
    return _base(thing) + "start-next"


def describe(thing, job_id):
    return _base(thing) + check_job_id(job_id, True) + "/get"


def update(thing, job_id):
    return _base(thing) + check_job_id(job_id) + "/update"


def notify(thing):
    return _base(thing) + "notify"


def notify_next(thing):
    return _base(thing) + "notify-next"


def subscriptions(thing):
    """The exact topics a device needs: every response and both notifications, never its own requests."""
    base = _base(thing)
    subs = [base + "notify", base + "notify-next"]
    for kind in ("get", "start-next", "+/get", "+/update"):
        subs.append(base + kind + "/accepted")
        subs.append(base + kind + "/rejected")
    return subs


def match(topic, thing):
    """Classify an incoming topic of this thing: (kind, job_id or None, accepted), or None.

    kind is the request's ("get", "start-next", "describe", "update") and accepted True or False for a response;
    for a notification kind is "notify" or "notify-next" and accepted None.
    """
    if not isinstance(topic, str):
        try:
            topic = topic.decode()
        except UnicodeError:
            return None
    prefix = "$aws/things/" + thing + "/jobs/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    n = len(parts)
    last = parts[-1]
    if n == 1:
        return (last, None, None) if last in ("notify", "notify-next") else None
    if last not in ("accepted", "rejected"):
        return None
    accepted = last == "accepted"
    if n == 2:
        return (parts[0], None, accepted) if parts[0] in ("get", "start-next") else None
    if n == 3:
        job_id, kind = parts[0], parts[1]
        if kind == "get" and (job_id == NEXT or name_ok(job_id, 64, False)):
            return ("describe", job_id, accepted)
        if kind == "update" and name_ok(job_id, 64, False):
            return ("update", job_id, accepted)
    return None
