"""Hostile requests over raw sockets against the real gunicorn (see corpus.py).

For every request: an answer (or, where the request never completes, a
closed connection), never a 5xx unless the case justifies it, never a
traceback or a server path (HEAD's documented X-Pacifica-File aside), nothing
outside the prefix touched (inotify on the canary and the directories),
nothing in the prefix but what legitimate requests stored, no temporary file
left behind, and the service still answering a normal request afterwards.
"""

import json
import socket
import sys
from urllib.parse import unquote

import pytest
from server import ROOT, parse_response, recv_all, wait_until

from .corpus import CASES, render

ANSWER_TIMEOUT = 30.0  # above nothing in the corpus: the longest wait is an EOF the server sees at once


def exchange(port, data):
    """Send ``data``, close our side, and read everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed before reading it all: its answer is still there to read
        return recv_all(sock)


def target_id(data):
    """The id a request names, as the service decodes it (for recording what a 201 stored)."""
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    return unquote(parts[1].split("?", 1)[0].lstrip("/")) if len(parts) == 3 else None


def leaks(answer, request_text, arena):
    """Server paths and tracebacks in the answer that the client did not send itself."""
    text = "\r\n".join(
        line for line in answer.decode("latin-1").split("\r\n") if not line.lower().startswith("x-pacifica-file:")
    )
    secrets_ = [
        str(arena.base),
        str(ROOT),
        str(arena.server.workdir.parent),
        sys.prefix,
        "site-packages",
        "/usr/lib/python",
        "Traceback",
        'File "',
        arena.canary_bytes.decode(),
    ]
    sent = request_text + unquote(request_text)
    return [s for s in secrets_ if s in text and s not in sent]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_request(arena, case):
    arena.touched()  # start clean even after a failed case
    for request in case.requests:
        data = render(request, arena.paths)
        answer = exchange(arena.server.port, data)
        if not answer:
            assert case.may_close, f"{case.name}: the server closed the connection without an answer"
        elif case.http2:
            # an empty SETTINGS frame, then GOAWAY (type 7) with HTTP_1_1_REQUIRED (0xd); the frames
            # themselves are checked in tests/integration/test_http2.py
            assert answer[:9] == b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", (case.name, answer[:60])
            assert answer[12] == 0x7 and answer[22:26] == b"\x00\x00\x00\x0d", (case.name, answer[:60])
        else:
            resp = parse_response(answer, head=data.startswith(b"HEAD "))
            if resp.status == 201:
                arena.stored.add(target_id(data))
            assert resp.status < 500 or resp.status in case.allowed_5xx, (case.name, resp)
            if case.expect:
                assert resp.status in case.expect, (case.name, resp)
            if resp.status >= 400 and resp.headers.get("content-type", "").startswith("application/json") and resp.body:
                doc = json.loads(resp.body)
                assert doc["status"].startswith(str(resp.status)), doc
            assert leaks(answer, data.decode("latin-1"), arena) == [], (case.name, answer[:2000])
        assert arena.touched() == [], case.name
        assert wait_until(lambda: not list(arena.prefix.glob(".pyai-tmp*")), timeout=10), (
            "a temporary file stayed behind"
        )
        strays = arena.unexpected_in_prefix()
        arena.stored.update(strays)  # reported once, not again by every later case
        assert strays == [], case.name
        assert arena.healthy(), f"{case.name}: the service no longer answers a normal request"


def test_service_logged_no_traceback(arena):
    """Nothing in the corpus made pyai or gunicorn log an unexpected exception."""
    log = arena.server.log(tail=10**7)
    assert "Traceback" not in log, log[-5000:]
    assert arena.canary.read_bytes() == arena.canary_bytes
