"""The transfer log's line, from C (pyai.native._cimpl) and pure Python (pyai.native._pyimpl): the same bytes."""

import importlib
import json
import random
import time

import pytest

from pyai.ops.record import Record

# Each kind of character the escaping treats apart: plain, quote, backslash, the short escapes,
# other controls, DEL, Latin-1, a BMP character past Latin-1, one past the BMP, a lone surrogate.
ALPHABET = ["a", " ", '"', "\\", "\n", "\r", "\t", "\b", "\f", "\x00", "\x1f", "\x7f", "\xe9", "\u2028"]
ALPHABET += ["\U0001f600", "\udc80"]


class Body:
    received = 12345


@pytest.fixture(params=["c", "python"])
def native(request):
    return importlib.import_module({"c": "pyai.native._cimpl", "python": "pyai.native._pyimpl"}[request.param])


def odd_record(rnd):
    def text(most):
        return "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, most)))

    record = Record(text(40), text(200), rnd.choice([None, text(150)]))
    record.wall = rnd.choice([0.0, 1.0005, 1714566896.7891, 1714566896.9999, time.time()])
    record.ident = rnd.choice([None, text(170)])
    record.token = rnd.choice([None, "reader", text(170)])
    record.digest = rnd.choice([None, "sha256:" + "ab" * 32])
    record.medium = rnd.choice([None, "disk", "tape"])
    record.stage_wait = rnd.choice([None, 0.0, -1.0, 12.3456789])
    record.first_byte = rnd.choice([None, record.started + 0.0012345, record.started - 1])
    record.body = rnd.choice([None, Body()])
    record.started = time.monotonic() + 100  # a duration that clamps to 0: the same in both
    return record


def test_both_implementations_make_the_same_line():
    c = importlib.import_module("pyai.native._cimpl")
    py = importlib.import_module("pyai.native._pyimpl")
    rnd = random.Random(7)
    for _ in range(2000):
        record = odd_record(rnd)
        status = rnd.choice([None, 0, 200, 599])
        sent = rnd.choice([0, 30, 10**12, 2**63 - 1])
        client = rnd.choice([("192.0.2.1", 5), ("::1", 80, 0, 0), None, (), "unix"])
        made = c.transfer_line(record, status, sent, client, 4242)
        assert made == py.transfer_line(record, status, sent, client, 4242)
        line = json.loads(made)
        assert len(line["path"] or "") <= c.TRANSFER_TEXT_MAX
    assert (c.TRANSFER_TEXT_MAX, c.TRANSFER_FORWARDED_MAX, c.TRANSFER_METHOD_MAX) == (
        py.TRANSFER_TEXT_MAX,
        py.TRANSFER_FORWARDED_MAX,
        py.TRANSFER_METHOD_MAX,
    )


def test_the_line_says_what_the_record_says(native):
    record = Record("GET", '/a"b', "203.0.113.7")
    record.wall = 1714566896.7891
    record.ident, record.token, record.digest, record.medium = 'a"b', "reader", "sha256:ab", "disk"
    record.first_byte = record.started + 0.25
    record.stage_wait = 1.5
    record.body = Body()
    data = native.transfer_line(record, 200, 30, ("192.0.2.1", 5), 77)
    assert data.endswith(b"}\n") and data.count(b"\n") == 1
    line = json.loads(data)
    assert line["time"] == "2024-05-01T12:34:56.789Z"
    assert (line["method"], line["path"], line["id"], line["status"]) == ("GET", '/a"b', 'a"b', 200)
    assert (line["bytes_sent"], line["bytes_received"], line["ttfb"], line["stage_wait"]) == (30, 12345, 0.25, 1.5)
    assert (line["client"], line["forwarded_for"]) == ("192.0.2.1", "203.0.113.7")
    assert (line["token"], line["pid"]) == ("reader", 77)
    assert 0 <= line["duration"] < 60
    epoch = Record("GET")
    epoch.wall = 0.0
    assert json.loads(native.transfer_line(epoch, None, 0, None, 1))["time"] == "1970-01-01T00:00:00.000Z"


def test_a_text_that_is_not_a_string_is_refused(native):
    with pytest.raises(TypeError):
        native.transfer_line(Record(b"GET"), 200, 0, None, 1)
