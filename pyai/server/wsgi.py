"""The WSGI side of a request: its environ, its response, and ``wsgi.input``.

``environ_for`` builds the environ from a parsed ``Head`` directly (the keys
gunicorn set and Flask reads, nothing computed twice).  A ``Response``
collects the status and headers from ``start_response`` and formats the head
once, into the exchange's output buffer, together with the first body bytes,
so a small answer leaves in one ``send``.  ``BodyStream`` is ``wsgi.input``
for apps that read the body themselves (the portable receive path, Flask
routes without a body reader): it reads the same ``pyai.serving.BodySource``
the app's direct receive path would, so the connection knows what is left.
"""

import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Protocol, Set, Tuple, Union
from urllib.parse import unquote_to_bytes

from pyai import serving
from pyai.native import format_answer
from pyai.server.body import BodyStream
from pyai.web.dates import http_date

# What a response iterable yields: body bytes, or a pyai.serving.Wait (before the answer begins).
BodyItem = Union[bytes, serving.Wait]

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from _typeshed import OptExcInfo

    from pyai.server.connection import Connection
    from pyai.server.head import Head

    # pyai's app (pyai.web.app): a WSGI app whose response iterable may yield a Wait when the server parks
    App = Callable[[WSGIEnvironment, StartResponse], Iterable[BodyItem]]

_STATUS = re.compile(r"[1-9][0-9][0-9] [^\r\n]*")
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# response field names found valid -> their lower case (an app's names are few; bounded anyway)
_NAMES: Dict[str, str] = {}
_BAD_VALUE = re.compile(r"[^\t\x20-\x7e\x80-\xff]")
# Hop-by-hop fields are the server's to send, never the app's (RFC 9110 7.6.1).
_HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    )
)
SERVER = "pyai"


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"invalid response header name {name!r}")
    lower = name.lower()
    if len(_NAMES) < 1024:
        _NAMES[name] = lower
    return lower


class Clock:
    """The Date field, formatted once a second (RFC 9110 6.6.1 needs no finer)."""

    second = 0
    text = ""

    @classmethod
    def date(cls) -> str:
        now = int(time.time())
        if now != cls.second:
            cls.text = http_date(now)
            cls.second = now
        return cls.text


def connection_environ(conn: "Connection", cfg: Any) -> "WSGIEnvironment":  # cfg: gunicorn's Config
    """The keys every request of ``conn`` shares (copied into each request's environ)."""
    server, client = conn.server, conn.client
    return {
        "SCRIPT_NAME": "",
        "SERVER_NAME": str(server[0]) if isinstance(server, tuple) else str(server),
        "SERVER_PORT": str(server[1]) if isinstance(server, tuple) else "",
        "SERVER_SOFTWARE": SERVER,
        "REMOTE_ADDR": client[0] if isinstance(client, tuple) else str(client),
        "REMOTE_PORT": str(client[1]) if isinstance(client, tuple) else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": cfg.workers > 1,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
        serving.CAN_PARK: True,
    }


# header name (bytes) -> its environ key; bounded, so names a client makes up cannot grow it
_KEYS = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}
_KEYS_MAX = 1024


def _key(name: bytes) -> str:
    key = _KEYS.get(name)
    if key is None:
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        lower = name.lower()
        if lower in _KEYS:
            key = _KEYS[lower]
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[name] = key
    return key


def environ_for(
    head: "Head", base: "WSGIEnvironment", source: serving.BodySource, forwarded: "Forwarded"
) -> "WSGIEnvironment":
    """The WSGI environ of ``head`` (``base``: its connection's keys; ``source``: its BodySource;
    ``forwarded``: the Forwarded)."""
    environ = base.copy()
    environ["REQUEST_METHOD"] = head.method
    environ["PATH_INFO"] = unquote_to_bytes(head.path).decode("latin-1")
    environ["QUERY_STRING"] = head.query.decode("latin-1")
    environ["RAW_URI"] = head.target.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/" + head.version
    environ["wsgi.input"] = BodyStream(source)
    environ[serving.BODY] = source
    for name, value in head.fields:
        key = _key(name)
        text = value.decode("latin-1").strip(" \t")
        if key in environ and key[0] == "H":  # a repeated field: its values joined (RFC 9110 5.3)
            text = environ[key] + "," + text
        environ[key] = text
    if forwarded.keys:
        environ["wsgi.url_scheme"] = forwarded.scheme(environ)
    return environ


class Forwarded:
    """gunicorn's ``secure_scheme_headers`` and ``forwarded_allow_ips``, as the environ keys to look at."""

    def __init__(self, cfg: Any) -> None:  # gunicorn's Config
        secure: Dict[str, str] = cfg.secure_scheme_headers or {}
        self.keys = [("HTTP_" + name.upper().replace("-", "_"), value.lower()) for name, value in secure.items()]
        self.trusted: Set[str] = set(cfg.forwarded_allow_ips or ())

    def scheme(self, environ: "WSGIEnvironment") -> str:
        """ "https" when a trusted proxy says the client used TLS, else "http"."""
        if self.keys and ("*" in self.trusted or environ["REMOTE_ADDR"] in self.trusted):
            for key, wanted in self.keys:
                value = environ.get(key)
                if value is not None and value.strip().lower() == wanted:
                    return "https"
        return "http"


class Readable(Protocol):
    """What ``wsgi.file_wrapper`` reads of a file-like object (``close`` and ``fileno`` are used when it has them)."""

    def read(self, size: int, /) -> bytes: ...


class FileWrapper:
    """``wsgi.file_wrapper``: a file the exchange sends with sendfile (``Exchange.start_body``)."""

    def __init__(self, filelike: Readable, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> "FileWrapper":
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


class Response:
    """One answer: its status and fields from ``start_response``, its head formatted once into ``out``."""

    __slots__ = (
        "method", "version", "out", "environ", "status", "status_code", "headers", "headers_sent",
        "response_length", "chunked", "sent", "omits_body", "must_close",
    )  # fmt: skip

    def __init__(self, method: str, version: str, out: bytearray, environ: Mapping[str, Any], must_close: bool) -> None:
        self.method = method
        self.version = version
        self.out = out  # the exchange's output buffer (bytearray)
        self.environ = environ
        self.status: Optional[str] = None
        self.status_code: Optional[int] = None
        self.headers: List[Tuple[str, str]] = []
        self.headers_sent = False
        self.response_length: Optional[int] = None
        self.chunked = False
        self.sent = 0  # body bytes counted as sent (a sendfile range once it is set up)
        self.omits_body = False
        self.must_close = must_close

    def force_close(self) -> None:
        self.must_close = True

    def should_close(self) -> bool:
        if self.must_close or self.environ.get(serving.CLOSE_CONNECTION):
            return True
        # a body of unknown length ends with the connection (HTTP/1.0 without Content-Length)
        return self.response_length is None and not self.chunked and not self.omits_body

    def start_response(
        self, status: str, headers: List[Tuple[str, str]], exc_info: "Optional[OptExcInfo]" = None
    ) -> Callable[[bytes], None]:
        if exc_info:
            try:
                if self.headers_sent:
                    _, error, traceback = exc_info
                    if error is None:  # sys.exc_info() outside a handler: there is nothing to re-raise
                        raise AssertionError("start_response was called again after the answer began")
                    raise error.with_traceback(traceback)
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response was called twice")
        if not isinstance(status, str) or not _STATUS.fullmatch(status):
            raise ValueError(f"invalid status {status!r}")
        self.status = status
        self.status_code = code = int(status[:3])
        # one check of all values (a str join raises for anything else); names once each per process
        if _BAD_VALUE.search("".join([value for _, value in headers])):
            raise ValueError("invalid response header value")  # a value may be secret: none is shown
        kept = self.headers = []
        self.response_length = None
        for name, value in headers:
            lower = _NAMES.get(name)
            if lower is None:
                lower = _checked_name(name)
            if lower in _HOP_BY_HOP:
                continue
            if lower == "content-length":
                value = value.strip(" \t")
                self.response_length = int(value)
            kept.append((name, value))
        self.omits_body = self.method == "HEAD" or code in (204, 304) or code < 200
        if code == 204 or code < 200:  # RFC 9110 8.6: no Content-Length on these
            self.headers = [(k, v) for k, v in self.headers if k.lower() != "content-length"]
            self.response_length = None
        self.chunked = self.response_length is None and not self.omits_body and self.version != "1.0"
        return self.write

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        self.headers_sent = True
        headers = [("Transfer-Encoding", "chunked"), *self.headers] if self.chunked else self.headers
        self.out += format_answer(self.status, headers, self.should_close(), SERVER, Clock.date(), None)[0]

    def start_plain(self, status: str, code: int, headers: List[Tuple[str, str]]) -> None:
        """``start_response`` for an answer the app made itself (``pyai.serving``'s plain request).
        Its fields are the app's own, not a WSGI app's, so they go unchecked. A HEAD's
        Content-Length is GET's and a 204 has none, as ``start_response`` would leave them."""
        self.status, self.status_code, self.headers = status, code, headers
        self.omits_body = self.method == "HEAD" or code == 204
        self.response_length = None
        for name, value in headers:
            if name == "Content-Length":
                self.response_length = int(value)

    def write(self, data: bytes) -> None:
        self.send_headers()
        if self.omits_body or not data:
            return
        if self.response_length is not None:
            room = self.response_length - self.sent
            if room <= 0:
                return
            if len(data) > room:
                data = data[:room]  # never more than announced
        self.sent += len(data)
        if self.chunked:
            self.out += b"%X\r\n" % len(data)
            self.out += data
            self.out += b"\r\n"
        else:
            self.out += data

    def close(self) -> None:
        """The body is complete: the head if nothing was written, the last chunk if chunked."""
        self.send_headers()
        if self.chunked:
            self.out += b"0\r\n\r\n"


def fileno_of(filelike: Any) -> Optional[Tuple[int, int]]:  # any object: one without fileno() has none
    """The descriptor and offset of a file-like object to sendfile from, or None."""
    try:
        fd = filelike.fileno()
        return fd, os.lseek(fd, 0, os.SEEK_CUR)
    except (OSError, ValueError, AttributeError):
        return None
