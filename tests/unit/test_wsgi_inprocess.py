"""The WSGI app called in this process, no server: the answers of the compatible endpoints.

Only the public surface is used: ``create_app(config)`` gives a WSGI callable,
called with a hand-built environ (as a plain WSGI server would build it: no
gunicorn socket, the body in a ``BytesIO``).  The end-to-end tests check the
same answers through gunicorn; these are the fast first line.
"""

import io
import json
import os
import sys

import pytest
from server import assert_head_not_found

from pyai.config import load
from pyai.web.app import create_app

DATA = bytes(range(256)) * 4 + b"tail"  # 1028 bytes
ERROR_KEYS = {"status", "message", "traceback", "version"}


class Answer:
    """What the app answered: status code and reason, headers (any case), body bytes."""

    def __init__(self, status_line, headers, body):
        code, _, self.reason = status_line.partition(" ")
        self.status = int(code)
        self.header_list = headers
        self.headers = {name.lower(): value for name, value in headers}
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        assert self.header("Content-Type").startswith("application/json"), self.header_list
        return json.loads(self.body)

    def __repr__(self):
        return f"<Answer {self.status} {self.reason} {self.header_list} {self.body[:200]!r}>"


def call(app, method, path, body=None, headers=(), query=""):
    """One request through the WSGI interface; the body (if any) as ``wsgi.input`` with its CONTENT_LENGTH."""
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8080",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body or b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if body is not None:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in headers:
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    started = []

    def start_response(status, response_headers, exc_info=None):
        started.append((status, list(response_headers)))

    result = app(environ, start_response)
    try:
        body_out = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    assert len(started) == 1, started
    return Answer(started[0][0], started[0][1], body_out)


def assert_error(answer, status):
    """The error contract, as tests/server.py checks it over HTTP: status, the four keys, no traceback."""
    assert answer.status == status, answer
    document = answer.json()
    assert set(document) >= ERROR_KEYS, document
    assert document["status"].split(" ", 1)[0] == str(status), document
    assert isinstance(document["message"], str) and document["message"], document
    assert "Traceback (most recent" not in answer.body.decode("utf-8", "replace")
    return document


@pytest.fixture
def prefix(tmp_path):
    return tmp_path / "prefix"


@pytest.fixture
def app(tmp_path, prefix):
    """The app over a fresh posix archive; configured by this environ alone (HOME has no INI file)."""
    home = tmp_path / "home"
    home.mkdir()
    environ = {"PAI_PREFIX": str(prefix), "PAI_BACKEND_TYPE": "posix", "HOME": str(home)}
    return create_app(load(environ=environ))


@pytest.fixture
def stored(app):
    """The id of DATA, stored by a PUT."""
    answer = call(app, "PUT", "/stored-1", DATA)
    assert answer.status == 201, answer
    return "stored-1"


def test_root(app):
    answer = call(app, "GET", "/")
    assert answer.status == 200
    assert answer.json() == {"message": "Pacifica Archive Interface Up and Running"}


def test_get_missing_is_404_json(app):
    document = assert_error(call(app, "GET", "/nothing-here"), 404)
    assert document["status"] == "404 Not Found"
    assert isinstance(document["version"], str) and document["version"]


def test_head_missing_is_404_with_status_headers(app, prefix):
    answer = call(app, "HEAD", "/nothing-here")
    assert answer.status == 404
    assert answer.body == b""
    assert_head_not_found(answer.header)
    assert answer.header("Content-Length") == "0"
    assert not (prefix / "nothing-here").exists()


def test_put_stores_and_answers_201(app, prefix):
    answer = call(app, "PUT", "/put-1", DATA, headers=[("Content-Type", "application/octet-stream")])
    assert answer.status == 201, answer
    assert answer.json() == {"message": "File added to archive", "total_bytes": len(DATA)}
    assert answer.header("Content-Length") == str(len(answer.body))
    assert (prefix / "put-1").read_bytes() == DATA


def test_put_twice_is_refused(app, stored):
    assert_error(call(app, "PUT", f"/{stored}", b"other"), 409)
    assert call(app, "GET", f"/{stored}").body == DATA


def test_get_after_put(app, stored):
    answer = call(app, "GET", f"/{stored}")
    assert answer.status == 200, answer
    assert answer.body == DATA
    assert answer.header("Content-Type") == "application/octet-stream"
    assert answer.header("Content-Length") == str(len(DATA))
    assert answer.header("Accept-Ranges") == "bytes"
    assert answer.header("ETag")
    assert answer.header("Last-Modified")


def test_head_after_put(app, stored, prefix):
    answer = call(app, "HEAD", f"/{stored}")
    assert answer.status == 204, answer
    assert answer.body == b""
    path = prefix / stored
    assert answer.header("X-Pacifica-Messsage") == "File was found"
    assert answer.header("X-Pacifica-File") == str(path)
    assert answer.header("X-Content-Length") == str(len(DATA))
    assert abs(float(answer.header("Last-Modified")) - path.stat().st_mtime) < 1e-3
    assert answer.header("X-Pacifica-Bytes-Per-Level") == f"({len(DATA)},)"
    assert answer.header("X-Pacifica-File-Storage-Media") == "disk"
    assert answer.header("Content-Type").startswith("application/json")


def test_range_is_206(app, stored):
    answer = call(app, "GET", f"/{stored}", headers=[("Range", "bytes=10-19")])
    assert answer.status == 206, answer
    assert answer.body == DATA[10:20]
    assert answer.header("Content-Range") == f"bytes 10-19/{len(DATA)}"
    assert answer.header("Content-Length") == "10"
    assert answer.header("Content-Type") == "application/octet-stream"


def test_byte_range_parameter(app, stored):
    answer = call(app, "GET", f"/{stored}", query="byte_range=3-10")
    assert answer.status == 200, answer
    assert answer.body == DATA[3:10]


def test_range_past_the_end_is_416(app, stored):
    answer = call(app, "GET", f"/{stored}", headers=[("Range", f"bytes={len(DATA)}-")])
    assert_error(answer, 416)
    assert answer.header("Content-Range") == f"bytes */{len(DATA)}"
    assert DATA not in answer.body


def test_malformed_range_is_400(app, stored):
    assert_error(call(app, "GET", f"/{stored}", headers=[("Range", "bytes=x-y")]), 400)


def test_delete(app, stored, prefix):
    answer = call(app, "DELETE", f"/{stored}")
    assert answer.status == 200, answer
    assert answer.json() == {"message": "File Removed", "file": stored}
    assert not (prefix / stored).exists()
    assert call(app, "HEAD", f"/{stored}").status == 404
    assert_error(call(app, "GET", f"/{stored}"), 404)


def test_delete_missing_is_404(app):
    assert_error(call(app, "DELETE", "/nothing-here"), 404)


def test_post_stages(app, stored):
    answer = call(app, "POST", f"/{stored}")
    assert answer.status == 200, answer
    assert answer.json() == {"message": "File was staged", "file": stored}


def test_post_missing_is_404(app, prefix):
    assert_error(call(app, "POST", "/nothing-here"), 404)
    assert not (prefix / "nothing-here").exists()


@pytest.mark.parametrize("method", ["MKCOL", "LOCK"])  # PROPFIND is served (WebDAV stat)
def test_unknown_method_is_405(app, stored, prefix, method):
    answer = call(app, method, f"/{stored}")
    assert_error(answer, 405)
    assert answer.header("Allow")
    assert (prefix / stored).read_bytes() == DATA


def test_copy_is_501(app, stored, prefix):
    """No third-party copy: 501, on which gfal2 tries its next copy mode (a 405 stops it)."""
    answer = call(app, "COPY", f"/{stored}")
    assert_error(answer, 501)
    assert (prefix / stored).read_bytes() == DATA


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"pat": "/x"}', b"[1, 2]", b""])
def test_patch_bad_body_is_400(app, prefix, body):
    answer = call(app, "PATCH", "/patched-1", body, headers=[("Content-Type", "application/json")])
    assert_error(answer, 400)
    assert not (prefix / "patched-1").exists()


def test_invalid_id_is_400(app):
    assert_error(call(app, "GET", "/.hidden"), 400)


# -- the gate: one route table, one auth check, one 405, one connection policy ------------

ID_METHODS = "GET, HEAD, PUT, POST, PATCH, DELETE, PROPFIND"
RW_TOKEN = "rw-token-0123456789abcdef"
RO_TOKEN = "ro-token-0123456789abcdef"


@pytest.mark.parametrize(
    ("path", "allow"),
    [("/", "GET, HEAD, PROPFIND"), ("/openapi.json", "GET, HEAD"), ("/some-id", ID_METHODS), ("/a/b", ID_METHODS)],
)
def test_allow_comes_from_the_route(app, path, allow):
    options = call(app, "OPTIONS", path)
    assert (options.status, options.header("Allow"), options.body) == (200, allow, b""), options
    refused = call(app, "TRACE", path)
    assert_error(refused, 405)
    assert refused.header("Allow") == allow


@pytest.fixture
def locked_app(tmp_path, prefix):
    """The app with bearer tokens required."""
    home = tmp_path / "home"
    home.mkdir()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"rw {RW_TOKEN}\nro {RO_TOKEN}\n")
    tokens.chmod(0o600)
    environ = {
        "PAI_PREFIX": str(prefix),
        "PAI_BACKEND_TYPE": "posix",
        "HOME": str(home),
        "PAI_AUTH_TOKENS_FILE": str(tokens),
    }
    return create_app(load(environ=environ))


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/openapi.json"), ("GET", "/x"), ("OPTIONS", "/x"), ("TRACE", "/"), ("DELETE", "/x")]
)
def test_every_route_asks_for_the_token(locked_app, method, path):
    answer = call(locked_app, method, path)
    assert_error(answer, 401)
    assert answer.header("WWW-Authenticate").startswith("Bearer")


def test_the_health_check_is_open_and_a_token_opens_the_rest(locked_app, prefix):
    assert call(locked_app, "GET", "/").status == 200
    bearer = [("Authorization", f"Bearer {RW_TOKEN}")]
    assert call(locked_app, "PUT", "/x", DATA, headers=bearer).status == 201
    assert call(locked_app, "GET", "/openapi.json", headers=bearer).status == 200
    read_only = [("Authorization", f"Bearer {RO_TOKEN}")]
    assert_error(call(locked_app, "DELETE", "/x", headers=read_only), 403)
    assert (prefix / "x").read_bytes() == DATA


def test_a_refused_body_closes_the_connection(locked_app):
    """The body of a refused PUT stays unread: the gate asks the server to close after the answer."""
    closed = []

    class Server:  # gunicorn's response object: start_response is its bound method
        def force_close(self):
            closed.append(True)

        def start_response(self, status, headers, exc_info=None):
            self.status = status

    server = Server()
    environ = {"REQUEST_METHOD": "PUT", "PATH_INFO": "/x", "CONTENT_LENGTH": "4", "wsgi.input": io.BytesIO(b"abcd")}
    body = b"".join(locked_app(environ, server.start_response))
    assert server.status.startswith("401") and json.loads(body)["status"] == "401 Unauthorized"
    assert closed == [True]


# --- plain requests (pyai.serving): answered without an environ ---------------------------------


def test_a_plain_get_and_head_are_answered_as_through_the_app(app, stored):
    from pyai.ops.record import Record

    for method in ("GET", "HEAD"):
        record = Record(method, f"/{stored}")
        status, code, headers, body = app.answer_plain(method, f"/{stored}".encode(), record)
        through = call(app, method, f"/{stored}")
        assert (code, headers) == (through.status, through.header_list)
        assert status.split(" ", 1)[0] == str(code)
        assert body == (DATA if method == "GET" else b"") == through.body
        assert (record.ident, record.medium) == (stored, "disk") and record.digest.startswith("sha256:")
    assert record.kind is None  # a HEAD is no transfer


def test_a_plain_get_of_a_large_file_hands_the_server_the_file(app):
    from pyai.ops.record import Record

    data = bytes(range(256)) * 4096  # 1 MiB: sent with sendfile
    assert call(app, "PUT", "/large-1", data).status == 201
    record = Record("GET", "/large-1")
    status, code, headers, body = app.answer_plain("GET", b"/large-1", record)
    try:
        assert (code, dict(headers)["Content-Length"]) == (200, str(len(data)))
        assert os.pread(body.fileno(), len(data) + 1, 0) == data
        assert record.kind == "download"  # counted in progress until the exchange ends
    finally:
        body.close()


def test_what_only_the_full_path_answers(app, stored, tmp_path, prefix):
    from pyai.ops.record import Record

    for target in (
        b"/missing-1",  # a 404: the error answer is the gate's
        b"/",
        b"/openapi.json",
        f"/{stored}?byte_range=0-1".encode(),
        b"/stored%2D1",
        f"/{stored}/x".encode(),
        b"http://h/" + stored.encode(),
        b"/.hidden",  # refused by the id rules: a 400 from the full path
    ):
        record = Record("GET", target.decode())
        assert app.answer_plain("GET", target, record) is None, target
        assert record.kind is None  # nothing left counted for a request answered again in full
    home = tmp_path / "home"
    tokens = tmp_path / "tokens"
    tokens.write_text("ro a-token-for-the-plain-test-0001 reader\n")
    tokens.chmod(0o600)
    environ = {"PAI_PREFIX": str(prefix), "PAI_BACKEND_TYPE": "posix", "HOME": str(home)}
    guarded = create_app(load(environ={**environ, "PAI_AUTH_TOKENS_FILE": str(tokens)}))
    assert guarded.answer_plain("GET", f"/{stored}".encode(), Record("GET")) is None  # the token is the gate's
