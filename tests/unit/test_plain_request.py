"""Plain request heads recognised in C (``pyai.native.plain_request``, picohttpparser): a head it
calls plain is one the full path's parser (llhttp, ``pyai.server.head``) reads the same way, ending
at the same byte, and everything else is left to that parser.  Also ``read_plain`` (the receive
before it) and ``format_answer`` (every answer's head), from C and pure Python."""

import random
import socket
import types

import pytest

from pyai import serving
from pyai.native import _cimpl, _pyimpl
from pyai.server.connection import _head_end
from pyai.server.head import BadHead, Limits, parse

LIMITS = Limits(types.SimpleNamespace(limit_request_line=0, limit_request_fields=0, limit_request_field_size=0))

# What curl, wget, wrk, requests and hey send for a GET or HEAD of a file.
CLIENTS = [
    b"GET /1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    b"GET /file.dat HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: Wget/1.21.3\r\nAccept: */*\r\n"
    b"Accept-Encoding: identity\r\nConnection: Keep-Alive\r\n\r\n",
    b"GET /1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    b"HEAD /1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: python-requests/2.31.0\r\n"
    b"Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
    b"GET /x_y-z.1~ HTTP/1.1\r\nHost: h\r\nUser-Agent: hey/0.0.1\r\nContent-Type: text/html\r\n\r\n",
    b"GET /1 HTTP/1.0\r\nHost: h\r\n\r\n",
    b"HEAD /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /1 HTTP/1.1\r\nConnection: close\r\n\r\n",
]

# Bytes that change how a head is read: line ends, separators, what a target may not hold,
# controls, DEL, a byte past ASCII, and letters of the fields and versions.
MUTATIONS = [b"\r", b"\n", b" ", b"\t", b":", b"/", b"%", b"?", b"#", b"\x00", b"\x7f", b"\x80", b"_", b",", b"a"]
MUTATIONS += [
    b"E",
    b"0",
    b"2",
    b"9",
    b"\r\n",
    b"\r\n\r\n",
    b"\n\n",
    b"Content-Length: 5\r\n",
    b"Transfer-Encoding: chunked\r\n",
]
MUTATIONS += [b"Host: again\r\n", b" folded\r\n", b"X-Other: 1\r\n", b"Connection: close\r\n", b"Range: bytes=0-1\r\n"]


@pytest.fixture(autouse=True)
def default_limits():
    _cimpl.plain_limits(LIMITS.line, LIMITS.fields, LIMITS.field)
    yield
    _cimpl.plain_limits(LIMITS.line, LIMITS.fields, LIMITS.field)


def test_the_parser_is_loaded():
    # make installs libh2o-evloop0.13: without it the plain path is off and these tests would prove nothing
    assert _cimpl.plain_parser() is not None


@pytest.mark.parametrize("head", CLIENTS)
def test_what_clients_send_is_plain_and_read_as_the_full_path_reads_it(head):
    assert_agrees(head, expect_plain=True)


def test_the_fields_are_exactly_the_plain_ones():
    for name in sorted(serving.PLAIN_FIELDS):
        for spelled in (name, name.upper(), name.title()):
            assert plain(b"GET /1 HTTP/1.1\r\n" + spelled + b": v\r\n\r\n") is not None, spelled
    for name in (b"Range", b"If-None-Match", b"Want-Digest", b"Authorization", b"X-Forwarded-For", b"Cookie"):
        assert plain(b"GET /1 HTTP/1.1\r\n" + name + b": v\r\n\r\n") is None, name
    # prefixes, longer names and near misses of the plain names
    for name in (b"Hos", b"Hostx", b"Accept-Language", b"Accept-Encodin", b"Content-Length", b"Connectio"):
        assert plain(b"GET /1 HTTP/1.1\r\n" + name + b": v\r\n\r\n") is None, name


@pytest.mark.parametrize(
    "head",
    [
        b"POST /1 HTTP/1.1\r\n\r\n",
        b"PUT /1 HTTP/1.1\r\n\r\n",
        b"get /1 HTTP/1.1\r\n\r\n",
        b"GET /a/b HTTP/1.1\r\n\r\n",
        b"GET /a%2Fb HTTP/1.1\r\n\r\n",
        b"GET /1?x=1 HTTP/1.1\r\n\r\n",
        b"GET /1#f HTTP/1.1\r\n\r\n",
        b"GET http://h/1 HTTP/1.1\r\n\r\n",
        b"GET * HTTP/1.1\r\n\r\n",
        b"GET /\xe9 HTTP/1.1\r\n\r\n",
        b"GET  /1 HTTP/1.1\r\n\r\n",
        b"GET /1  HTTP/1.1\r\n\r\n",
        b"GET /1 HTTP/1.1 \r\n\r\n",
        b"GET /1 HTTP/1.2\r\n\r\n",
        b"GET /1 HTTP/2.0\r\n\r\n",
        b"GET /1 HTTP/1.1\n\n",
        b"GET /1 HTTP/1.1\r\nHost: h\n\r\n",
        b"\r\nGET /1 HTTP/1.1\r\n\r\n",
        b"GET /1 HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
        b"GET /1 HTTP/1.1\r\nHost : h\r\n\r\n",
        b"GET /1 HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
        b"GET /1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"GET /1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /1 HTTP/1.1\r\nHost: h\r\n",  # incomplete
        b"GET /1 HTT",
        b"",
    ],
)
def test_anything_else_is_left_to_the_full_path(head):
    assert plain(head) is None


def test_connection_tokens_decide_keep_alive_as_the_full_path_does():
    for version in (b"1.0", b"1.1"):
        for fields in ([], [b"close"], [b"keep-alive"], [b"Keep-Alive, TE"], [b"close", b"keep-alive"], [b"upgrade"]):
            head = b"GET /1 HTTP/" + version + b"\r\n" + b"".join(b"Connection: " + f + b"\r\n" for f in fields)
            assert_agrees(head + b"\r\n", expect_plain=True)


def test_the_head_limits_hold():
    head = b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: " + b"h" * 50 + b"\r\nAccept: */*\r\nAccept: */*\r\n\r\n"
    assert plain(head) is not None
    _cimpl.plain_limits(100, 100, 8190)  # the request line is 114 bytes
    assert plain(head) is None
    _cimpl.plain_limits(8190, 2, 8190)  # three fields
    assert plain(head) is None
    _cimpl.plain_limits(8190, 100, 50)  # Host's line is 56 bytes
    assert plain(head) is None
    _cimpl.plain_limits(114, 3, 56)  # each exactly at its limit
    assert plain(head) is not None
    many = b"GET /1 HTTP/1.1\r\n" + b"Accept: */*\r\n" * 33 + b"\r\n"  # more than the C side takes at once
    assert plain(many) is None


def test_a_pipelined_request_stays_in_the_buffer():
    first, second = CLIENTS[0], CLIENTS[3]
    buffer = bytearray(first + second + b"GET /par")
    length, *_ = _cimpl.plain_request(buffer)
    assert length == len(first)
    assert buffer == first + second + b"GET /par"  # recognising takes nothing out
    assert _cimpl.plain_request(bytearray(buffer[length:]))[0] == len(second)


def test_the_pure_build_has_no_plain_heads():
    assert _pyimpl.plain_parser() is None
    assert _pyimpl.plain_request(bytearray(CLIENTS[0])) is None


def test_mutated_heads_are_plain_only_where_the_full_path_agrees():
    """Thousands of heads one to three edits away from a client's: whenever C calls one plain,
    llhttp reads the same method, target, version and persistence, ends the head at the same
    byte, and sees no field outside the plain ones."""
    rnd = random.Random(24)
    plain_seen = 0
    for _ in range(20000):
        head = bytearray(rnd.choice(CLIENTS))
        for _ in range(rnd.randint(1, 3)):
            at = rnd.randrange(len(head) + 1)
            edit = rnd.random()
            if edit < 0.4:
                head[at:at] = rnd.choice(MUTATIONS)
            elif edit < 0.7:
                del head[at : at + rnd.randint(1, 4)]
            else:
                head[at : at + 1] = rnd.choice(MUTATIONS)
        plain_seen += assert_agrees(bytes(head) + rnd.choice([b"", b"GET /next HTTP/1.1\r\n\r\n", b"\r\n"]))
    assert plain_seen > 1000  # the edits left enough heads plain for the comparison to mean something


def plain(head):
    return _cimpl.plain_request(bytearray(head))


def assert_agrees(head, expect_plain=None):
    """True when ``head`` is plain to C, after checking the full path reads it the same way."""
    got = plain(head)
    if expect_plain is not None:
        assert (got is not None) == expect_plain, head
    if got is None:
        return False
    length, method, target, keep_alive, version = got
    assert length == _head_end(bytearray(head)), head  # both frame the request alike
    try:
        full = parse(head[:length], LIMITS)
    except BadHead as exc:
        raise AssertionError(f"C called {head!r} plain; the full path refuses it: {exc.message}") from None
    assert (full.method, full.target, full.version, full.keep_alive) == (method, target, version, keep_alive), head
    assert (full.path, full.query, full.length, full.chunked, full.expect) == (target, b"", None, False, False), head
    assert all(name.lower() in serving.PLAIN_FIELDS for name, _ in full.fields), head
    return True


@pytest.mark.parametrize(
    "args",
    [
        ("200 OK", [("Content-Length", "3"), ("ETag", '"1-3-5"')], False, b"abc"),
        ("200 OK", [("Content-Length", "3")], True, b"abc"),
        ("200 OK", [("X-Note", "caf\xe9")], False, b"no length: ends with the connection"),
        ("204 No Content", [("X-Pacifica-Status", "disk"), ("Content-Type", "application/json")], False, None),
        ("404 Not Found", [], False, None),
        ("200 OK", [("Content-Length", "0")], False, b""),
    ],
)
def test_an_answer_is_formatted_alike_in_c_and_python(args):
    status, headers, must_close, body = args
    c = _cimpl.format_answer(status, headers, must_close, "pyai", "Mon, 07 Dec 2026 01:02:03 GMT", body)
    python = _pyimpl.format_answer(status, headers, must_close, "pyai", "Mon, 07 Dec 2026 01:02:03 GMT", body)
    assert c == python
    data, closes = c
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[:4] == [
        b"HTTP/1.1 " + status.encode(),
        b"Server: pyai",
        b"Date: Mon, 07 Dec 2026 01:02:03 GMT",
        b"Connection: close" if closes else b"Connection: keep-alive",
    ]
    assert head.split(b"\r\n")[4:] == [f"{name}: {value}".encode("latin-1") for name, value in headers]
    assert rest == (body or b"")
    assert closes == (must_close or (body is not None and not any(n == "Content-Length" for n, _ in headers)))


def test_a_field_past_latin_1_is_refused_alike():
    for native in (_cimpl, _pyimpl):
        with pytest.raises(UnicodeEncodeError):
            native.format_answer("200 OK", [("X-Name", "\u20ac")], False, "pyai", "date", None)


@pytest.mark.parametrize("native", [_cimpl, _pyimpl], ids=["c", "python"])
def test_read_plain_takes_what_the_socket_holds_without_waiting(native):
    a, b = socket.socketpair()
    with a, b:
        head = bytearray()
        assert native.read_plain(a.fileno(), head) is None  # nothing yet: no wait, nothing added
        assert head == b""
        b.sendall(CLIENTS[0][:20])
        assert native.read_plain(a.fileno(), head) is None  # a part
        b.sendall(CLIENTS[0][20:] + b"GET /2")
        got = native.read_plain(a.fileno(), head)
        assert head == CLIENTS[0] + b"GET /2"
        if native is _cimpl:
            assert got == (len(CLIENTS[0]), "GET", b"/1", True, "1.1")
        else:
            assert got is None  # the pure build has no plain heads
        b.close()
        assert native.read_plain(a.fileno(), head) is None  # the peer closed: the caller's read says so
        assert head == CLIENTS[0] + b"GET /2"
