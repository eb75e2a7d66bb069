"""WebDAV collections under ``namespace = paths``: MKCOL, MOVE, DELETE and PROPFIND of a collection.

What grid and sync clients send to write a tree (RFC 4918, as Rucio, FTS,
gfal2 and rclone use it): ``MKCOL`` makes one collection (201; 405 when the
name is taken, 409 when its parent is missing); ``MOVE`` renames a stored file
to its ``Destination`` (201, or 204 when it replaced one, which only
``allow_overwrite`` permits); ``DELETE`` removes an empty collection (204; 409
when it holds anything: nothing is removed recursively); ``PROPFIND`` of a
collection answers ``Depth: 0`` with its own properties, the RFC 4331 quota
ones among them (Rucio reads its space from them), and ``Depth: 1`` with those
and every member's, streamed as it is read, at most ``[archive] max_listing``
members (507 past that, before anything is sent).  A listing of the whole tree
(``Depth: infinity``, or no Depth) is 403.

A Destination is a path on this server (an absolute URL's host is not
compared: behind a proxy the Host a client sees is not ours to know), read
like a request target: each segment decoded alone, an encoded ``/`` refused.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Dict, Iterator, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from pyai.errors import BadRequest, Forbidden, NotFound, UnsupportedMediaType
from pyai.web import scopes, small_body, webdav
from pyai.web.answers import Answer, Waiting, json_answer
from pyai.web.auth import InsufficientScope
from pyai.web.dates import http_date
from pyai.web.receive import abandon_body
from pyai.web.targets import path_id, request_path
from pyai.web.webdav import DAV, Key

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

    from pyai.archive.service import Namespace
    from pyai.backends.base import CollectionStatus, Member
    from pyai.config import Config

NO_CONTENT: Answer = (204, {"Content-Length": "0"}, [])
LISTING_DEPTHS = ("0", "1")


class Collections:
    """The collection verbs over one Namespace (``pyai.archive.service``)."""

    def __init__(self, namespace: Namespace, config: Config) -> None:
        self.namespace = namespace
        self.archive = namespace.archive
        self.config = config
        # Whether a URL path is served by another route (the Tape API, /metrics ...): no file may be
        # moved there, where no URL would reach it.  Set by the app once its routes are known.
        self.routed_elsewhere: Callable[[str], bool] = lambda path: False

    def mkcol(self, ident: str, environ: WSGIEnvironment) -> Answer:
        """MKCOL: one collection.  A body (an XML request for extended MKCOL) is 415, unread."""
        if small_body.has_body(environ):
            abandon_body(environ)
            raise UnsupportedMediaType("MKCOL takes no body", detail="MKCOL with a body")
        self.namespace.make_collection(ident)
        return json_answer(201, {"message": "Collection created", "path": "/" + ident})

    def move(self, ident: str, environ: WSGIEnvironment) -> Answer:
        """MOVE of a stored file to its Destination: 201, or 204 when it replaced a file."""
        if small_body.has_body(environ):
            abandon_body(environ)  # a MOVE has no body: left unread, the connection closes after
        destination = destination_id(environ)
        if destination == "" or self.routed_elsewhere("/" + destination):
            raise Forbidden("the destination is not a path of the archive's namespace", detail="bad destination")
        if scopes.lacking(environ, scopes.MODIFY, ["/" + destination]) is not None:
            raise InsufficientScope(
                "the token grants no storage.modify for the destination", detail="insufficient WLCG scope"
            )
        if self.namespace.rename(ident, destination, overwrite_flag(environ)):
            return NO_CONTENT
        headers = {"Location": "/" + destination}
        return json_answer(201, {"message": "File moved", "file": "/" + destination}, headers)

    def delete(self, ident: str, environ: WSGIEnvironment) -> Answer:
        """DELETE of a collection (the id holds no file): 204 when it was empty and is gone."""
        if small_body.has_body(environ):
            abandon_body(environ)
        self.namespace.remove_collection(ident)
        return NO_CONTENT

    def propfind(self, ident: str, environ: WSGIEnvironment) -> Waiting:
        """PROPFIND of a collection (a generator: its body may wait for the client)."""
        listing_depth(environ)  # refused before a byte of the body is read
        return self.propfind_answer(ident, environ, (yield from webdav.read_body(environ, self.config)))

    def propfind_answer(self, ident: str, environ: WSGIEnvironment, data: bytes) -> Answer:
        """The 207 of a collection's PROPFIND whose body is ``data``; 404 when there is none."""
        depth = listing_depth(environ)
        asked = webdav.wanted(data)
        status = self.namespace.collection(ident)
        if status is None:
            raise NotFound("no file or collection is here", detail="not found")
        space = self.namespace.space()
        own = collection_properties(status, space)
        href = request_path(environ)
        if depth == "0":
            return webdav.multistatus(href, own, asked)
        base = href if href.endswith("/") else href + "/"
        members = self.namespace.members(ident)  # 507 here, before the answer starts
        wants_digests = asked.kind != "prop" or f"{{{webdav.DCACHE}}}Checksums" in asked.names

        def responses() -> Iterator[Tuple[str, Mapping[Key, str]]]:
            yield base, own
            for member in members:
                yield self._member_response(base, member, space, wants_digests)

        return 207, {"Content-Type": webdav.CONTENT_TYPE}, webdav.multistatus_stream(responses(), asked)

    def _member_response(
        self, base: str, member: Member, space: Optional[Tuple[int, int]], wants_digests: bool
    ) -> Tuple[str, Mapping[Key, str]]:
        if member.file is not None:
            digests = self.archive.checksums(member.file.path) if wants_digests else {}
            return base + member.name, webdav.file_properties(member.file, digests)
        assert member.collection is not None  # a Member is a file or a collection
        return base + member.name + "/", collection_properties(member.collection, space)


def collection_properties(status: CollectionStatus, space: Optional[Tuple[int, int]]) -> Dict[Key, str]:
    """``{(namespace, name): XML content}`` of a collection, with RFC 4331's quota when ``space``
    (bytes used, bytes available) is known: Rucio reads both from an allprop."""
    properties = {
        (DAV, "resourcetype"): "<D:collection/>",
        (DAV, "getlastmodified"): http_date(status.mtime),
        (DAV, "creationdate"): time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(status.ctime)),
    }
    if space is not None:
        properties[(DAV, "quota-used-bytes")] = str(space[0])
        properties[(DAV, "quota-available-bytes")] = str(space[1])
    return properties


def listing_depth(environ: WSGIEnvironment) -> str:
    """The Depth of a collection's PROPFIND, 0 or 1; a listing of the whole tree (infinity, or no
    Depth, which RFC 4918 reads as infinity) is 403 and its body stays unread."""
    value = webdav.depth(environ)
    if value not in LISTING_DEPTHS:
        if small_body.has_body(environ):
            abandon_body(environ)
        raise Forbidden(
            "a collection is listed one level at a time: send Depth: 0 or Depth: 1", detail="listing too deep"
        )
    return value


def overwrite_flag(environ: WSGIEnvironment) -> bool:
    """The Overwrite header (RFC 4918 10.6): True for T or none, False for F; 400 otherwise."""
    value = environ.get("HTTP_OVERWRITE", "T").strip().upper()
    if value not in ("T", "F"):
        raise BadRequest("Overwrite must be T or F", detail="bad Overwrite")
    return value == "T"


def destination_id(environ: WSGIEnvironment) -> str:
    """The id a MOVE's Destination names (an absolute URL or an absolute path on this server)."""
    value = environ.get("HTTP_DESTINATION", "").strip()
    if not value:
        raise BadRequest("a MOVE needs a Destination header", detail="no Destination")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise BadRequest("the Destination is not a URL", detail="bad Destination") from None
    if parts.scheme not in ("", "http", "https") or parts.query or parts.fragment or not parts.path.startswith("/"):
        raise BadRequest("the Destination must be an http(s) URL or an absolute path", detail="bad Destination")
    raw = parts.path[1:]
    return path_id(raw[:-1] if raw.endswith("/") else raw)
