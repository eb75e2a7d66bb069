"""``wsgi.input`` (pyai.server.body.BodyStream) over a real socket pair and a real BodySource.

The bytes the server read with the head come first; a body with a Content-Length
is counted and ends short when the client closes early; a chunked body is decoded
with the native receive's refusals, and what follows it goes back to the connection.
"""

import socket

import pytest

from pyai.errors import BadFraming, BodyEnded
from pyai.server.body import BodyStream
from pyai.serving import BodySource


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    server.settimeout(10)
    yield server, client
    server.close()
    client.close()


def _stream(sock, ahead, length):
    source = BodySource(sock, bytearray(ahead), length, max_line=8190, max_trailer=8190 * 32)
    return source, BodyStream(source)


def test_a_length_body_reads_what_came_with_the_head_first_and_leaves_the_next_request(pair):
    server, client = pair
    source, stream = _stream(server, b"hel", 11)
    client.sendall(b"lo world" + b"GET / HTTP/1.1\r\n")
    assert stream.read(4) == b"hell"
    assert stream.read() == b"o world"
    assert stream.read() == b""
    assert source.complete
    assert server.recv(100) == b"GET / HTTP/1.1\r\n"  # never read past the body's end


def test_a_length_body_cut_short_reads_short_and_stays_incomplete(pair):
    server, client = pair
    source, stream = _stream(server, b"", 10)
    client.sendall(b"abc")
    client.shutdown(socket.SHUT_WR)
    assert stream.read() == b"abc"
    assert not source.complete


def test_lines_and_iteration(pair):
    server, client = pair
    _, stream = _stream(server, b"one\ntw", 18)
    client.sendall(b"o\nthree\nfour")
    assert stream.readline() == b"one\n"
    assert stream.readline(2) == b"tw"
    assert stream.readline() == b"o\n"
    assert list(stream) == [b"three\n", b"four"]


def test_readlines_stops_past_its_hint(pair):
    server, client = pair
    _, stream = _stream(server, b"a\nb\nc\n", 6)
    assert stream.readlines(3) == [b"a\n", b"b\n"]
    assert stream.readlines() == [b"c\n"]


def test_a_chunked_body_is_decoded_and_what_follows_goes_back(pair):
    server, client = pair
    source, stream = _stream(server, b"5\r\nhel", None)
    client.sendall(b"lo\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nNEXT")
    assert stream.read() == b"hello world"
    assert source.complete
    assert bytes(source.ahead) == b"NEXT"


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n", b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"],
    ids=["bad-hex", "missing-crlf", "oversized"],
)
def test_a_bad_chunked_framing_is_refused(pair, body):
    server, client = pair
    source, stream = _stream(server, b"", None)
    client.sendall(body)
    with pytest.raises(BadFraming):
        stream.read()
    assert not source.complete


def test_a_bad_trailer_is_refused(pair):
    server, client = pair
    _, stream = _stream(server, b"5\r\nhello\r\n0\r\nnot a header\r\n\r\n", None)
    with pytest.raises(BadFraming):
        stream.read()


@pytest.mark.parametrize(
    "body, error", [(b"5\r\nhel", BodyEnded), (b"5\r\nhello", BadFraming), (b"5\r\nhello\r\n0\r\n", BadFraming)]
)
def test_a_chunked_body_cut_short_is_refused(pair, body, error):
    server, client = pair
    _, stream = _stream(server, b"", None)
    client.sendall(body)
    client.shutdown(socket.SHUT_WR)
    with pytest.raises(error):
        stream.read()


def test_a_body_the_app_receives_itself_is_not_read_again(pair):
    server, _ = pair
    source, stream = _stream(server, b"abc", 3)
    source.reader = "app"
    with pytest.raises(RuntimeError):
        stream.read()
