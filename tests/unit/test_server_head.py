"""pyai.server.head and pyai.server.wsgi in process: what a head parses to, what is refused and with which status,
and a response head that cannot carry an injected field.  The same requests against the real server are in
tests/integration/test_worker.py and tests/hostile/corpus.py."""

import types

import pytest

from pyai import serving
from pyai.server.head import BadHead, Limits, parse, refuse_overlong
from pyai.server.wsgi import Forwarded, Response, connection_environ, environ_for

CFG = types.SimpleNamespace(
    limit_request_line=100,
    limit_request_fields=5,
    limit_request_field_size=60,
    workers=2,
    secure_scheme_headers={"X-FORWARDED-PROTO": "https"},
    forwarded_allow_ips=["127.0.0.1"],
)
LIMITS = Limits(CFG)


def head_of(data):
    return parse(data, LIMITS)


def test_a_request_parses_to_its_parts():
    head = head_of(b"PUT /a%20b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n")
    assert (head.method, head.path, head.query, head.version) == ("PUT", b"/a%20b", b"x=1&y=2", "1.1")
    assert (head.length, head.chunked, head.expect, head.keep_alive) == (12, False, True, True)


def test_http10_closes_unless_asked_to_keep_alive():
    assert head_of(b"GET / HTTP/1.0\r\n\r\n").keep_alive is False
    assert head_of(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive is True


def test_an_absolute_target_gives_its_path_and_query():
    head = head_of(b"GET http://example.org/id1?byte_range=0-1 HTTP/1.1\r\n\r\n")
    assert (head.path, head.query) == (b"/id1", b"byte_range=0-1")


def test_a_method_llhttp_does_not_know_reaches_the_app():
    """The app answers it (405 with Allow), as it answered under gunicorn."""
    head = head_of(b"BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (head.method, head.path, head.fields) == ("BREW", b"/pot", [(b"Host", b"h")])


def test_fields_with_an_underscore_are_dropped():
    """X_Forwarded_For would become the same environ key as X-Forwarded-For."""
    head = head_of(b"GET / HTTP/1.1\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n")
    assert head.fields == [(b"X-Forwarded-For", b"1.2.3.4")]


@pytest.mark.parametrize(
    "data, status",
    [
        (b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(6)) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nX: " + b"v" * 60 + b"\r\n\r\n", 431),
        (b"GET  / HTTP/1.1\r\n\r\n", 400),  # two spaces
        (b"GET /\r\n\r\n", 400),  # HTTP/0.9
        (b"GET / HTTP/2.0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: x\n\n", 400),  # bare LF
        (b"PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),  # smuggling in 1.0
        (b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400),  # obsolete line folding
        (b"GET /\x01 HTTP/1.1\r\n\r\n", 400),
        (b"G\x00T / HTTP/1.1\r\n\r\n", 400),
    ],
    ids=[
        "line", "fields", "field", "double-space", "http09", "http2", "bare-lf", "te-http10", "two-lengths",
        "length-and-chunked", "chunked-not-last", "folding", "control-in-target", "nul-in-method",
    ],
)  # fmt: skip
def test_bad_heads_are_refused_with_their_status(data, status):
    with pytest.raises(BadHead) as refused:
        head_of(data)
    assert refused.value.status.startswith(str(status))


def test_a_head_that_never_ends_is_414_or_431_by_what_is_long():
    assert refuse_overlong(b"GET /" + b"a" * 200, LIMITS).status.startswith("414")
    assert refuse_overlong(b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 200, LIMITS).status.startswith("431")


class _Conn:
    server = ("127.0.0.1", 8080)
    client = ("127.0.0.1", 40000)


def environ_of(data, client="127.0.0.1"):
    conn = _Conn()
    conn.client = (client, 40000)
    head = head_of(data)
    source = serving.BodySource(None, bytearray(), head.length or 0, max_line=1, max_trailer=1)
    return environ_for(head, connection_environ(conn, CFG), source, Forwarded(CFG))


def test_the_environ_has_what_wsgi_and_flask_read():
    environ = environ_of(
        b"GET /a%2Fb?q=1 HTTP/1.1\r\nHost: h:1\r\nContent-Type: text/plain\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
    )
    assert environ["PATH_INFO"] == "/a/b"  # unquoted, as WSGI has it; RAW_URI keeps the encoding
    assert (environ["RAW_URI"], environ["QUERY_STRING"]) == ("/a%2Fb?q=1", "q=1")
    assert (environ["HTTP_HOST"], environ["CONTENT_TYPE"], environ["HTTP_X_A"]) == ("h:1", "text/plain", "1,2")
    assert (environ["SERVER_PROTOCOL"], environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == (
        "HTTP/1.1",
        "127.0.0.1",
        "http",
    )
    assert "HTTP_CONTENT_TYPE" not in environ


def test_https_only_when_a_trusted_proxy_says_so():
    data = b"GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\n\r\n"
    assert environ_of(data)["wsgi.url_scheme"] == "https"
    assert environ_of(data, client="10.0.0.9")["wsgi.url_scheme"] == "http"


def respond(status, headers, method="GET", version="1.1", body=b""):
    out = bytearray()
    resp = Response(method, version, out, {}, False)
    resp.start_response(status, headers)
    resp.write(body)
    resp.close()
    return bytes(out), resp


def test_a_response_head_is_written_once_with_its_body():
    out, resp = respond("200 OK", [("Content-Length", "3"), ("Content-Type", "text/plain")], body=b"abc")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nContent-Length: 3" in head and body == b"abc"
    assert (resp.sent, resp.should_close()) == (3, False)


def test_no_length_is_chunked_in_http11_and_closes_in_http10():
    out, _ = respond("200 OK", [], body=b"abc")
    assert b"Transfer-Encoding: chunked" in out and out.endswith(b"3\r\nabc\r\n0\r\n\r\n")
    out, resp = respond("200 OK", [], version="1.0", body=b"abc")
    assert b"chunked" not in out and out.endswith(b"\r\n\r\nabc") and resp.should_close()


def test_head_and_204_answers_carry_no_body():
    out, _ = respond("200 OK", [("Content-Length", "3")], method="HEAD", body=b"abc")
    assert out.endswith(b"Content-Length: 3\r\n\r\n")
    out, _ = respond("204 No Content", [("Content-Length", "0")])
    assert b"Content-Length" not in out and out.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    "headers",
    [[("X-Id", "a\r\nSet-Cookie: x=1")], [("X-Id", "a\nb")], [("X-Id", "a\x00")], [("Bad Name", "1")], [("X:", "1")]],
    ids=["crlf", "lf", "nul", "space-in-name", "colon-in-name"],
)
def test_a_field_that_would_inject_another_is_refused(headers):
    with pytest.raises(ValueError):
        respond("200 OK", headers)


def test_hop_by_hop_fields_are_the_servers():
    out, _ = respond("200 OK", [("Connection", "upgrade"), ("Transfer-Encoding", "gzip"), ("Content-Length", "0")])
    assert out.count(b"Connection:") == 1 and b"gzip" not in out
