"""The hostile requests: paths, headers and bodies an attacker or a broken client sends.

Each ``Case`` is one or more requests sent in turn, each on its own connection,
exactly as written (``Raw``) or built from a method, target, headers and body
(``Req``, which adds ``Host`` and ``Connection: close`` and, unless told
otherwise, a correct Content-Length).  ``{CANARY}``, ``{INCOMING}``,
``{PREFIX}`` and ``{ARENA}`` in targets, headers and bodies become the real
paths of the test's arena (see ``conftest.arena``): the canary file outside
the prefix, the patch root, the prefix and the directory holding them.
Ids a case may legitimately store start with ``h-``.
"""

import dataclasses
import json

LEGIT = "legit"  # the id the arena stores first; cases read it, none may change it


@dataclasses.dataclass(frozen=True)
class Raw:
    data: bytes


@dataclasses.dataclass(frozen=True)
class Req:
    method: str
    target: str
    headers: tuple = ()
    body: bytes = b""
    length: bool = True  # add Content-Length: len(body) (after substitution) when there is a body


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    requests: tuple
    # 5xx answers that are right for this case (each one is justified where the case is made)
    allowed_5xx: tuple = ()
    # the case's statuses must be among these when given (the service's own, not only "no 5xx")
    expect: tuple = ()
    # the connection may be closed without any answer (e.g. the request never completes)
    may_close: bool = False
    # the answer is HTTP/2 frames, not an HTTP/1.1 response (an HTTP/2 client's preface)
    http2: bool = False


def render(request, paths):
    """The bytes to send for a Raw or Req, with the arena's paths substituted."""

    def fill(text):
        for key, value in paths.items():
            text = (
                text.replace("{" + key + "}", value)
                if isinstance(text, str)
                else text.replace(("{" + key + "}").encode(), value.encode())
            )
        return text

    if isinstance(request, Raw):
        return fill(request.data)
    body = fill(request.body)
    lines = [f"{request.method} {fill(request.target)} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [fill(h) for h in request.headers]
    if (
        request.length
        and body
        and not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in request.headers)
    ):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _patch(path_value):
    return json.dumps({"path": path_value}).encode()


CASES = []


def case(name, *requests, **options):
    CASES.append(Case(name, tuple(requests), **options))


# --- path traversal, in every encoding, with every method that names an id -------
TRAVERSALS = {
    "dotdot": "/..",
    "dotdot-canary": "/../canary",
    "dotdot-deep": "/../../../../../../../../etc/passwd",
    "pct-dots": "/%2e%2e/canary",
    "pct-dots-slash": "/%2e%2e%2fcanary",
    "pct-mixed-case": "/%2E%2e%2Fcanary",
    "dots-pct-slash": "/..%2fcanary",
    "double-encoded": "/%252e%252e%252fcanary",
    "double-encoded-slash": "/..%252fcanary",
    "overlong-2byte": "/%c0%ae%c0%ae%c0%afcanary",
    "overlong-3byte": "/%e0%80%ae%e0%80%ae%e0%80%afcanary",
    "backslash": "/..\\canary",
    "pct-backslash": "/..%5ccanary",
    "pct-backslash-lead": "/%5c..%5ccanary",
    "absolute-form": "http://127.0.0.1/../canary",
    "absolute-form-encoded": "http://127.0.0.1/%2e%2e%2fcanary",
    "absolute-form-other-host": "http://example.invalid/%2e%2e%2fcanary",
    "absolute-form-no-path": "http://127.0.0.1",
    "double-slash": "//canary",
    "double-slash-dotdot": "//../canary",
    "absolute-path": "/{CANARY}",
    "absolute-path-encoded": "/%2F{CANARY}",
    "semicolon-params": "/..;/canary",
    "semicolon-after": "/legit;/../../canary",
    "semicolon-encoded": "/%2e%2e;x=1%2fcanary",
    "nul-encoded": "/legit%00",
    "nul-encoded-dotdot": "/..%00/canary",
    "nul-only": "/%00",
    "unicode-two-dot-leader": "/%e2%80%a5%2fcanary",
    "unicode-fullwidth-dots": "/%ef%bc%8e%ef%bc%8e%ef%bc%8fcanary",
    "unicode-one-dot-leaders": "/%e2%80%a4%e2%80%a4%2fcanary",
    "iis-u-encoding": "/%u002e%u002e%u002fcanary",
    "dot-pct-dot": "/.%2e/canary",
    "pct-dot-dot": "/%2e./canary",
    "dot": "/.",
    "dot-segment": "/./legit",
    "trailing-dotdot": "/canary/..",
    "temp-name": "/.pyai-tmp-x",
    "long-id": "/" + "a" * 300,
    "long-dotdot-chain": "/" + "..%2f" * 1000 + "canary",
}
for label, target in TRAVERSALS.items():
    # (308: "http://127.0.0.1" without a path is redirected to "/", Werkzeug's strict slashes)
    case(f"traverse-{label}-GET", Req("GET", target), expect=(200, 308, 400, 404))
    case(f"traverse-{label}-HEAD", Req("HEAD", target), expect=(200, 204, 308, 400, 404))
    case(f"traverse-{label}-PUT", Req("PUT", target, body=b"owned"), expect=(308, 400, 404, 405, 409))
    case(f"traverse-{label}-DELETE", Req("DELETE", target), expect=(308, 400, 404, 405))
    case(f"traverse-{label}-POST", Req("POST", target), expect=(200, 308, 400, 404, 405))
    case(
        f"traverse-{label}-PATCH",
        Req("PATCH", target, body=_patch("{INCOMING}/keep")),
        expect=(308, 400, 404, 405, 409),
    )

# Raw NUL bytes and control characters in the request line.
case(
    "raw-nul-in-target",
    Raw(b"GET /legit\x00/../canary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    expect=(400,),
)
case("raw-nul-dotdot", Raw(b"DELETE /..\x00canary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), expect=(400,))
case("raw-tab-in-target", Raw(b"GET /le\tgit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), expect=(400,))
case(
    "raw-utf8-in-target",
    Raw("GET /\u2025/canary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()),
    expect=(400, 404),
)
case("raw-latin1-in-target", Raw(b"GET /l\xe9git HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), expect=(400,))
case("asterisk-target", Raw(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), expect=(200, 400, 404, 405))

# --- oversized and numerous header material -----------------------------------
case("huge-request-line", Req("GET", "/" + "a" * 20000), expect=(400, 414))
case("huge-header-value", Req("GET", "/legit", headers=("X-Junk: " + "a" * 20000,)), expect=(400, 431))
case("huge-header-name", Req("GET", "/legit", headers=("X" * 20000 + ": 1",)), expect=(400, 431))
case("many-headers", Req("GET", "/legit", headers=tuple(f"X-H{i}: {i}" for i in range(500))), expect=(400, 431))
case("huge-range-header", Req("GET", "/legit", headers=("Range: bytes=" + "0-0," * 2000 + "0-0",)), expect=(200, 400))
case("header-nul", Raw(b"GET /legit HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\nConnection: close\r\n\r\n"), expect=(400,))
case(
    "header-space-before-colon",
    Raw(b"GET /legit HTTP/1.1\r\nHost: x\r\nX-A : b\r\nConnection: close\r\n\r\n"),
    expect=(400,),
)
case(
    "header-obs-fold",
    Raw(b"GET /legit HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\nConnection: close\r\n\r\n"),
    expect=(400,),
)
case("header-no-colon", Raw(b"GET /legit HTTP/1.1\r\nHost: x\r\nnonsense\r\nConnection: close\r\n\r\n"), expect=(400,))
case("bare-lf-lines", Raw(b"GET /legit HTTP/1.1\nHost: x\nConnection: close\n\n"), expect=(200, 400))

# --- Content-Length: negative, overflowing, non-numeric, duplicated, with chunked
CONTENT_LENGTHS = {
    "negative": "-1",
    "plus-sign": "+5",
    "exponent": "5e0",
    "hex": "0x5",
    "spaces-inside": "5 5",
    "empty": "",
    "non-numeric": "five",
    "unicode-digits": "\u0665",
    "huge-overflow": "9" * 40,
    "uint64-overflow": "18446744073709551616",
    "int64-overflow": "9223372036854775808",
    "int64-max": "9223372036854775807",
    "one-exabyte": "1152921504606846976",
    "one-terabyte": "1099511627776",
    "longer-than-body": "50",
}
for label, value in CONTENT_LENGTHS.items():
    header = f"Content-Length: {value}".encode("utf-8").decode("latin-1")
    # 507 is right when the length announced is more than the disk has: space is reserved
    # before the body is read, and this is what a full disk answers (docs/api.md).  413 when no
    # file could ever be that large (EFBIG, or past the largest file offset).
    case(
        f"content-length-{label}",
        Req("PUT", f"/h-cl-{label}", headers=(header,), body=b"hello", length=False),
        expect=(400, 411, 413, 507),
        allowed_5xx=(507,),
    )
case(
    "content-length-shorter-than-body",
    Req("PUT", "/h-cl-short", headers=("Content-Length: 2",), body=b"hello"),
    expect=(201, 400),
)
case(
    "content-length-duplicate-same",
    Req("PUT", "/h-cl-dup-same", headers=("Content-Length: 5", "Content-Length: 5"), body=b"hello"),
    expect=(201, 400),
)
case(
    "content-length-duplicate-differ",
    Req("PUT", "/h-cl-dup-differ", headers=("Content-Length: 5", "Content-Length: 3"), body=b"hello"),
    expect=(400,),
)
case(
    "content-length-list", Req("PUT", "/h-cl-list", headers=("Content-Length: 5, 5",), body=b"hello"), expect=(201, 400)
)
case(
    "content-length-with-chunked",
    Req(
        "PUT", "/h-cl-te", headers=("Content-Length: 5", "Transfer-Encoding: chunked"), body=b"5\r\nhello\r\n0\r\n\r\n"
    ),
    expect=(400,),
)
case(
    "chunked-then-content-length",
    Req(
        "PUT",
        "/h-te-cl",
        headers=("Transfer-Encoding: chunked", "Content-Length: 100"),
        body=b"5\r\nhello\r\n0\r\n\r\n",
    ),
    expect=(400,),
)
case(
    "patch-content-length-huge",
    Req(
        "PATCH", "/h-patch-cl", headers=("Content-Length: 1099511627776",), body=_patch("{INCOMING}/keep"), length=False
    ),
    expect=(400, 413),
)

# --- Transfer-Encoding and chunked framing ------------------------------------
CHUNKED = {
    "bad-hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "hex-prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "negative-size": b"-5\r\nhello\r\n0\r\n\r\n",
    "size-with-space": b"5 \r\nhello\r\n0\r\n\r\n",
    "missing-crlf-after-data": b"5\r\nhelloXX0\r\n\r\n",
    "data-longer-than-size": b"3\r\nhello\r\n0\r\n\r\n",
    "huge-size": b"ffffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "int64-size": b"7fffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "no-last-chunk": b"5\r\nhello\r\n",
    "truncated-in-chunk": b"400\r\nhello",
    "bad-extension": b"5;\x00=\r\nhello\r\n0\r\n\r\n",
    "bare-lf": b"5\nhello\n0\n\n",
    "bad-trailer": b"5\r\nhello\r\n0\r\nnot a header\r\n\r\n",
    "empty-size-line": b"\r\nhello\r\n0\r\n\r\n",
}
for label, body in CHUNKED.items():
    case(
        f"chunked-{label}",
        Req("PUT", f"/h-chunk-{label}", headers=("Transfer-Encoding: chunked",), body=body),
        expect=(400, 408),
    )
case(
    "chunked-extension",
    Req("PUT", "/h-chunk-ext", headers=("Transfer-Encoding: chunked",), body=b"5;name=value\r\nhello\r\n0\r\n\r\n"),
    expect=(201, 400),
)
case(
    "chunked-trailer",
    Req(
        "PUT", "/h-chunk-trailer", headers=("Transfer-Encoding: chunked",), body=b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"
    ),
    expect=(201, 400),
)
# 501 Not Implemented is the right answer to a transfer coding the server does not
# implement (RFC 9112, 6.1: "SHOULD respond with 501"); gunicorn gives it before pyai runs.
case(
    "te-gzip",
    Req("PUT", "/h-te-gzip", headers=("Transfer-Encoding: gzip",), body=b"hello"),
    expect=(400, 501),
    allowed_5xx=(501,),
)
# (gunicorn takes "gzip, chunked" and leaves the gzip to the application: pyai answers 501 itself)
case(
    "te-gzip-chunked",
    Req("PUT", "/h-te-gzipch", headers=("Transfer-Encoding: gzip, chunked",), body=b"5\r\nhello\r\n0\r\n\r\n"),
    expect=(400, 501),
    allowed_5xx=(501,),
)
case(
    "te-chunked-gzip",
    Req("PUT", "/h-te-chgzip", headers=("Transfer-Encoding: chunked, gzip",), body=b"hello"),
    expect=(400,),
)
case(
    "te-chunked-twice",
    Req(
        "PUT",
        "/h-te-twice",
        headers=("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
        body=b"5\r\nhello\r\n0\r\n\r\n",
    ),
    expect=(400,),
)
case(
    "te-identity",
    Req("PUT", "/h-te-identity", headers=("Transfer-Encoding: identity",), body=b"hello"),
    expect=(400, 501),
    allowed_5xx=(501,),
)
case(
    "te-chunked-http10",
    Raw(b"PUT /h-te-http10 HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    expect=(400,),
)

# --- other protocols and garbage ---------------------------------------------
case("http09", Raw(b"GET /legit\r\n\r\n"), expect=(400,), may_close=True)
case("http09-version", Raw(b"GET /legit HTTP/0.9\r\n\r\n"), expect=(400, 505))
case("http2-version", Raw(b"GET /legit HTTP/2.0\r\nHost: x\r\n\r\n"), expect=(400, 505))
case("http-9-9", Raw(b"GET /legit HTTP/9.9\r\nHost: x\r\n\r\n"), expect=(400, 505))
case(
    "http2-preface",
    Raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"),
    http2=True,  # answered in HTTP/2: a GOAWAY saying HTTP/1.1 is required
)
case(
    "tls-client-hello",
    Raw(bytes.fromhex("16030100a5010000a10303") + bytes(range(32)) + b"\x00" * 40),
    expect=(400,),
    may_close=True,
)
case("binary-garbage", Raw(bytes(range(256)) * 4), expect=(400,), may_close=True)
case("empty-lines", Raw(b"\r\n\r\n\r\n"), expect=(400,), may_close=True)
case(
    "h2c-upgrade",
    Req(
        "GET",
        "/legit",
        headers=("Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAAP__", "Connection: Upgrade, HTTP2-Settings"),
    ),
    expect=(200, 400),
)
case("expect-unknown", Req("PUT", "/h-expect", headers=("Expect: 200-ok",), body=b"hello"), expect=(201, 400, 417))

# --- methods -------------------------------------------------------------------
for method in (
    "get",
    "Get",
    "gEt",
    "put",
    "delete",
    "TRACE",
    "CONNECT",
    "PROPPATCH",  # PROPFIND is served (WebDAV stat, tests/integration/test_webdav.py)
    "MKCOL",
    "M" * 100,
    "G\x01T",
    "GET\x00",
):
    body = b"hello" if method.upper() == "PUT" else b""
    case(f"method-{method[:10].encode().hex()}", Req(method, "/legit", body=body), expect=(400, 405))
case("method-options", Req("OPTIONS", "/legit"), expect=(200, 405))
case("method-tab-separated", Raw(b"GET\t/legit\tHTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), expect=(400,))
case("method-double-space", Raw(b"GET  /legit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), expect=(400,))

# --- bodies on methods that take none ------------------------------------------
case("get-with-body", Req("GET", "/legit", body=b"hello"), expect=(200,))
case(
    "get-with-chunked-body",
    Req("GET", "/legit", headers=("Transfer-Encoding: chunked",), body=b"5\r\nhello\r\n0\r\n\r\n"),
    expect=(200,),
)
case("head-with-body", Req("HEAD", "/legit", body=b"hello"), expect=(204,))
case("delete-with-body", Req("DELETE", "/h-nothing-here", body=b"hello"), expect=(404,))
case("post-with-body", Req("POST", "/legit", body=b"x" * 100000), expect=(200,))
case("root-put", Req("PUT", "/", body=b"hello"), expect=(405,))
case("root-delete", Req("DELETE", "/"), expect=(405,))

# --- Range and byte_range ------------------------------------------------------
RANGES = {
    "letters": "bytes=abc",
    "start-overflow": "bytes=99999999999999999999999-",
    "suffix-overflow": "bytes=-99999999999999999999",
    "reversed": "bytes=5-1",
    "suffix-zero": "bytes=-0",
    "past-end": "bytes=1000000-",
    "no-equals": "bytes 0-1",
    "other-unit": "pages=1-2",
    "empty": "",
    "many-ranges": "bytes=" + ",".join(f"{i}-{i}" for i in range(500)),
    "negative-start": "bytes=-5-3",
    "unicode-digits": "bytes=\u0661-\u0662",
    "plus": "bytes=+1-2",
    "trailing-comma": "bytes=0-1,",
    "int64-edges": "bytes=9223372036854775807-9223372036854775807",
}
for label, value in RANGES.items():
    header = f"Range: {value}".encode("utf-8").decode("latin-1")
    case(f"range-{label}", Req("GET", "/legit", headers=(header,)), expect=(200, 206, 400, 416))
case(
    "if-range-garbage",
    Req("GET", "/legit", headers=("Range: bytes=0-1", "If-Range: not a date, not an etag")),
    expect=(200, 206),
)
case(
    "if-range-control-characters",
    Req("GET", "/legit", headers=("Range: bytes=0-1", "If-Range: \x7f\x01")),
    expect=(400,),
)
BYTE_RANGES = {
    "negative": "-1-5",
    "overflow": "99999999999999999999-1",
    "nul": "%00",
    "twice": "1-2&byte_range=3-4",
    "not-utf8": "%ff-%fe",
    "empty": "",
    "reversed": "9-1",
    "huge-end": "0-9223372036854775807",
}
for label, value in BYTE_RANGES.items():
    case(f"byte-range-{label}", Req("GET", f"/legit?byte_range={value}"), expect=(200, 400))

# --- Last-Modified on PUT, then the GET that has to format the stored time ------
DATES = {
    "year-10000": "9999-12-31T23:59:59-14:00",
    "year-0": "0001-01-01T00:00:00+14:00",
    "epoch-12-digits": "999999999999",
    "epoch-fraction": "1.999999999",
    "garbage": "not a date {CANARY}",
    "huge-year-rfc1123": "Sun, 06 Nov 99999 08:49:37 GMT",
    "negative-epoch-iso": "1900-01-01T00:00:00Z",
}
for label, value in DATES.items():
    ident = f"/h-date-{label}"
    case(
        f"last-modified-{label}",
        Req("PUT", ident, headers=(f"Last-Modified: {value}",), body=b"hello"),
        Req("GET", ident),
        Req("HEAD", ident),
        Req("GET", ident, headers=("Range: bytes=0-1", "If-Range: Sun, 06 Nov 1994 08:49:37 GMT")),
        expect=(200, 201, 204, 206),
    )

# --- PATCH bodies that name paths outside the allowed roots, or play tricks ---------
PATCH_BODIES = {
    "canary-outside": _patch("{CANARY}"),
    "dotdot-out-of-root": _patch("{INCOMING}/../canary"),
    "symlink-to-canary": _patch("{INCOMING}/link-to-canary"),
    "symlink-dir-out": _patch("{INCOMING}/link-to-arena/canary"),
    "nul-truncation": _patch("{INCOMING}/keep\u0000/../../canary"),
    "nul-at-end": _patch("{CANARY}\u0000"),
    "relative": _patch("../canary"),
    "relative-dot": _patch("canary"),
    "prefix-itself": _patch("{PREFIX}"),
    "prefix-dotdot": _patch("{PREFIX}/../canary"),
    "temp-file": _patch("{PREFIX}/.pyai-tmp-x"),
    "proc-environ": _patch("/proc/self/environ"),
    "dev-zero": _patch("/dev/zero"),
    "root-dir": _patch("/"),
    "empty": _patch(""),
    "very-long": _patch("{INCOMING}/" + "a" * 5000),
    "long-component-chain": _patch("{INCOMING}/" + "x/" * 3000 + "keep"),
    "number": json.dumps({"path": 5}).encode(),
    "list": json.dumps(["{CANARY}"]).encode(),
    # (under the 64 KiB limit, so they reach the JSON parser)
    "nested-deep": b"[" * 30000 + b"]" * 30000,
    "nested-deep-object": b'{"path": ' + b"[" * 30000 + b"]" * 30000 + b"}",
    "not-json": b"path={CANARY}",
    "not-utf8": b'{"path": "\xff\xfe"}',
    "too-large": b'{"path": "' + b"a" * 70000 + b'"}',
    "duplicate-keys": b'{"path": "{INCOMING}/keep", "path": "{CANARY}"}',
}
for label, body in PATCH_BODIES.items():
    case(
        f"patch-{label}",
        Req("PATCH", f"/h-patch-{label}", headers=("Content-Type: application/json",), body=body),
        expect=(400, 403, 404, 413),
    )
case(
    "patch-chunked-too-large",
    Req(
        "PATCH",
        "/h-patch-chunked",
        headers=("Transfer-Encoding: chunked",),
        body=b"10000\r\n" + b"a" * 0x10000 + b"\r\n" + b"10000\r\n" + b"a" * 0x10000 + b"\r\n0\r\n\r\n",
    ),
    expect=(400, 413),
)
case("patch-over-legit", Req("PATCH", f"/{LEGIT}", body=_patch("{INCOMING}/keep")), expect=(409,))
