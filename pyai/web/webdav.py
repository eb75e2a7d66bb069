"""WebDAV stat (RFC 4918 PROPFIND): what gfal2/davix, rclone and Rucio ask before
they read a file.

``PROPFIND /<id>`` answers ``207 Multi-Status`` with one response: the size,
the mtime, the ETag GET sends, an empty resourcetype, and the stored checksums
(dCache's ``Checksums`` property, which grid clients read).  It reads the file's
status only: a file on tape is described, never staged.  Depth is irrelevant
on a file (it has no members), so any valid Depth is answered alike.

``PROPFIND /`` with ``Depth: 0`` describes the root as a collection (what a
client probes before it addresses files under it); a listing of the root
(``Depth: 1``, ``infinity``, or no Depth, which RFC 4918 reads as infinity) is
403: a flat archive of millions of ids is not listed.

The request body (allprop, propname, or prop with the properties wanted) is
parsed with the standard library's expat, which this module guards: bodies are
capped, and a DTD or an entity declaration is refused before parsing, so no
entity is ever expanded.
"""

import base64
import time
import xml.etree.ElementTree as ET
from urllib.parse import quote
from xml.sax.saxutils import escape

from pyai.archive.checksums import RFC3230_NAMES
from pyai.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge
from pyai.web import parking
from pyai.web.answers import STATUS_LINES
from pyai.web.dates import http_date
from pyai.web.receive import CLOSE_CONNECTION, abandon_body, read_body
from pyai.web.targets import request_path

MAX_BODY = 64 * 1024  # a propfind naming every property there is fits in far less
DAV = "DAV:"
DCACHE = "http://www.dcache.org/2013/webdav"  # dCache's Checksums property
SRM = "http://srm.lbl.gov/StorageResourceManager"  # dCache's FileLocality property
CONTENT_TYPE = "application/xml; charset=utf-8"
DEPTHS = ("0", "1", "infinity")
_LOCALITY = {(True, False): "ONLINE", (False, True): "NEARLINE", (True, True): "ONLINE_AND_NEARLINE"}


def stored_digests(archive, status):
    """``{algorithm: digest}`` of every checksum kept for the stored file; {} when none.

    Only what is stored: a stat computes nothing (a Want-Digest on HEAD or GET does).
    """
    return archive.checksums(status.path)


# -- the request --------------------------------------------------------------


class Wanted:
    """What a PROPFIND body asks for: every property (allprop), their names only
    (propname), or the listed ``names`` (Clark notation, ``{namespace}local``)."""

    def __init__(self, kind, names=()):
        self.kind = kind  # "allprop", "propname" or "prop"
        self.names = tuple(names)


def wanted(environ):
    """The Wanted of the request's body; allprop without one (RFC 4918 9.1)."""
    data = _small_body(environ)
    if not data.strip():
        return Wanted("allprop")
    head = data[:MAX_BODY].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
        raise BadRequest("a PROPFIND body may not hold a DTD or entity declarations", detail="DTD in body")
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, ValueError, RecursionError):
        raise BadRequest("the PROPFIND body is not well-formed XML", detail="body is not XML") from None
    if root.tag != f"{{{DAV}}}propfind":
        raise BadRequest("the PROPFIND body must be a DAV:propfind element", detail="body is not a propfind")
    children = list(root)
    if len(children) == 0:
        return Wanted("allprop")
    first = children[0].tag
    if first == f"{{{DAV}}}allprop":
        return Wanted("allprop")  # a DAV:include beside it names nothing we would leave out
    if first == f"{{{DAV}}}propname":
        return Wanted("propname")
    if first == f"{{{DAV}}}prop":
        names = []
        for element in children[0]:
            if isinstance(element.tag, str) and element.tag not in names:
                names.append(element.tag)
        return Wanted("prop", names)
    raise BadRequest("a DAV:propfind holds allprop, propname or prop", detail="unknown propfind member")


def depth(environ, listing_refused=False):
    """The Depth header, lower-cased; None when absent.  400 when no Depth value, and
    with ``listing_refused`` 403 for any but 0; a refused request's body stays unread."""
    value = environ.get("HTTP_DEPTH")
    value = None if value is None else value.strip().lower()
    try:
        if value is not None and value not in DEPTHS:
            raise BadRequest("Depth must be 0, 1 or infinity", detail="bad Depth")
        if listing_refused and value != "0":
            raise Forbidden(
                "the archive is a flat namespace of ids and is not listed: PROPFIND / answers Depth: 0 only",
                detail="listing refused",
            )
    except (BadRequest, Forbidden):
        if environ.get("CONTENT_LENGTH", "") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ:
            abandon_body(environ)  # the connection closes: the body is never read
        raise
    return value


def _small_body(environ):
    """The request body, at most MAX_BODY bytes (more is 413 and the connection closes)."""
    length = environ.get("CONTENT_LENGTH", "")
    announced = int(length) if length else None  # the server has validated it
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if announced is None and not chunked:
        return b""
    if announced is not None and announced > MAX_BODY:
        environ[CLOSE_CONNECTION] = True  # its body stays unread on the socket
        raise _too_large()
    parking.send_continue(environ)
    data = read_body(environ, announced, MAX_BODY + 1)
    if len(data) > MAX_BODY:
        environ[CLOSE_CONNECTION] = True
        raise _too_large()
    return data


def _too_large():
    return PayloadTooLarge(f"a PROPFIND body is at most {MAX_BODY} bytes", detail="body too large")


# -- the answers --------------------------------------------------------------


def propfind_file(archive, ident, environ):
    """``PROPFIND /<id>``: 207 describing the stored file, 404 when the id holds none."""
    depth(environ)  # checked, and otherwise irrelevant: a file has no members
    asked = wanted(environ)
    status = archive.status(ident)
    if status is None:
        raise NotFound("no file is stored under this id", detail="not found")
    # the checksums cost a read of their own: only when they are asked for
    wants_digests = asked.kind != "prop" or f"{{{DCACHE}}}Checksums" in asked.names
    digests = stored_digests(archive, status) if wants_digests else {}
    return multistatus(request_path(environ), file_properties(status, digests), asked)


def propfind_root(environ):
    """``PROPFIND /``: 207 for the root itself (Depth 0); a listing of it is 403."""
    depth(environ, listing_refused=True)
    asked = wanted(environ)
    properties = {(DAV, "resourcetype"): "<D:collection/>"}
    return multistatus("/", properties, asked)


def file_properties(status, digests):
    """``{(namespace, name): XML content}`` of a stored file; Checksums only with ``digests``."""
    on_tape = len(status.bytes_per_level) > 1 and any(status.bytes_per_level[1:])
    locality = _LOCALITY.get((status.media == "disk", on_tape), "UNAVAILABLE")
    properties = {
        (DAV, "getcontentlength"): str(status.size),
        (DAV, "getlastmodified"): http_date(status.mtime),
        # the time it was stored: files are write-once, so their ctime is when they came
        (DAV, "creationdate"): time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(status.ctime)),
        (DAV, "getcontenttype"): "application/octet-stream",
        (DAV, "resourcetype"): "",
        (SRM, "FileLocality"): locality,
    }
    if digests:
        properties[(DCACHE, "Checksums")] = escape(checksums_value(digests))
    if status.etag:
        properties[(DAV, "getetag")] = escape(status.etag)
    return properties


def checksums_value(digests):
    """dCache's Checksums value: RFC 3230 ``name=value`` pairs, comma-separated
    (adler32 as 8 hex digits, the others base64, as grid storage sends them)."""
    pairs = []
    for name, digest in sorted(digests.items()):
        if name == "adler32":
            pairs.append(f"adler32={digest.hex():0>8}")
        else:
            label = RFC3230_NAMES.get(name, name).lower()
            pairs.append(f"{label}={base64.b64encode(digest).decode('ascii')}")
    return ",".join(pairs)


def multistatus(path, properties, asked):
    """The 207 answer for one resource at ``path``: the properties ``asked`` for,
    found ones under a 200 propstat, unknown ones under a 404 propstat."""
    found, missing = [], []
    if asked.kind == "prop":
        for name in asked.names:
            key = _split(name)
            (found if key in properties else missing).append(key)
    else:
        found = list(properties)
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n',
        f'<D:multistatus xmlns:D="{DAV}"><D:response><D:href>{escape(quote(path, safe="/"))}</D:href>',
    ]
    if found or not missing:
        parts.append("<D:propstat><D:prop>")
        for key in found:
            value = "" if asked.kind == "propname" else properties[key]
            parts.append(_element(key, value))
        parts.append("</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>")
    if missing:
        parts.append("<D:propstat><D:prop>")
        parts.extend(_element(key, "") for key in missing)
        parts.append("</D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>")
    parts.append("</D:response></D:multistatus>\n")
    body = "".join(parts).encode("utf-8")
    headers = {"Content-Type": CONTENT_TYPE, "Content-Length": str(len(body))}
    return 207, headers, [body]


def _split(name):
    """``(namespace, local)`` of a Clark-notation name (``local`` alone: no namespace)."""
    if name.startswith("{"):
        namespace, _, local = name[1:].partition("}")
        return namespace, local
    return "", name


def _element(key, content):
    """One property element, its namespace declared on it (D: is declared at the top)."""
    namespace, local = key
    if namespace == DAV:
        tag, declare = f"D:{local}", ""
    elif namespace:
        tag, declare = f"ns:{local}", f' xmlns:ns="{escape(namespace, {chr(34): "&quot;"})}"'
    else:
        tag, declare = local, ' xmlns=""'
    if not content:
        return f"<{tag}{declare}/>"
    return f"<{tag}{declare}>{content}</{tag}>"


class RootPlane:
    """The plane of ``/``: PROPFIND is answered here, every other method by the
    control plane (a WSGI app) it wraps.  Errors go to the gate, as from any plane."""

    def __init__(self, control):
        self.control = control

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] != "PROPFIND":
            return self.control(environ, start_response)
        status, headers, body = propfind_root(environ)
        start_response(STATUS_LINES[status], list(headers.items()))
        return body
