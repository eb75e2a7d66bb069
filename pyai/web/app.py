"""The WSGI application: routing and HTTP semantics, nothing about storage.

``create_app(config)`` builds the app around one Archive: plain WSGI handlers
for GET, HEAD and PUT of an id in front (``data_first``, the hot path), Flask
for the rest.  Every path is ``/<id>``, read from the raw request URI so an
encoded ``/`` can never split or escape an id.  Every error leaves as a JSON
body (see ``error_answer``).
"""

import json
import logging
from urllib.parse import parse_qsl, unquote

from flask import Flask, Response, current_app, request
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES

from pyai import __version__
from pyai.web import auth
from pyai.web import parking
from pyai.archive.service import Archive, status_headers
from pyai.backends import create_backend
from pyai.config import load as load_config
from pyai.web.dates import http_date
from pyai.archive.checksums import expected_digests
from pyai.archive.checksums import response_headers as digest_headers
from pyai.errors import NO_SPACE, STORAGE_UNREACHABLE, TOO_LARGE, ArchiveError, BadRequest, IncompleteBody, NotFound, RangeNotSatisfiable
from pyai.web.openapi import RESERVED_ID, load_description
from pyai.web.ranges import parse_byte_range, parse_range_header
from pyai.web.receive import CLOSE_CONNECTION, RequestBody, abandon_body

try:
    from gunicorn.http.errors import NoMoreData as _BodyEnded
    from gunicorn.http.errors import ParseException as _BodyFramingError
except ImportError:  # pragma: no cover - another WSGI server
    _BodyFramingError = _BodyEnded = ()

log = logging.getLogger("pyai")
METHODS = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"]
SEND_BLOCK = 1024 * 1024
INLINE_MAX = 16 * 1024  # bodies up to this size are read and sent from memory (64 KiB measured faster with sendfile)
MAX_PATCH_BODY = 64 * 1024
# How long a thread waits for an upload's next bytes before the upload is parked
# in the worker's poller: longer than the gaps of a healthy stream, short enough
# that slow clients hand their thread back at once.
PATIENCE = 0.1


def create_app(config=None):
    """The WSGI app for ``config`` (loaded from file and environment when None)."""
    config = config or load_config()
    archive = Archive(config, create_backend(config))
    app = Flask("pyai")
    app.url_map.merge_slashes = False
    app.config["pyai"] = config

    def root():
        return json_response(200, {"message": "Pacifica Archive Interface Up and Running"})

    def by_id(rest):
        # GET, HEAD and PUT of an id never get here: ``data_first`` answers them.
        ident = id_from_uri(request.environ)
        archive.check()
        method = request.method
        if method == "POST":
            on_disk = archive.stage(ident)
            message = "File was staged" if on_disk else "File is being staged"
            return json_response(200 if on_disk else 202, {"message": message, "file": ident})
        if method == "PATCH":
            archive.move(ident, patch_source())
            return json_response(200, {"message": "File Moved Successfully"})
        archive.delete(ident)  # DELETE
        return json_response(200, {"message": "File Removed", "file": ident})

    description = load_description()

    def openapi():
        # The name is reserved whatever the method: a file PUT under it could never be read back.
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(valid_methods=["GET", "HEAD"])
        return Response(description, content_type="application/json")

    app.add_url_rule("/", "root", root, methods=["GET", "HEAD"])
    app.add_url_rule("/" + RESERVED_ID, "openapi", openapi, methods=METHODS)
    app.add_url_rule("/<path:rest>", "by_id", by_id, methods=METHODS, strict_slashes=False)
    app.register_error_handler(Exception, error_response)
    tokens = auth.install(app, config)
    app.wsgi_app = data_first(archive, config, closing_when_asked(app.wsgi_app), fixed_paths(app), tokens)
    return app


def fixed_paths(app):
    """The paths Flask routes itself (``/``...): never taken for ids."""
    return frozenset(rule.rule for rule in app.url_map.iter_rules() if "<" not in rule.rule)


def data_first(archive, config, flask_app, reserved, tokens=None):
    """Answer GET, HEAD and PUT of an id as plain WSGI, before Flask.

    They move the data and make up nearly all of an archive's requests, and
    for a small file Flask's request context and response objects cost more
    than everything pyai does for it (measured in-process: a HEAD 105 us
    through Flask, 31 us here).  POST, PATCH, DELETE and ``/`` go on to Flask.
    With authentication on (``tokens``), they check the token first, as
    Flask's ``before_request`` does for the rest.  Under pyai's worker a PUT
    is answered by a generator that yields while its client is slow (see
    ``pyai.web.parking``), so the upload waits in the poller, not in a thread.
    """
    handlers = {"GET": get_file, "HEAD": head_file, "PUT": put_file}

    def admitted(environ):
        """The id of a request that may go on: authorized, well-formed, storage up."""
        if tokens is not None:
            auth.check(tokens, environ["REQUEST_METHOD"], request_path(environ), environ)
        ident = id_from_uri(environ)
        archive.check()
        return ident

    def failed(environ, exc):
        status, document, headers = error_answer(exc, environ["REQUEST_METHOD"], request_path(environ), config)
        return json_parts(status, document, headers)

    def answer(environ, start_response, parts):
        status, headers, body = parts
        if environ.get(CLOSE_CONNECTION):
            close_after_response(start_response)
        start_response(STATUS_LINES[status], list(headers.items()))
        if environ["REQUEST_METHOD"] == "HEAD":
            return []  # the headers, Content-Length included, are GET's; the body is not sent
        return body

    def parked_put(environ, start_response):
        try:
            ident = admitted(environ)
            parts = yield from put_steps(archive, ident, environ, config)
        except Exception as exc:  # noqa: BLE001 - every failure becomes its JSON answer
            parts = failed(environ, exc)
        yield from answer(environ, start_response, parts)

    def app(environ, start_response):
        method = environ["REQUEST_METHOD"]
        handler = handlers.get(method)
        if handler is None or environ.get("PATH_INFO", "/") in reserved:
            return flask_app(environ, start_response)
        if method == "PUT" and environ.get(parking.CAN_PARK):
            return parked_put(environ, start_response)
        try:
            parts = handler(archive, admitted(environ), environ, config)
        except Exception as exc:  # noqa: BLE001 - every failure becomes its JSON answer
            parts = failed(environ, exc)
        return answer(environ, start_response, parts)

    return app


def close_after_response(start_response):
    """Have gunicorn close the connection after this response and say so in it."""
    force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
    if force_close is not None:
        force_close()


def closing_when_asked(wsgi_app):
    """Close the connection after a Flask answer too when a check asked for it (``environ[CLOSE_CONNECTION]``)."""

    def app(environ, start_response):
        def start(status, headers, exc_info=None):
            if environ.get(CLOSE_CONNECTION):
                close_after_response(start_response)
            return start_response(status, headers, exc_info)

        return wsgi_app(environ, start)

    return app


def id_from_uri(environ):
    """The id: the one path segment of the raw URI, percent-decoded after splitting.

    Splitting the raw URI keeps an encoded ``/`` inside the id (where it is
    refused) instead of letting it make a second segment.  The result must
    still name the path that routing and authentication saw (PATH_INFO): a
    target they read differently (a fragment, an odd absolute form) is 400.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw is None:  # a server that only gives the decoded path: '/' splits already
        segment = environ.get("PATH_INFO", "")[1:]
    else:
        if "#" in raw:
            raise BadRequest("a request target cannot hold a fragment ('#')", detail="fragment in request target")
        path = raw.split("?", 1)[0]
        if "://" in path:  # absolute-form request target
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        segment = path[1:]
    if "/" in segment:
        raise NotFound("the archive has no nested paths: a URL is /<id>", detail="path has extra segments")
    # undecodable bytes become U+FFFD, which no id contains: a 400, not a 500
    ident = unquote(segment, errors="replace") if "%" in segment else segment
    if raw is not None and "/" + ident != request_path(environ):
        raise BadRequest("the request target is ambiguous", detail="target does not match its path")
    return ident


def request_path(environ):
    """The decoded path, as Flask's ``request.path`` gives it (WSGI hands it over as latin-1)."""
    return environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")


def head_file(archive, ident, environ, config):
    """HEAD: 204 with the status headers cartd reads, or 404 with the same headers saying so."""
    status = archive.status(ident)
    headers = status_headers(status)
    if status:
        headers.update(digest_headers(archive.checksum(status.path)))
    headers["Content-Type"] = "application/json"
    if status is None:
        headers["Content-Length"] = "0"
    return (204 if status else 404), headers, []


def get_file(archive, ident, environ, config):
    """GET: the whole file, a ``byte_range`` of it, or the part a Range header asks for."""
    reader = archive.open(ident)
    try:
        size = reader.size
        start, stop, status = 0, size, 200
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": reader.etag,
            "Last-Modified": http_date(reader.mtime),
        }
        byte_range = query_value(environ, "byte_range")
        if byte_range is not None:
            start, stop = parse_byte_range(byte_range, size)
        elif "HTTP_RANGE" in environ and if_range_holds(environ.get("HTTP_IF_RANGE"), reader):
            chosen = parse_range_header(environ["HTTP_RANGE"], size)
            if chosen is not None:
                start, stop = chosen
                status = 206
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        headers.update(digest_headers(reader.checksum(), partial=status == 206 or (start, stop) != (0, size)))
        if start:
            reader.seek(start)
        headers["Content-Length"] = str(stop - start)
        headers["Content-Type"] = "application/octet-stream"
        if stop - start <= INLINE_MAX:
            # A small body costs less as one read than as a sendfile set-up.
            body = [reader.read(stop - start)]
            reader.close()
        else:
            body = file_body(environ, reader, stop - start)
    except BaseException:
        reader.close()
        raise
    return status, headers, body


def query_value(environ, name):
    """The first value of a query parameter, or None (no query string: no parsing)."""
    query = environ.get("QUERY_STRING")
    if not query:
        return None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value
    return None


def if_range_holds(condition, reader):
    """True when there is no If-Range or it still names this file (RFC 9110 13.1.5)."""
    if condition is None:
        return True
    if condition.startswith('"') or condition.startswith("W/"):
        return condition == reader.etag
    return condition == http_date(reader.mtime)


def file_body(environ, reader, length):
    """The response body: ``length`` bytes from the reader's offset, in the server's
    file wrapper when it has one (gunicorn then sends them with sendfile)."""
    body = FileRange(reader, length)
    wrapper = environ.get("wsgi.file_wrapper")
    return wrapper(body, SEND_BLOCK) if wrapper is not None else body


class FileRange:
    """``length`` bytes of an open file from its current offset.

    A file-like object for ``wsgi.file_wrapper``: gunicorn sends from
    ``fileno()`` at the current offset for Content-Length bytes, and when it
    cannot (no sendfile, TLS) it iterates ``read`` -- which stops at the end of
    the range instead of reading the rest of a large file.  Also its own
    iterable, for servers without a file wrapper.
    """

    def __init__(self, reader, length):
        self.reader = reader
        self.left = length

    def fileno(self):
        return self.reader.fileno()

    def read(self, size=-1):
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.reader.read(size) if size else b""
        self.left -= len(data)
        return data

    def __iter__(self):
        while True:
            data = self.read(SEND_BLOCK)
            if not data:
                return
            yield data

    def close(self):
        self.reader.close()


def put_file(archive, ident, environ, config):
    """PUT: store the body under the id (201), or refuse it and close the connection."""
    return parking.run_to_end(put_steps(archive, ident, environ, config))


def put_steps(archive, ident, environ, config):
    """PUT as a generator: yields a ``parking.Wait`` while the client is slow
    (only where the worker can park it), returns the answer's parts."""
    try:
        expected = expected_digests(EnvironHeaders(environ))
        body = RequestBody(
            environ, config.max_body_size, config.receive_timeout or None, archive.wanted_algorithms(expected),
            min_rate=config.min_body_rate,
        )
        patience = PATIENCE if environ.get(parking.CAN_PARK) and body.fileno() is not None else None
        size, warning = yield from archive.storing(
            ident, body, environ.get("HTTP_LAST_MODIFIED"), expected, patience, lambda: parking.send_continue(environ)
        )
    except BaseException:
        abandon_body(environ)
        raise
    answer = {"message": "File added to archive", "total_bytes": size}
    if warning:
        answer["warning"] = warning
    return json_parts(201, answer)


def patch_source():
    """The server-side path named by a PATCH body ``{"path": "..."}``."""
    announced = request.content_length
    if announced is not None and announced > MAX_PATCH_BODY:
        request.environ[CLOSE_CONNECTION] = True  # its body stays unread on the socket
        raise BadRequest("the PATCH body is too large", detail="body too large")
    parking.send_continue(request.environ)
    data = request.stream.read(MAX_PATCH_BODY + 1)  # never more than that into memory, chunked or not
    if len(data) > MAX_PATCH_BODY:
        request.environ[CLOSE_CONNECTION] = True
        raise BadRequest("the PATCH body is too large", detail="body too large")
    if announced is not None and len(data) < announced:
        raise IncompleteBody(len(data), announced)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise BadRequest('the PATCH body must be JSON: {"path": "<file on the server>"}', detail="body is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("path"), str) or not doc["path"] or "\0" in doc["path"]:
        raise BadRequest('the PATCH body must be {"path": "<file on the server>"}', detail="body has no path")
    return doc["path"]


def json_response(status, document, headers=None):
    return Response(json.dumps(document), status=status, headers=headers, content_type="application/json")


def json_parts(status, document, headers=None):
    """``(status, headers, body)`` of a JSON answer, for the handlers that run before Flask."""
    body = json.dumps(document).encode()
    headers = headers or {}
    headers["Content-Type"] = "application/json"
    headers["Content-Length"] = str(len(body))
    return status, headers, [body]


# What to call each backend's storage in a 503, and its Retry-After setting.
STORAGES = {
    "posix": ("the file system", None),
    "hpss": ("HPSS", "hpss_retry_after"),
    "hsmsideband": ("the HSM file system", "sideband_retry_after"),
}
REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    409: "Conflict", 411: "Length Required", 413: "Payload Too Large", 416: "Range Not Satisfiable",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable", 507: "Insufficient Storage",
}


# Status lines as Flask writes them, for the answers given before Flask.
STATUS_LINES = {code: f"{code} {reason.upper()}" for code, reason in HTTP_STATUS_CODES.items()}


def error_response(exc):
    """Flask's error handler: the JSON error answer for this request."""
    status, document, headers = error_answer(exc, request.method, request.path, current_app.config["pyai"])
    return json_response(status, document, headers)


def error_answer(exc, method, path, config):
    """Every failure as the original's JSON error document; never a traceback or a server path.

    Returns ``(status, document, headers)``.
    """
    what = f"{method} {path[:80]}"
    headers = {}
    if isinstance(exc, ArchiveError):
        status, message, detail = exc.status, exc.message, f"{what}: {exc.detail}"
        if isinstance(exc, RangeNotSatisfiable):
            headers["Content-Range"] = f"bytes */{exc.size}"
        if getattr(exc, "retry_after", None):
            headers["Retry-After"] = str(int(exc.retry_after))
        headers.update(getattr(exc, "headers", None) or {})
    elif isinstance(exc, HTTPException):
        status, message, detail = exc.code, exc.description, f"{what}: {exc.name}"
        if exc.code == 405:
            headers["Allow"] = ", ".join(getattr(exc, "valid_methods", None) or METHODS)
    elif isinstance(exc, IncompleteBody):
        status, message, detail = 400, f"the body ended early: {exc}", f"{what}: incomplete body"
    elif isinstance(exc, _BodyEnded):  # an OSError to Python, but the client's doing: checked before OSError
        status, message, detail = 400, "the body ended early (the connection closed inside it)", f"{what}: incomplete body"
    elif isinstance(exc, _BodyFramingError):
        status, message, detail = 400, "the request body is not valid chunked encoding", f"{what}: bad body framing"
    elif isinstance(exc, TimeoutError):
        status, message, detail = 408, "the client stopped sending the body", f"{what}: receive timed out"
    elif isinstance(exc, OSError):
        reason = (exc.strerror or "error").split(": ")[-1]
        op = getattr(exc, "op", None) or method
        if exc.errno in NO_SPACE:
            status, message = 507, "the archive has no space left for this file"
        elif exc.errno in TOO_LARGE:
            status, message = 413, "the file is larger than the storage can hold"
        elif exc.errno in STORAGE_UNREACHABLE:
            storage, retry_setting = STORAGES.get(config.backend, ("the storage", None))
            status, message = 503, f"{storage} is unavailable ({op}: {reason})"
            if retry_setting:
                headers["Retry-After"] = str(int(getattr(config, retry_setting)))
            log.warning("%s: storage unavailable: %s", what, exc)
        else:
            status, message = 500, f"the storage failed during {op}: {reason}"
            log.error("%s failed: %s", what, exc)
        detail = f"{what}: {op} failed: {reason}"
    else:
        log.exception("%s failed", what)
        status, message, detail = 500, f"internal error during {method}", f"{what}: {type(exc).__name__}"
    document = {
        "status": f"{status} {REASONS.get(status, '')}".rstrip(),
        "message": message,
        "traceback": detail,
        "version": __version__,
    }
    return status, document, headers
