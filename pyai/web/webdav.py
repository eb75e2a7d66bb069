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
read like every small body (``pyai.web.small_body``: capped, parked while the
client is slow) and parsed with defusedxml, whose parser refuses a DTD, an
entity declaration or an external reference in whatever encoding the body
comes, so no entity is ever expanded.  The work stays linear and the answer
small: at most MAX_PROPERTIES properties may be asked, each name and namespace
at most MAX_NAME characters (the parser stops at the first past a cap), and
each namespace is declared once, on the answer's root element.
"""

from __future__ import annotations

import base64
import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Dict, Generator, Iterable, Iterator, List, Mapping, Optional, Tuple
from urllib.parse import quote
from xml.sax.saxutils import escape

import defusedxml
from defusedxml.ElementTree import DefusedXMLParser

from pyai.archive.checksums import RFC3230_NAMES
from pyai.errors import BadRequest, Forbidden, NotFound
from pyai.web import small_body
from pyai.web.answers import STATUS_LINES, Answer, Waiting
from pyai.web.dates import http_date
from pyai.web.receive import abandon_body
from pyai.web.targets import request_path

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from pyai.archive.service import Archive
    from pyai.backends.base import Checksums, FileStatus
    from pyai.config import Config
    from pyai.serving import Wait
    from pyai.web.collections import Collections
    from pyai.web.small_body import BodyReader

MAX_BODY = 64 * 1024  # a propfind naming every property there is fits in far less
# Clients ask for a dozen properties at most (rclone 10, davix 6); every one pyai knows is 8.
MAX_PROPERTIES = 100
# The longest property name or namespace URI taken (dCache's and SRM's are under 50).
MAX_NAME = 512
DAV = "DAV:"
DCACHE = "http://www.dcache.org/2013/webdav"  # dCache's Checksums property
SRM = "http://srm.lbl.gov/StorageResourceManager"  # dCache's FileLocality property
CONTENT_TYPE = "application/xml; charset=utf-8"
DEPTHS = ("0", "1", "infinity")
_LOCALITY = {(True, False): "ONLINE", (False, True): "NEARLINE", (True, True): "ONLINE_AND_NEARLINE"}
# The namespaces of the properties pyai serves: a streamed listing declares them all up front.
KNOWN_NAMESPACES = (DAV, SRM, DCACHE)
# A streamed multistatus goes out in pieces of about this many characters.
STREAM_PIECE = 64 * 1024
# A property's name: (namespace, local name); "" is no namespace.
Key = Tuple[str, str]


def stored_digests(archive: Archive, status: FileStatus) -> Checksums:
    """``{algorithm: digest}`` of every checksum kept for the stored file; {} when none.

    Only what is stored: a stat computes nothing (a Want-Digest on HEAD or GET does).
    """
    return archive.checksums(status.path)


# -- the request --------------------------------------------------------------


class Wanted:
    """What a PROPFIND body asks for: every property (allprop), their names only
    (propname), or the listed ``names`` (Clark notation, ``{namespace}local``)."""

    def __init__(self, kind: str, names: Iterable[str] = ()) -> None:
        self.kind = kind  # "allprop", "propname" or "prop"
        self.names = tuple(names)


def wanted(data: bytes) -> Wanted:
    """The Wanted of a request body (``data``); allprop without one (RFC 4918 9.1)."""
    if not data.strip():
        return Wanted("allprop")
    root = _parse(data)
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
        names = (element.tag for element in children[0] if isinstance(element.tag, str))
        return Wanted("prop", dict.fromkeys(names))  # each once, in order, in linear time
    raise BadRequest("a DAV:propfind holds allprop, propname or prop", detail="unknown propfind member")


def _parse(data: bytes) -> ET.Element:
    """The body's root element, parsed by defusedxml; 400 when it is not a plain XML document
    or asks past the caps, which are checked as each element is parsed (so no small body
    ever makes a large tree)."""
    parser = DefusedXMLParser(target=_CappedTree(), forbid_dtd=True)
    try:
        parser.feed(data)
        return parser.close()
    except defusedxml.DefusedXmlException:
        raise BadRequest(
            "a PROPFIND body may not hold a DTD, entity declarations or external references", detail="DTD in body"
        ) from None
    except (ET.ParseError, ValueError, RecursionError):
        raise BadRequest("the PROPFIND body is not well-formed XML", detail="body is not XML") from None


class _CappedTree(ET.TreeBuilder):
    """The tree of a propfind, refused (raised out of the parser) at the first namespace
    or element past the caps."""

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def start_ns(self, prefix: str, uri: str) -> None:
        if len(uri) > MAX_NAME:
            raise _over_cap(f"namespaces of at most {MAX_NAME} characters")

    def start(self, tag: str, attrs: Dict[str, str]) -> ET.Element:
        self.elements += 1
        if self.elements > MAX_PROPERTIES + 2:  # propfind, prop, and the properties
            raise _over_cap(f"at most {MAX_PROPERTIES} properties")
        if len(tag) > 2 * MAX_NAME + 2:  # {namespace}local
            raise _over_cap(f"names of at most {MAX_NAME} characters")
        return super().start(tag, attrs)


def _over_cap(what: str) -> BadRequest:
    return BadRequest(f"a PROPFIND body may ask for {what}", detail="propfind over its caps")


def depth(environ: WSGIEnvironment, listing_refused: bool = False) -> Optional[str]:
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


# -- the answers --------------------------------------------------------------


def propfind_file(archive: Archive, ident: str, environ: WSGIEnvironment, settings: Config) -> Waiting:
    """``PROPFIND /<id>``: 207 describing the stored file, 404 when the id holds none (a
    generator: its body may wait for the client; ``settings``: the configuration)."""
    depth(environ)  # checked, and otherwise irrelevant: a file has no members
    asked = wanted((yield from read_body(environ, settings)))
    status = archive.status(ident)
    if status is None:
        raise NotFound("no file is stored under this id", detail="not found")
    # the checksums cost a read of their own: only when they are asked for
    wants_digests = asked.kind != "prop" or f"{{{DCACHE}}}Checksums" in asked.names
    digests = stored_digests(archive, status) if wants_digests else {}
    return multistatus(request_path(environ), file_properties(status, digests), asked)


def read_body(environ: WSGIEnvironment, settings: Config) -> Generator[Wait, None, bytes]:
    """The PROPFIND body (see ``pyai.web.small_body.read``)."""
    return small_body.read(environ, MAX_BODY, settings, "a PROPFIND body")


def read_root_body(settings: Config) -> BodyReader:
    """The gate's reader of ``/``'s request bodies: a PROPFIND's, once its Depth is allowed
    (0 under ids; 0 or 1 under paths, where the root is the top collection)."""

    def read(environ: WSGIEnvironment) -> Generator[Wait, None, None]:
        if environ["REQUEST_METHOD"] == "PROPFIND":
            # refused before a byte of the body is read
            depth(environ, listing_refused=settings.namespace != "paths")
            small_body.keep(environ, (yield from read_body(environ, settings)))

    return read


def propfind_root(environ: WSGIEnvironment) -> Answer:
    """``PROPFIND /``: 207 for the root itself (Depth 0); a listing of it is 403.  The body
    has been read (``read_root_body``)."""
    depth(environ, listing_refused=True)
    asked = wanted(small_body.kept(environ))
    properties = {(DAV, "resourcetype"): "<D:collection/>"}
    return multistatus("/", properties, asked)


def file_properties(status: FileStatus, digests: Checksums) -> Dict[Key, str]:
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


def checksums_value(digests: Checksums) -> str:
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


def multistatus(path: str, properties: Mapping[Key, str], asked: Wanted) -> Answer:
    """The 207 answer for one resource at ``path``: the properties ``asked`` for,
    found ones under a 200 propstat, unknown ones under a 404 propstat."""
    # every namespace but DAV: gets a prefix, declared once on the root element
    shown = [_split(name) for name in asked.names] if asked.kind == "prop" else list(properties)
    prefixes = _prefixes(shown)
    parts = [_opening(prefixes), _response(path, properties, asked, prefixes), CLOSING]
    body = "".join(parts).encode("utf-8")
    headers = {"Content-Type": CONTENT_TYPE, "Content-Length": str(len(body))}
    return 207, headers, [body]


def multistatus_stream(responses: Iterable[Tuple[str, Mapping[Key, str]]], asked: Wanted) -> Iterator[bytes]:
    """The body of a 207 for many resources (``(path, properties)`` each, taken one by one),
    sent as it is made: never the whole answer in memory, and in pieces of about STREAM_PIECE."""
    prefixes = _prefixes([(namespace, "") for namespace in KNOWN_NAMESPACES] + [_split(n) for n in asked.names])
    piece = [_opening(prefixes)]
    size = len(piece[0])
    for path, properties in responses:
        text = _response(path, properties, asked, prefixes)
        piece.append(text)
        size += len(text)
        if size >= STREAM_PIECE:
            yield "".join(piece).encode("utf-8")
            piece, size = [], 0
    piece.append(CLOSING)
    yield "".join(piece).encode("utf-8")


def _prefixes(keys: Iterable[Key]) -> Dict[str, str]:
    """``{namespace: prefix}``: ``D`` for DAV:, ``ns<N>`` for the others in the order first met."""
    prefixes = {DAV: "D"}
    for namespace, _ in keys:
        if namespace and namespace not in prefixes:
            prefixes[namespace] = f"ns{len(prefixes)}"
    return prefixes


def _opening(prefixes: Mapping[str, str]) -> str:
    declared = "".join(f' xmlns:{prefix}="{escape(uri, {chr(34): "&quot;"})}"' for uri, prefix in prefixes.items())
    return f'<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus{declared}>'


CLOSING = "</D:multistatus>\n"


def _response(path: str, properties: Mapping[Key, str], asked: Wanted, prefixes: Mapping[str, str]) -> str:
    """One ``D:response``: found properties under a 200 propstat, unknown ones under a 404."""
    found: List[Key] = []
    missing: List[Key] = []
    if asked.kind == "prop":
        for name in asked.names:
            key = _split(name)
            (found if key in properties else missing).append(key)
    else:
        found = list(properties)
    parts = [f"<D:response><D:href>{escape(quote(path, safe='/'))}</D:href>"]
    if found or not missing:
        parts.append("<D:propstat><D:prop>")
        for key in found:
            value = "" if asked.kind == "propname" else properties[key]
            parts.append(_element(prefixes, key, value))
        parts.append("</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>")
    if missing:
        parts.append("<D:propstat><D:prop>")
        parts.extend(_element(prefixes, key, "") for key in missing)
        parts.append("</D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>")
    parts.append("</D:response>")
    return "".join(parts)


def _split(name: str) -> Key:
    """``(namespace, local)`` of a Clark-notation name (``local`` alone: no namespace)."""
    if name.startswith("{"):
        namespace, _, local = name[1:].partition("}")
        return namespace, local
    return "", name


def _element(prefixes: Mapping[str, str], key: Key, content: str) -> str:
    """One property element, named with its namespace's prefix (no namespace: no prefix,
    and no default namespace is ever declared, so none applies)."""
    namespace, local = key
    tag = f"{prefixes[namespace]}:{local}" if namespace else local
    if not content:
        return f"<{tag}/>"
    return f"<{tag}>{content}</{tag}>"


class RootPlane:
    """The plane of ``/``: PROPFIND is answered here, every other method by the
    control plane (a WSGI app) it wraps.  Errors go to the gate, as from any plane.

    ``collections`` (``namespace = paths``): the root is the top collection, and its
    PROPFIND is theirs (Depth 0 with the quota properties, Depth 1 its listing)."""

    def __init__(self, control: WSGIApplication, collections: Optional[Collections] = None) -> None:
        self.control = control  # the body of a PROPFIND was read first (the gate's reads=read_root_body)
        self.collections = collections

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "PROPFIND":
            return self.control(environ, start_response)
        if self.collections is None:
            status, headers, body = propfind_root(environ)
        else:
            status, headers, body = self.collections.propfind_answer("", environ, small_body.kept(environ))
        start_response(STATUS_LINES[status], list(headers.items()))
        return body
