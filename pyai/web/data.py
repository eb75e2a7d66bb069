"""The data plane: the methods on ``/<id>``, as plain handlers over the WSGI environ.

They move the data and make up nearly all of an archive's requests, so they
skip every framework (measured in-process: a HEAD through Flask 105 us, here
31 us).  Each parses its request once into the values the archive takes and
returns its answer, ``(status, headers, body)``; PUT returns a generator that
yields ``parking.Wait`` while its client is slow and then returns the answer
(see ``pyai.serving``).  Authentication, 405 and errors are the gate's.

Beside the Pacifica six, PROPFIND (WebDAV stat, ``pyai.web.webdav``), and on POST the token
requests of gfal2 and FTS (``application/macaroon-request``, ``pyai.web.issued_tokens``); under
``namespace = paths`` the id is a path, and MKCOL, MOVE, DELETE and PROPFIND
also work on collections (``pyai.web.collections``).  Every method honours
the RFC 9110 preconditions (``pyai.web.conditions``), checked against the
file's status before the handler runs, so a 304 or 412 never stages a file or
reads a request body.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Callable, Dict, Generator, Iterable, Iterator, Optional, Tuple, Union, cast

from werkzeug.datastructures import EnvironHeaders

from pyai import serving as parking
from pyai.archive import checksums
from pyai.archive.service import Namespace, Upload
from pyai.errors import (
    BackendUnavailable,
    BadRequest,
    Forbidden,
    NotImplementedMethod,
    PreconditionFailed,
    UnsupportedMediaType,
)
from pyai.ops import metrics
from pyai.ops.record import RECORD, Record, record_of
from pyai.web import auth, collections, conditions, issued_tokens, scopes, small_body, webdav
from pyai.web.answers import Answer, Headers, Waiting, json_answer
from pyai.web.auth import InsufficientScope
from pyai.web.dates import http_date, mtime_from
from pyai.web.digest_fields import expected_digests, wanted_digests
from pyai.web.digest_fields import response_headers as digest_headers
from pyai.web.issued_tokens import IssuedGrant
from pyai.web.ranges import parse_byte_range, parse_range_header
from pyai.web.receive import RequestBody, abandon_body
from pyai.web.targets import id_from_uri, query_value, request_path
from pyai.web.tpc.handler import ThirdPartyCopy

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

    from pyai.archive.service import Archive
    from pyai.backends.base import Checksums, FileStatus, Reader
    from pyai.config import Config
    from pyai.web.issued_tokens import IssuedTokens

METHODS = ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "PROPFIND")
PATH_METHODS = (*METHODS, "MKCOL", "MOVE")  # namespace = paths
SEND_BLOCK = 1024 * 1024
INLINE_MAX = 16 * 1024  # bodies up to this size are read and sent from memory (64 KiB measured faster with sendfile)
MAX_PATCH_BODY = 64 * 1024
NOT_FOUND = "File Not Found"
# The answer to a plain request (see DataPlane.plain): its body whole, or the file to send.
PlainAnswer = Tuple[int, Headers, Union[bytes, "FileRange"]]


class DataPlane:
    """The handlers of ``/<id>`` around one Archive; ``issued``: the issuer of token requests'
    tokens (None: a token request is 501)."""

    def __init__(self, archive: Archive, config: Config, issued: Optional[IssuedTokens] = None) -> None:
        self.archive = archive
        self.config = config
        self.issued = issued
        self.handlers: Dict[str, Callable[[str, WSGIEnvironment], Union[Answer, Waiting]]] = {
            "GET": self.get,
            "HEAD": self.head,
            "PUT": self.put,
            "POST": self.post,
            "PATCH": self.move,
            "DELETE": self.delete,
            "PROPFIND": self.propfind,
        }
        self.methods: Tuple[str, ...] = METHODS
        # namespace = paths: the collections' verbs (None under ids)
        self.collections = None if archive.tree is None else collections.Collections(Namespace(archive), config)
        if self.collections is not None:
            self.methods = PATH_METHODS
            self.handlers.update(MKCOL=self.collections.mkcol, MOVE=self.collections.move)
        if config.tpc_remotes:  # third-party copy is on (else COPY is 501, see pyai.web.gate)
            namespace = None if self.collections is None else self.collections.namespace
            self.handlers["COPY"] = ThirdPartyCopy(archive, config, namespace)
            self.methods = (*self.methods, "COPY")

    def __call__(self, environ: WSGIEnvironment) -> Union[Answer, Waiting]:
        """The answer to a request for an id (the gate has checked the method and the token)."""
        method = environ["REQUEST_METHOD"]
        handler = self.handlers[method]
        metrics.transfer_started(environ, method)  # a PUT or GET is in progress until its exchange ends
        ident = id_from_uri(environ, nested=self.collections is not None)
        if ident.endswith("/") and self.collections is not None:
            ident = ident[:-1]  # a collection's URL: the same name
        record = record_of(environ)
        if record is not None:
            record.ident = ident
        self.archive.check()
        if method != "HEAD" and conditions.has_conditions(environ):  # HEAD has the status at hand: its own check
            stopped = self.precondition(ident, environ, self.archive.status(ident))
            if stopped is not None:
                return stopped
        return handler(ident, environ)

    def plain(self, method: str, ident: str, record: Record) -> Optional[PlainAnswer]:
        """A GET or HEAD of ``ident`` that asks for nothing but the file (``pyai.serving``'s plain
        request: no query, conditions, Range, Want-Digest or token): ``(status, headers, body)``
        from the same handlers as any request, or None unless it is a file found.  Then the full
        path answers from the start, with a new Record.  The body is bytes, or the FileRange of a
        file past INLINE_MAX (the server sends it with sendfile, and closes it)."""
        environ: WSGIEnvironment = {"REQUEST_METHOD": method, RECORD: record}  # all a plain request's handler reads
        record.ident = ident
        self.archive.check()
        if method == "HEAD":
            status, headers, _ = self.head(ident, environ)
            return (status, headers, b"") if status == 204 else None
        status, headers, body = self.get(ident, environ)
        metrics.transfer_started(environ, method)  # now that it is answered: never left counted
        if type(body) is list:
            return status, headers, body[0]  # get's one piece, read whole
        return status, headers, cast(FileRange, body)  # file_body's: this environ has no wsgi.file_wrapper

    def precondition(self, ident: str, environ: WSGIEnvironment, status: Optional[FileStatus]) -> Optional[Answer]:
        """The 304 answer when the preconditions say "not modified", None when the request
        goes on; a failed one raises the 412 (``status``: the stored file's, or None)."""
        method = environ["REQUEST_METHOD"]
        if status is None and method not in ("PUT", "PATCH"):
            # Only a request that would succeed without its preconditions evaluates them
            # (RFC 9110 13.2.1): without a file, this one is a 404 whatever they say.
            return None
        result = conditions.outcome(environ, status)
        if result is None:
            return None
        if result == conditions.FAILED:
            if small_body.has_body(environ):
                abandon_body(environ)  # refused before any byte of it is read
            exc = PreconditionFailed(
                "a precondition of the request (If-Match, If-None-Match, If-Unmodified-Since) does not hold",
                detail="precondition failed",
            )
            if status is not None and status.etag:
                # ArchiveError declares no headers; error_answer reads them with getattr
                exc.headers = {"ETag": status.etag}
            raise exc
        if status is None:  # never: only a stored file is "not modified" (conditions.outcome)
            return None
        if method == "HEAD":
            headers = status_headers(status)  # the validators HEAD's 204 sends, and nothing else
        else:
            headers = {"ETag": status.etag} if status.etag else {}  # a FileStatus may know no ETag
            headers["Last-Modified"] = http_date(status.mtime)
        return 304, headers, []

    def head(self, ident: str, environ: WSGIEnvironment) -> Answer:
        """HEAD: 204 with the status headers cartd reads, or 404 with the same headers saying so."""
        status = self.archive.status(ident)
        if status is not None and conditions.has_conditions(environ):
            stopped = self.precondition(ident, environ, status)
            if stopped is not None:
                return stopped
        headers = status_headers(status)
        if status:
            headers.update(self.digest_headers(environ, status.path, status=status))
            record = record_of(environ)
            if record is not None:
                record.medium = status.media
        headers["Content-Type"] = "application/json"
        if status is None:
            headers["Content-Length"] = "0"
        return (204 if status else 404), headers, []

    def get(self, ident: str, environ: WSGIEnvironment) -> Answer:
        """GET: the whole file, a ``byte_range`` of it, or the part a Range header asks for."""
        record = record_of(environ)
        try:
            reader = self.archive.open(ident)
        except BackendUnavailable as exc:
            if record is not None and exc.stage_wait is not None:
                record.medium, record.stage_wait = "tape", exc.stage_wait
            raise
        if record is not None:
            record.medium, record.stage_wait = reader.media, reader.stage_wait
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
            partial = status == 206 or (start, stop) != (0, size)
            headers.update(self.digest_headers(environ, reader.path, reader=reader, partial=partial))
            if start:
                reader.seek(start)
            headers["Content-Length"] = str(stop - start)
            headers["Content-Type"] = "application/octet-stream"
            body: Iterable[bytes]
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

    def digest_headers(
        self,
        environ: WSGIEnvironment,
        path: str,
        reader: Optional[Reader] = None,
        status: Optional[FileStatus] = None,
        partial: bool = False,
    ) -> Headers:
        """``Digest``/``Repr-Digest`` of the stored file: what Want-Digest / Want-Repr-Digest ask
        for (computed once when not stored, see Archive.digests_at), else its primary digest."""
        # the usual request asks for neither: no header mapping is built for it
        asks = "HTTP_WANT_DIGEST" in environ or "HTTP_WANT_REPR_DIGEST" in environ
        wanted = wanted_digests(EnvironHeaders(environ)) if asks else None
        if wanted is None:
            found = self.archive.primary_digest(self.archive.checksums(path, reader))
        else:
            found = self.archive.digests_at(path, wanted.names(), reader=reader, status=status)
        note_digest(environ, found)
        return digest_headers(found, wanted, partial=partial)

    def put(self, ident: str, environ: WSGIEnvironment) -> Waiting:
        """PUT, as a generator: yields a ``parking.Wait`` while the client is slow (only
        where the worker can park it); returns the 201, or raises and leaves the body unread."""
        try:
            if is_form(environ) and not self.config.allow_multipart:
                raise UnsupportedMediaType(
                    "a PUT body is stored as the file: send the raw bytes (curl -T), not a form (multipart/form-data)",
                    detail="body is a multipart form",
                )
            if self.config.allow_overwrite and scopes.lacking(environ, scopes.MODIFY, [request_path(environ)]):
                if self.archive.status(ident) is not None:  # a replacement: storage.create is not enough
                    raise auth.replacing_needs_modify()
            expected = expected_digests(EnvironHeaders(environ))
            algorithms = self.archive.wanted_algorithms(expected)
            config = self.config
            body = RequestBody(
                environ, config.max_body_size, config.receive_timeout or None, algorithms, min_rate=config.min_body_rate
            )
            mtime, warning = mtime_from(environ.get("HTTP_LAST_MODIFIED"))
            upload = Upload(ident, body.length, mtime, expected, algorithms)
            patience = parking.PATIENCE if environ.get(parking.CAN_PARK) and body.fileno() is not None else None
            steps = self.archive.storing(upload, body, patience, lambda: parking.send_continue(environ))
            size = yield from waiting_for(body, steps)
        except BaseException:
            abandon_body(environ)
            raise
        note_digest(environ, self.archive.primary_digest(body.digests()))
        answer: Dict[str, object] = {"message": "File added to archive", "total_bytes": size}
        if warning:
            answer["warning"] = warning
        return json_answer(201, answer)

    def post(self, ident: str, environ: WSGIEnvironment) -> Union[Answer, Waiting]:
        """POST: a token request (``application/macaroon-request``) is answered with a token, any
        other POST stages the file, as Pacifica's always did; its body, if any, is not read (the
        original ignored it), but one of another declared media type is 415: a request this archive
        does not know is never taken for a stage."""
        if issued_tokens.is_token_request(environ):
            return self.issue_token(environ)
        if small_body.has_body(environ) and environ.get("CONTENT_TYPE", "").strip():
            abandon_body(environ)
            raise UnsupportedMediaType(
                f"a POST stages the file and takes no body; a token request is {issued_tokens.MEDIA_TYPE}",
                detail="POST body of another media type",
            )
        return self.stage(ident, environ)

    def issue_token(self, environ: WSGIEnvironment) -> Waiting:
        """A token request: a token of at most the requester's rights on the path (a generator:
        its body may wait for the client, see ``pyai.web.small_body``)."""
        issuer = self.issued
        try:
            if issuer is None:
                raise NotImplementedMethod(
                    "this archive issues no tokens ([auth] token_secret_file is not set)",
                    detail="token requests not enabled",
                )
            rights = auth.rights_of(environ)
            if rights is None:  # never: a secret needs authentication on, and every POST is checked
                raise Forbidden("only a client with a token may ask for one", detail="token request without a token")
            if isinstance(rights, IssuedGrant):
                raise Forbidden(
                    "a token issued here cannot ask for another", detail="token request with an issued token"
                )
        except BaseException:
            if small_body.has_body(environ):
                abandon_body(environ)
            raise
        body = yield from small_body.read(environ, issued_tokens.MAX_REQUEST, self.config, "a token request")
        request = issued_tokens.parse_request(body, request_path(environ))
        beyond = request.beyond(rights.allows)
        if beyond is not None:
            raise InsufficientScope(
                f"the token may not grant {beyond} on {request.path}: the token that asks does not hold it there",
                detail="token request beyond the requester's rights",
            )
        token, lifetime = issuer.issue(rights.name, request)
        return json_answer(200, {"macaroon": token, "expires_in": lifetime}, {"Cache-Control": "no-store"})

    def stage(self, ident: str, environ: WSGIEnvironment) -> Answer:
        """POST: bring the file to disk; 200 when it is there, 202 while it comes."""
        started = time.monotonic()
        on_disk = self.archive.stage(ident)
        record = record_of(environ)
        if record is not None:
            # a POST never waits for the stage it starts: its wait is what starting it took
            record.medium = "disk" if on_disk else "tape"
            record.stage_wait = None if on_disk else time.monotonic() - started
        message = "File was staged" if on_disk else "File is being staged"
        return json_answer(200 if on_disk else 202, {"message": message, "file": ident})

    def move(self, ident: str, environ: WSGIEnvironment) -> Waiting:
        """PATCH: move the server-side file named by the body under the id (a generator: its
        body may wait for the client, see ``pyai.web.small_body``)."""
        data = yield from small_body.read(environ, MAX_PATCH_BODY, self.config, "a PATCH body")
        self.archive.move(ident, patch_source(data))
        return json_answer(200, {"message": "File Moved Successfully"})

    def delete(self, ident: str, environ: WSGIEnvironment) -> Answer:
        if self.collections is not None and self.collections.namespace.collection(ident) is not None:
            return self.collections.delete(ident, environ)
        self.archive.delete(ident)
        return json_answer(200, {"message": "File Removed", "file": ident})

    def propfind(self, ident: str, environ: WSGIEnvironment) -> Waiting:
        """PROPFIND: the WebDAV stat of the file (207), from its status alone: nothing is staged;
        under paths, of a collection too (``pyai.web.collections``)."""
        if self.collections is not None and self.collections.namespace.collection(ident) is not None:
            return self.collections.propfind(ident, environ)
        return webdav.propfind_file(self.archive, ident, environ, self.config)


def is_form(environ: WSGIEnvironment) -> bool:
    """True for a body sent as an HTML form upload (``curl -F``, ``requests.put(files=...)``): its
    bytes are an envelope around the file, which a PUT would store as if it were the file."""
    media_type = environ.get("CONTENT_TYPE", "").partition(";")[0]
    return media_type.strip().lower() == "multipart/form-data"


def note_digest(environ: WSGIEnvironment, digests: Checksums) -> None:
    """The transfer log's digest of the request: the first of ``digests`` ({name: digest}), as stored."""
    record = record_of(environ)
    if record is not None and digests:
        name, digest = next(iter(digests.items()))
        record.digest = checksums.encode(name, digest)


def waiting_for(body: RequestBody, steps: Generator[None, None, int]) -> Generator[parking.Wait, None, int]:
    """Run the archive's ``steps``, yielding a ``parking.Wait`` on the client each time they wait for it."""
    try:
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value
            yield parking.Wait(body.fileno(), body.deadline())
    finally:
        steps.close()  # a request closed while it waits: the archive's writer aborts now, not when collected


def status_headers(status: Optional[FileStatus]) -> Headers:
    """The headers HEAD answers with (cartd reads every one, found or not)."""
    if status is None:
        return {
            "X-Pacifica-Messsage": "File Not found",
            "X-Pacifica-File": NOT_FOUND,
            "X-Content-Length": NOT_FOUND,
            "Last-Modified": NOT_FOUND,
            "X-Pacifica-Ctime": NOT_FOUND,
            "X-Pacifica-Bytes-Per-Level": NOT_FOUND,
            "X-Pacifica-File-Storage-Media": NOT_FOUND,
        }
    return {
        "X-Pacifica-Messsage": "File was found",
        "X-Pacifica-File": status.path,
        "X-Content-Length": str(status.size),
        # epoch seconds, not an HTTP date: cartd calls float() on it
        "Last-Modified": repr(float(status.mtime)),
        "X-Pacifica-Ctime": repr(float(status.ctime)),
        "X-Pacifica-Bytes-Per-Level": repr(tuple(status.bytes_per_level)),
        "X-Pacifica-File-Storage-Media": status.media,
        **({"ETag": status.etag} if status.etag else {}),  # GET's: for conditional HEADs and caches
    }


def if_range_holds(condition: Optional[str], reader: Reader) -> bool:
    """True when there is no If-Range or it still names this file (RFC 9110 13.1.5)."""
    if condition is None:
        return True
    if condition.startswith('"') or condition.startswith("W/"):
        return condition == reader.etag
    return condition == http_date(reader.mtime)


def file_body(environ: WSGIEnvironment, reader: Reader, length: int) -> Iterable[bytes]:
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

    def __init__(self, reader: Reader, length: int) -> None:
        self.reader = reader
        self.left = length

    def fileno(self) -> int:
        return self.reader.fileno()

    def read(self, size: Optional[int] = -1) -> bytes:
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.reader.read(size) if size else b""
        self.left -= len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.read(SEND_BLOCK)
            if not data:
                return
            yield data

    def close(self) -> None:
        self.reader.close()


def patch_source(data: bytes) -> str:
    """The server-side path named by a PATCH body ``{"path": "..."}``."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise BadRequest(
            'the PATCH body must be JSON: {"path": "<file on the server>"}', detail="body is not JSON"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("path"), str) or not doc["path"] or "\0" in doc["path"]:
        raise BadRequest('the PATCH body must be {"path": "<file on the server>"}', detail="body has no path")
    return doc["path"]
