"""Unit cases of the large-message reader (document.py), run on MicroPython and CPython."""

import io
import json

from harness import main, raises
from iotjobs.document import JobDocument, _Scanner, keep, read_envelope

TMP = "/tmp/iotjobs-document-case-%d.json"


def members(text):
    data = text.encode() if isinstance(text, str) else text
    scanner = _Scanner(io.BytesIO(data), 0, len(data))
    return [(key, json.loads(data[start:end])) for key, start, end in scanner.members()]


def write(n, payload):
    path = TMP % n
    with open(path, "wb") as f:
        f.write(payload.encode() if isinstance(payload, str) else payload)
    return path


def case_members_of_every_value_kind():
    value = {"s": "text", "n": -12.5e3, "t": True, "f": False, "z": None, "a": [1, [2, {"x": "]"}]],
             "o": {"k": {"l": "}"}}, "e": "", "i": 7}
    text = json.dumps(value)
    assert sorted(members(text)) == sorted(value.items())


def case_whitespace_everywhere():
    text = ' \n{ "a" :\t1 ,\r\n "b" : [ ] , "c" : { } , "d":"x" } '
    assert members(text) == [("a", 1), ("b", []), ("c", {}), ("d", "x")]


def case_empty_object():
    assert members("{}") == []
    assert members(" { } ") == []


def case_strings_with_escapes_and_brackets():
    value = {"q": 'say "hi" {not an object} [nor an array]', "b": "back\\slash\\", "u": "\u00e9\u4e2d\u2713",
             "k\"ey": "v", "nl": "a\nb\tc"}
    text = json.dumps(value)
    assert sorted(members(text)) == sorted(value.items())


def case_values_across_chunk_boundaries():
    # Scanned 256 bytes at a time: escapes and quotes land on every boundary somewhere in here.
    for shift in range(0, 12):
        tricky = "x" * (250 + shift) + '\\"' + "y" * 300 + "\\\\" + "z" * 200
        value = {"pad": "p" * shift, "s": tricky.replace('\\"', '"').replace("\\\\", "\\"), "n": [1] * 200}
        text = json.dumps(value)
        assert sorted(members(text)) == sorted(value.items()), shift


def case_large_nested_document():
    settings = {}
    for i in range(300):
        settings["key%04d" % i] = {"v": "value-%d" % i, "l": [i, str(i)]}
    value = {"operation": "config", "settings": settings, "marker": "end"}
    found = dict(members(json.dumps(value)))
    assert found["operation"] == "config" and found["marker"] == "end" and found["settings"] == settings


def case_malformed_json_is_a_value_error():
    for bad in ('{"a": "unterminated}', '{"a" 1}', '{"a": 1,', '["not", "an object"]', '{"a": [1, 2}',
                '{1: 2}', '{"a": 1 "b": 2}', ""):
        raises(ValueError, members, bad)


def case_envelope_keeps_a_large_document_on_file():
    document = {"operation": "download", "url": "http://h/f", "args": ["a", "b"], "blob": "b" * 5000}
    response = {"clientToken": "t-1", "timestamp": 5, "execution": {
        "jobId": "j1", "status": "IN_PROGRESS", "versionNumber": 2, "executionNumber": 1,
        "statusDetails": {"step": "1"}, "jobDocument": document}}
    path = write(1, json.dumps(response))
    size = len(json.dumps(response))
    body = read_envelope(path, size, 1000)
    execution = body["execution"]
    assert body["clientToken"] == "t-1" and body["timestamp"] == 5
    assert execution["jobId"] == "j1" and execution["versionNumber"] == 2
    assert execution["statusDetails"] == {"step": "1"}
    doc = execution["jobDocument"]
    assert isinstance(doc, JobDocument)
    assert doc.get("operation") == "download" and doc["args"] == ["a", "b"]
    assert doc.get("missing") is None and doc.get("missing", 3) == 3
    raises(KeyError, doc.__getitem__, "missing")
    assert doc.load() == document
    assert json.loads(doc.read()) == document
    assert json.loads(b"".join(doc.chunks(100))) == document
    assert doc.size == len(doc.read())


def case_envelope_parses_what_fits_the_budget():
    response = {"clientToken": "t", "execution": {"jobId": "j", "jobDocument": {"operation": "x"}}}
    path = write(2, json.dumps(response))
    assert read_envelope(path, len(json.dumps(response)), 1000) == response
    update = {"clientToken": "u", "jobDocument": {"big": "d" * 3000}, "executionState": {"status": "SUCCEEDED"}}
    path = write(3, json.dumps(update))
    body = read_envelope(path, len(json.dumps(update)), 100)
    assert isinstance(body["jobDocument"], JobDocument) and body["executionState"] == {"status": "SUCCEEDED"}


def case_keep_moves_the_file_and_the_document_follows():
    payload = json.dumps({"jobDocument": {"operation": "y", "pad": "p" * 400}})
    path = write(4, payload)
    doc = read_envelope(path, len(payload), 10)["jobDocument"]
    target = TMP % 5
    write(5, "an older document")
    keep(doc, target)
    assert doc.path == target and doc.get("operation") == "y"
    raises(OSError, open, path, "rb")
    keep(doc, target)
    assert doc.get("operation") == "y"


if __name__ == "__main__":
    main(globals())
