"""Unit cases of the pure protocol core (topics, payloads, errors), run on MicroPython and CPython."""

import json

from harness import main, raises
from iotjobs import errors, payloads, topics
from iotjobs.errors import JobsError
from iotjobs.net import backoff_ms

THING = "dev-1"
BASE = "$aws/things/dev-1/jobs"

# ---- names -------------------------------------------------------------------------------------------

NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


def case_thing_name_every_allowed_character():
    assert topics.check_thing_name(NAME_CHARS + ":") == NAME_CHARS + ":"
    for c in NAME_CHARS + ":":
        assert topics.check_thing_name(c) == c


def case_thing_name_length_bounds():
    assert topics.check_thing_name("a" * 128)
    raises(ValueError, topics.check_thing_name, "a" * 129)
    raises(ValueError, topics.check_thing_name, "")


def case_thing_name_rejects_topic_syntax_and_others():
    for bad in ("a/b", "a+", "#", "a b", "$aws", "é", "a.b", "a\x00", "a\n"):
        e = raises(ValueError, topics.check_thing_name, bad)
        assert "thing name" in str(e)
    raises(ValueError, topics.check_thing_name, None)
    raises(ValueError, topics.check_thing_name, b"abc")


def case_job_id_bounds_and_characters():
    assert topics.check_job_id(NAME_CHARS[:64]) == NAME_CHARS[:64]
    assert len(NAME_CHARS) == 64
    raises(ValueError, topics.check_job_id, NAME_CHARS + "a")
    raises(ValueError, topics.check_job_id, "")
    for bad in ("a:b", "a/b", "+", "#", "a b", "$next", "é", "job.1"):
        raises(ValueError, topics.check_job_id, bad)


def case_job_id_next_only_where_allowed():
    assert topics.check_job_id("$next", True) == "$next"
    raises(ValueError, topics.check_job_id, "$next")
    raises(ValueError, topics.check_job_id, "$nexts", True)
    raises(ValueError, topics.check_job_id, "$other", True)


# ---- building topics -------------------------------------------------------------------------------


def case_request_topics():
    assert topics.get_pending(THING) == BASE + "/get"
    assert topics.start_next(THING) == BASE + "/start-next"
    assert topics.describe(THING, "job-1") == BASE + "/job-1/get"
    assert topics.describe(THING, "$next") == BASE + "/$next/get"
    assert topics.update(THING, "job_1") == BASE + "/job_1/update"
    assert topics.notify(THING) == BASE + "/notify"
    assert topics.notify_next(THING) == BASE + "/notify-next"


def case_topics_refuse_invalid_names():
    for build in (topics.get_pending, topics.start_next, topics.notify, topics.notify_next, topics.subscriptions):
        raises(ValueError, build, "a/b")
        raises(ValueError, build, "+")
        raises(ValueError, build, "#")
    raises(ValueError, topics.describe, THING, "a/b")
    raises(ValueError, topics.describe, THING, "#")
    raises(ValueError, topics.update, THING, "$next")
    raises(ValueError, topics.update, THING, "+")


def case_thing_name_of_128_makes_topics():
    name = "T" * 128
    assert topics.update(name, "j" * 64) == "$aws/things/" + name + "/jobs/" + "j" * 64 + "/update"


def case_subscriptions_are_exactly_responses_and_notifications():
    subs = topics.subscriptions(THING)
    assert len(subs) == 10
    assert len(set(subs)) == 10
    for s in subs:
        assert s.startswith(BASE + "/")
        assert "#" not in s
        assert s.endswith("/accepted") or s.endswith("/rejected") or s in (BASE + "/notify", BASE + "/notify-next")


def _mqtt_match(pattern, topic):
    p = pattern.split("/")
    t = topic.split("/")
    if len(p) != len(t):
        return False
    for a, b in zip(p, t):
        if a != "+" and a != b:
            return False
    return True


def case_subscriptions_never_match_own_requests():
    requests = [
        topics.get_pending(THING),
        topics.start_next(THING),
        topics.describe(THING, "$next"),
        topics.describe(THING, "get"),
        topics.describe(THING, "start-next"),
        topics.update(THING, "job-1"),
        topics.update(THING, "update"),
    ]
    for sub in topics.subscriptions(THING):
        for req in requests:
            assert not _mqtt_match(sub, req), (sub, req)


def case_subscriptions_match_every_response():
    responses = []
    for outcome in ("accepted", "rejected"):
        responses.append(BASE + "/get/" + outcome)
        responses.append(BASE + "/start-next/" + outcome)
        responses.append(BASE + "/$next/get/" + outcome)
        responses.append(BASE + "/job-1/get/" + outcome)
        responses.append(BASE + "/job-1/update/" + outcome)
    responses.append(BASE + "/notify")
    responses.append(BASE + "/notify-next")
    subs = topics.subscriptions(THING)
    for r in responses:
        assert any(_mqtt_match(s, r) for s in subs), r


# ---- matching topics -------------------------------------------------------------------------------


def case_match_every_response_kind():
    A, R = True, False
    table = (
        ("/get/accepted", ("get", None, A)),
        ("/get/rejected", ("get", None, R)),
        ("/start-next/accepted", ("start-next", None, A)),
        ("/start-next/rejected", ("start-next", None, R)),
        ("/$next/get/accepted", ("describe", "$next", A)),
        ("/$next/get/rejected", ("describe", "$next", R)),
        ("/job-1/get/accepted", ("describe", "job-1", A)),
        ("/job-1/get/rejected", ("describe", "job-1", R)),
        ("/job-1/update/accepted", ("update", "job-1", A)),
        ("/job-1/update/rejected", ("update", "job-1", R)),
        ("/get/get/accepted", ("describe", "get", A)),
        ("/update/update/rejected", ("update", "update", R)),
        ("/notify", ("notify", None, None)),
        ("/notify-next", ("notify-next", None, None)),
    )
    for suffix, expected in table:
        assert topics.match(BASE + suffix, THING) == expected, suffix
        assert topics.match((BASE + suffix).encode(), THING) == expected, suffix


def case_match_rejects_requests_and_unknown_topics():
    for suffix in (
        "/get",
        "/start-next",
        "/job-1/get",
        "/job-1/update",
        "/$next/update/accepted",
        "/get/accepted/extra",
        "/get/maybe",
        "/start-next/get",
        "/job-1/delete/accepted",
        "/job.1/get/accepted",
        "/a:b/update/accepted",
        "/notify/accepted",
        "/notify-next/accepted",
        "/notifications",
        "",
        "/",
        "//accepted",
        "/x/y/z/accepted",
    ):
        assert topics.match(BASE + suffix, THING) is None, suffix


def case_match_only_this_thing():
    assert topics.match("$aws/things/dev-10/jobs/notify", THING) is None
    assert topics.match("$aws/things/dev/jobs/notify", THING) is None
    assert topics.match("$aws/things/DEV-1/jobs/notify", THING) is None
    assert topics.match("$aws/things/dev-1/shadow/update/accepted", THING) is None
    assert topics.match("aws/things/dev-1/jobs/notify", THING) is None
    assert topics.match("", THING) is None


def case_match_non_utf8_topic():
    assert topics.match(b"$aws/things/dev-1/jobs/\xff/get/accepted", THING) is None


# ---- payloads ----------------------------------------------------------------------------------------


def case_get_pending_payload():
    # get_pending sends describe's request with its defaults: a clientToken alone.
    assert json.loads(payloads.describe("tok-1")) == {"clientToken": "tok-1"}


def case_start_next_payload():
    assert json.loads(payloads.start_next("t")) == {"clientToken": "t"}
    got = json.loads(payloads.start_next("t", {"step": "1"}, 5))
    assert got == {"clientToken": "t", "statusDetails": {"step": "1"}, "stepTimeoutInMinutes": 5}


def case_describe_payload():
    assert json.loads(payloads.describe("t")) == {"clientToken": "t"}
    got = json.loads(payloads.describe("t", 7, False))
    assert got == {"clientToken": "t", "executionNumber": 7, "includeJobDocument": False}


def case_update_payload_sends_numbers():
    got = json.loads(payloads.update("t", "IN_PROGRESS", {"p": "50"}, 3, 2, True, True, -1))
    assert got == {
        "clientToken": "t",
        "status": "IN_PROGRESS",
        "statusDetails": {"p": "50"},
        "expectedVersion": 3,
        "executionNumber": 2,
        "includeJobExecutionState": True,
        "includeJobDocument": True,
        "stepTimeoutInMinutes": -1,
    }
    assert json.loads(payloads.update("t", "SUCCEEDED")) == {"clientToken": "t", "status": "SUCCEEDED"}


def case_update_payload_keeps_unicode():
    text = payloads.update("t", "FAILED", {"why": "température élevée ✓"})
    assert json.loads(text)["statusDetails"]["why"] == "température élevée ✓"


def case_device_statuses_only():
    for status in ("IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED"):
        assert json.loads(payloads.update("t", status))["status"] == status
    for bad in ("QUEUED", "CANCELED", "TIMED_OUT", "REMOVED", "in_progress", "", None, 1):
        e = raises(ValueError, payloads.update, "t", bad)
        assert "status" in str(e)


def case_status_details_pair_limit():
    ten = {}
    for i in range(10):
        ten["k%d" % i] = "v"
    assert payloads.check_status_details(ten) is ten
    ten["k10"] = "v"
    e = raises(ValueError, payloads.check_status_details, ten)
    assert "11" in str(e)


def case_status_details_key_limits():
    assert payloads.check_status_details({"K" * 128: "v"})
    assert payloads.check_status_details({"a:b_c-D9": "v"})
    for key in ("K" * 129, "", "a b", "a/b", "a.b", "é", 1, None):
        raises(ValueError, payloads.check_status_details, {key: "v"})


def case_status_details_value_limits():
    assert payloads.check_status_details({"k": "v" * 1024})
    assert payloads.check_status_details({"k": "any text: /+#$ é 中 ✓ \\ \""})
    for value in ("v" * 1025, "", 1, None, True, ["x"], {"a": "b"}):
        raises(ValueError, payloads.check_status_details, {"k": value})


def case_status_details_control_characters():
    for c in ("\x00", "\x01", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\u200b", "\u2028", "\ufeff", "\ue000"):
        e = raises(ValueError, payloads.check_status_details, {"k": "a" + c + "b"})
        assert "control" in str(e)


def case_code_point_reads_each_utf8_length():
    for c in ("a", "\x7f", "\xe9", "\u00ad", "\u4e2d", "\u200b", "\ufeff", "\U0001f600"):
        raw = c.encode()
        assert payloads.code_point(raw, 0) == (ord(c), len(raw)), c
    raw = "a\xe9\u4e2d\U0001f600".encode()
    assert payloads.code_point(raw, 1) == (0xE9, 2) and payloads.code_point(raw, 3) == (0x4E2D, 3)


def case_status_details_control_character_is_named():
    e = raises(ValueError, payloads.check_status_details, {"k": "\u4e2d\xe9\u2028x"})
    assert str(e) == "statusDetails['k'] has control character %r" % "\u2028", str(e)


def case_clip_details_keeps_every_other_character_and_counts_characters():
    from iotjobs.runner import clip_details

    value = "a\x00\xe9\u200b\u4e2d\U0001f600" + "x" * 2000
    clipped = clip_details({"k\xe9 y:1": value, "plain": "text"})
    assert clipped["plain"] == "text"
    assert clipped["k__y:1"] == "a\xe9\u4e2d\U0001f600" + "x" * 1020, len(clipped["k__y:1"])
    assert clip_details({"\u4e2d" * 200: "v"}) == {"_" * 128: "v"}
    assert payloads.check_status_details(clipped) is clipped


def case_status_details_must_be_dict():
    for bad in ([("k", "v")], "k=v", 1):
        raises(ValueError, payloads.check_status_details, bad)
    raises(ValueError, payloads.start_next, "t", [("k", "v")])
    raises(ValueError, payloads.update, "t", "SUCCEEDED", {"k": ""})


def case_step_timeout_bounds():
    assert json.loads(payloads.start_next("t", None, 1))["stepTimeoutInMinutes"] == 1
    assert json.loads(payloads.start_next("t", None, 10080))["stepTimeoutInMinutes"] == 10080
    for bad in (0, 10081, -1, -2, True, 1.5, "5"):
        raises(ValueError, payloads.start_next, "t", None, bad)
    assert json.loads(payloads.update("t", "IN_PROGRESS", None, None, None, False, False, -1))
    for bad in (0, -2, 10081):
        raises(ValueError, payloads.update, "t", "IN_PROGRESS", None, None, None, False, False, bad)


def case_counts_are_non_negative_ints():
    for bad in (-1, True, 1.0, "3"):
        raises(ValueError, payloads.update, "t", "SUCCEEDED", None, bad)
        raises(ValueError, payloads.update, "t", "SUCCEEDED", None, None, bad)
        raises(ValueError, payloads.describe, "t", bad)
    assert json.loads(payloads.update("t", "SUCCEEDED", None, 0))["expectedVersion"] == 0


def case_epoch_seconds_accepts_both_units():
    assert payloads.epoch_seconds(1489096123) == 1489096123
    assert payloads.epoch_seconds(1489096123309) == 1489096123
    assert payloads.epoch_seconds(0) == 0
    assert payloads.epoch_seconds(None) is None
    assert payloads.epoch_seconds(99999999999) == 99999999999


# ---- errors ------------------------------------------------------------------------------------------


def case_all_nine_error_codes():
    codes = ("InvalidTopic", "InvalidJson", "InvalidRequest", "InvalidStateTransition", "ResourceNotFound",
             "VersionMismatch", "InternalError", "RequestThrottled", "TerminalStateReached")
    state = {"status": "SUCCEEDED", "statusDetails": {}, "versionNumber": 4}
    for code in codes:
        payload = {"code": code, "message": "m " + code, "clientToken": "t", "timestamp": 1}
        if code in ("VersionMismatch", "InvalidStateTransition"):
            payload["executionState"] = state
        e = errors.from_rejected(payload)
        assert isinstance(e, JobsError)
        assert e.code == code
        assert e.message == "m " + code
        assert str(e) == code + ": m " + code
        if code in ("VersionMismatch", "InvalidStateTransition"):
            assert e.execution_state == state
        else:
            assert e.execution_state is None
        assert e.retryable == (code in ("InternalError", "RequestThrottled"))


def case_error_from_odd_payloads():
    e = errors.from_rejected({})
    assert e.code == "" and e.message == "" and e.execution_state is None
    e = errors.from_rejected({"code": 5, "message": ["x"], "executionState": "SUCCEEDED"})
    assert e.code == "" and e.message == "" and e.execution_state is None
    e = errors.from_rejected({"code": "SomethingNew", "message": "later API"})
    assert e.code == "SomethingNew"


# ---- reconnect backoff -------------------------------------------------------------------------------


def case_backoff_caps_grow_to_the_ceiling():
    def highest(k):
        return k - 1

    caps = [backoff_ms(n, 1000, 120000, 2, highest) + 1 for n in range(10)]
    assert caps == [1001, 2001, 4001, 8001, 16001, 32001, 64001, 120001, 120001, 120001], caps
    assert backoff_ms(1000, 1000, 120000, 2, highest) == 120000
    assert backoff_ms(3, 500, 60000, 3, highest) == 13500


def case_backoff_is_full_jitter():
    assert backoff_ms(6, 1000, 120000, 2, lambda k: 0) == 0
    seen = set()
    for _ in range(200):
        delay = backoff_ms(2, 100, 1000, 2)
        assert 0 <= delay <= 400
        seen.add(min(delay // 100, 3))
    # Spread over the whole window, not bunched at its top (200 draws miss a quarter with odds of 1e-25).
    assert seen == {0, 1, 2, 3}, seen


def case_backoff_without_a_floor():
    assert backoff_ms(3, 0, 1000, 2) == 0


if __name__ == "__main__":
    main(globals())
