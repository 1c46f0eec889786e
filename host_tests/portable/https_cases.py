"""Unit cases of the HTTPS client's pure parts (errors, the response reader, unescaping), on MicroPython and CPython."""

import json

from harness import main, raises
from iotjobs.document import JobDocument
from iotjobs.https import _Response, _unquote, error_of

TMP = "/tmp/iotjobs-https-case-%s.json"


class Pieces:
    """A socket whose reads return the given pieces, one per call, then the end of the stream."""

    def __init__(self, *pieces):
        self.pieces = list(pieces)

    def readinto(self, view):
        if not self.pieces:
            return 0
        piece = self.pieces.pop(0)
        n = min(len(piece), len(view))
        view[:n] = piece[:n]
        if n < len(piece):
            self.pieces.insert(0, piece[n:])
        return n


def response(buffer_size, *pieces):
    return _Response(Pieces(*pieces), bytearray(buffer_size), 0, None)


# ---- error_of ------------------------------------------------------------------------------------------------


def case_error_types_map_to_the_mqtt_codes():
    table = (
        ("InvalidRequestException", 400, "InvalidRequest"),
        ("ResourceNotFoundException", 404, "ResourceNotFound"),
        ("TerminalStateException", 410, "TerminalStateReached"),
        ("ThrottlingException", 429, "RequestThrottled"),
        ("ServiceUnavailableException", 503, "InternalError"),
        ("InternalFailureException", 500, "InternalError"),
        ("VersionConflictException", 409, "VersionMismatch"),
        ("CertificateValidationException", 400, "CertificateValidation"),
        ("ForbiddenException", 403, "Forbidden"),
    )
    for error_type, status, code in table:
        error = error_of(status, error_type, {"message": "why"})
        assert (error.code, error.message, error.execution_state) == (code, "why", None), (error_type, error.code)


def case_aws_suffixes_and_namespaces_are_dropped():
    suffixed = "ResourceNotFoundException:http://internal.amazon.com/coral/com.amazonaws.iot/"
    assert error_of(404, suffixed, {}).code == "ResourceNotFound"
    assert error_of(400, None, {"__type": "com.amazonaws.iot#ThrottlingException"}).code == "RequestThrottled"


def case_without_a_type_the_status_says_the_code():
    for status, code in ((400, "InvalidRequest"), (404, "ResourceNotFound"), (409, "InvalidStateTransition"),
                         (410, "TerminalStateReached"), (429, "RequestThrottled"), (500, "InternalError"),
                         (502, "InternalError"), (418, "HTTP418")):
        assert error_of(status, None, None).code == code, status
    error = error_of(502, None, None)
    assert error.message == "HTTP 502" and error.execution_state is None


def case_an_invalid_transition_of_a_running_execution_is_a_version_mismatch():
    running = {"status": "IN_PROGRESS", "statusDetails": {}, "versionNumber": 7}
    done = {"status": "SUCCEEDED", "statusDetails": {}, "versionNumber": 7}
    error = error_of(409, "InvalidStateTransitionException", {"message": "m", "executionState": running})
    assert error.code == "VersionMismatch" and error.execution_state == running
    error = error_of(409, "InvalidStateTransitionException", {"message": "m", "executionState": done})
    assert error.code == "InvalidStateTransition" and error.execution_state == done
    assert error_of(409, "InvalidStateTransitionException", {"executionState": "odd"}).execution_state is None


def case_the_message_may_be_capitalised_or_missing():
    assert error_of(400, "InvalidRequestException", {"Message": "upper"}).message == "upper"
    assert error_of(400, "InvalidRequestException", {"message": 5}).message == "HTTP 400"


# ---- the response reader --------------------------------------------------------------------------------------


def case_head_across_tiny_reads_and_a_small_buffer():
    raw = (b"HTTP/1.1 409 Conflict\r\ncontent-LENGTH: 12\r\nX-Amzn-ErrorType: A:b:c\r\nX-Odd-Line\r\n"
           b"Transfer-Encoding: Chunked\r\n\r\nbody")
    for size in (40, 64, 4096):
        r = response(size, *[raw[i:i + 3] for i in range(0, len(raw), 3)])
        assert r.head() == (409, 12, True, "A:b:c"), size
        assert bytes(r.piece(100)) + bytes(r.piece(100)) == b"body"
        assert not r.piece(100)


def case_a_line_longer_than_the_buffer_is_refused():
    r = response(16, b"HTTP/1.1 200 OK\r\n", b"X-Long: " + b"x" * 40 + b"\r\n\r\n")
    raises(ValueError, r.head)


def case_a_response_that_ends_in_its_head_is_a_broken_link():
    r = response(64, b"HTTP/1.1 200 OK\r\nContent-")
    raises(OSError, r.head)


def case_not_http_is_refused():
    raises(ValueError, response(64, b"SSH-2.0-OpenSSH\r\n\r\n").head)


# ---- a job document sent as a JSON string --------------------------------------------------------------------


def stored(document_text):
    """A JobDocument over the JSON string literal of document_text, as read_envelope leaves it in a response."""
    path = TMP % "envelope"
    literal = json.dumps(document_text).encode()
    with open(path, "wb") as f:
        f.write(b'{"jobDocument": ')
        f.write(literal)
        f.write(b"}")
    return JobDocument(path, 16, len(literal))


def case_unquote_gives_the_document_text_whatever_the_buffer_size():
    document = {"q": 'say "hi"', "b": "back\\slash", "s": "a/b", "c": "tab\tnew\nline\r\x08\x0c\x01",
                "u": "\u00e9\u4e2d\u20ac", "n": [1, 2.5, None, True], "o": {"k": ""}}
    # Escaped by the inner encoder, then again by the outer one: \\u00e9 and \\n inside, raw newlines between.
    compact = json.dumps(document)
    for text in (compact, "{\n\t" + compact[1:-1] + "\r\n}"):
        for size in range(7, 40):
            done = _unquote(stored(text), TMP % "doc", bytearray(size))
            assert done.path == TMP % "doc" and done.offset == 0
            assert done.read() == text.encode(), (size, done.read()[:60])
            assert done.load() == document


def case_escapes_of_ascii_become_the_characters():
    # Another encoder may escape more than json.dumps does: \u0022 is a quote the document needs as a quote.
    path = TMP % "ascii"
    literal = b'"{\\u0022a\\u0022: \\u00221\\u0022}"'
    with open(path, "wb") as f:
        f.write(literal)
    done = _unquote(JobDocument(path, 0, len(literal)), TMP % "doc", bytearray(8))
    assert done.load() == {"a": "1"}


def case_escapes_past_ascii_stay_escapes():
    # They can only stand inside the document's strings, where the escape means the same character.
    path = TMP % "unicode"
    literal = b'"{\\"u\\": \\"\\u00e9\\u4e2d\\ud83d\\ude00\\"}"'
    with open(path, "wb") as f:
        f.write(literal)
    for size in range(7, 20):
        done = _unquote(JobDocument(path, 0, len(literal)), TMP % "doc", bytearray(size))
        assert done.read() == b'{"u": "\\u00e9\\u4e2d\\ud83d\\ude00"}', size
        assert done.load()["u"][:2] == "\u00e9\u4e2d"


def case_a_broken_string_is_refused():
    for literal in (b'"abc\\', b'"ab\\u12', b'"a\\qb"'):
        path = TMP % "broken"
        with open(path, "wb") as f:
            f.write(literal + b'"')
        raises(ValueError, _unquote, JobDocument(path, 0, len(literal) + 1), TMP % "doc", bytearray(16))


main(globals())
