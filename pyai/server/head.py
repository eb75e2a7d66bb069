"""Request heads, parsed in C by llhttp (through httptools), checked against gunicorn's limits.

``parse(data, limits)`` takes one complete head (request line to blank line)
and returns a ``Head``: the method, the target split into path and query, the
version, the fields, and what framing the body has.  A head the parser or the
limits refuse raises ``BadHead`` with the status to answer (400, 414, 431).
llhttp checks the syntax (tokens, versions, a single Content-Length, no
Content-Length beside Transfer-Encoding, chunked last); the limits on the
request line, the number of fields and their size are checked here, as gunicorn
checked them (its ``limit_request_*`` settings still set them).
"""

import re
from typing import Any, List, Optional, Tuple, Union

import httptools

# Fields whose names hold an underscore are dropped (gunicorn's header_map "drop"): in the
# environ X_Forwarded_For and X-Forwarded-For would be one key, and a proxy forwards only one.
_UNDERSCORE = b"_"
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9112 3: method SP request-target SP HTTP-version, one space each; llhttp is lenient there
_REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e\x80-\xff]+ HTTP/(1\.[01]|[0-9]\.[0-9])")


class BadHead(Exception):
    """A head that is refused before the app sees it: ``status`` ("400 Bad Request") and why."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Limits:
    """gunicorn's head limits (``limit_request_line``, ``_fields``, ``_field_size``; 0 = its default)."""

    __slots__ = ("line", "fields", "field", "head")

    def __init__(self, cfg: Any) -> None:  # gunicorn's Config
        self.line: int = cfg.limit_request_line or 8190
        self.fields: int = cfg.limit_request_fields or 100
        self.field: int = cfg.limit_request_field_size or 8190
        # the most a head may take: the request line and every field at their limits
        self.head = self.line + 2 + self.fields * (self.field + 2) + 2


class Head:
    """One parsed request head."""

    __slots__ = ("method", "target", "path", "query", "version", "fields", "keep_alive", "length", "chunked", "expect")

    # set by parse (and the parser's callbacks), or by plain
    method: str
    target: bytes
    version: str  # "1.0" or "1.1"
    keep_alive: bool

    def __init__(self) -> None:
        self.fields: List[Tuple[bytes, bytes]] = []  # as sent, underscored names dropped
        self.path = b""
        self.query = b""
        self.length: Optional[int] = None  # the Content-Length, when there is one
        self.chunked = False
        self.expect = False  # Expect: 100-continue

    @classmethod
    def plain(cls, method: str, target: bytes, version: str, keep_alive: bool) -> "Head":
        """The Head of a plain request (``pyai.native.plain_request`` recognised it): no body, no field that matters."""
        head = cls()
        head.method, head.target, head.path, head.version, head.keep_alive = method, target, target, version, keep_alive
        return head

    # httptools' callbacks
    def on_url(self, url: bytes) -> None:
        self.target = url

    def on_header(self, name: bytes, value: bytes) -> None:
        if _UNDERSCORE not in name:
            self.fields.append((name, value))


def refuse_overlong(data: Union[bytes, bytearray], limits: Limits) -> BadHead:
    """The BadHead for a head that passed ``limits.head`` without ending: the line or the fields."""
    line_end = data.find(b"\r\n")
    if line_end < 0 or line_end > limits.line:
        return BadHead("414 Request-URI Too Long", f"the request line is longer than {limits.line} bytes")
    return BadHead("431 Request Header Fields Too Large", "the request head is too large")


def parse(data: bytes, limits: Limits) -> Head:
    """The Head of ``data`` (one whole head, ending in a blank line)."""
    line_end = data.find(b"\r\n")
    if line_end > limits.line:
        raise BadHead("414 Request-URI Too Long", f"the request line is longer than {limits.line} bytes")
    line = _REQUEST_LINE.fullmatch(data, 0, line_end)
    if line is None:
        raise BadHead("400 Bad Request", "invalid request line")
    if line.group(1) not in (b"1.0", b"1.1"):
        # 400, not 505: a client's mistake is a 4xx (as gunicorn answered it)
        raise BadHead("400 Bad Request", "unsupported HTTP version: only HTTP/1.0 and HTTP/1.1 are served")
    head = Head()
    method = _parse(head, data)
    if len(head.fields) > limits.fields:
        raise BadHead("431 Request Header Fields Too Large", f"more than {limits.fields} header fields")
    connection_close = connection_keep = False
    for name, value in head.fields:
        if len(name) + len(value) + 2 > limits.field:
            raise BadHead("431 Request Header Fields Too Large", f"a header field is longer than {limits.field} bytes")
        lower = name.lower()
        if lower == b"content-length":
            head.length = int(value)  # llhttp has checked it: digits, and only one
        elif lower == b"transfer-encoding":
            head.chunked = True  # llhttp has checked chunked is the last coding
        elif lower == b"expect" and value.strip().lower() == b"100-continue":
            head.expect = True
        elif lower == b"connection":
            tokens = value.lower()
            if b"close" in tokens:
                connection_close = True
            elif b"keep-alive" in tokens:
                connection_keep = True
    # RFC 9112 9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive"
    head.keep_alive = not connection_close and (head.version == "1.1" or connection_keep)
    if head.chunked and head.version == "1.0":
        # RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing (smuggling)
        raise BadHead("400 Bad Request", "Transfer-Encoding is not allowed in HTTP/1.0")
    head.method = method
    _split_target(head)
    return head


def _parse(head: Head, data: bytes) -> str:
    """Feed ``data`` to llhttp; the method (str)."""
    parser = httptools.HttpRequestParser(head)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass  # Upgrade or CONNECT: answered as any request (no protocol switch is offered)
    except httptools.HttpParserInvalidMethodError:
        # llhttp knows the registered methods only; any other token is a method the app
        # answers (405 with Allow), as gunicorn let it through.
        method = data[: data.find(b" ")]
        if not _TOKEN.fullmatch(method):
            raise BadHead("400 Bad Request", "invalid request method") from None
        head.fields.clear()
        _parse(head, b"GET" + data[len(method) :])
        return method.decode("ascii")
    except httptools.HttpParserError as exc:
        raise BadHead("400 Bad Request", f"invalid request: {exc}") from None
    head.version = parser.get_http_version()
    return parser.get_method().decode("ascii")


def _split_target(head: Head) -> None:
    target = head.target
    if target[:1] != b"/":
        if target == b"*":
            head.path = b"*"
            return
        try:
            url = httptools.parse_url(target)  # the absolute form a proxy sends
        except httptools.HttpParserInvalidURLError:
            raise BadHead("400 Bad Request", "invalid request target") from None
        head.path = url.path or b"/"
        head.query = url.query or b""
        return
    path, _, query = target.partition(b"?")
    head.path = path.partition(b"#")[0]
    head.query = query.partition(b"#")[0]
