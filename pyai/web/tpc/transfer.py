"""One third-party copy, on a thread of its own: pull a remote file under an id, or push one there.

A pull HEADs the source (its size, its digest, a 404 or 403 told before the
copy is accepted), then GETs it and stores the body as a PUT stores one
(``Archive.storing``: invisible until complete, durable, digests computed on
the way, write-once): the digest the source offers (asked for with
``Want-Digest: adler32``) is the expected one, so a mismatch keeps nothing.
A push PUTs the stored file with its ``Content-Length`` and ``Expect:
100-continue`` (a redirect before the body is followed, as dCache's door
sends one to its pool), then HEADs the destination and compares the digest
it offers with the stored one.  With ``RequireChecksumVerification: true`` a
remote that offers no digest fails the copy.

The thread blocks on the remote and on the storage, never on the client: the
answer's iterable (``pyai.web.tpc.markers``) wakes on the copy's eventfd
(``fileno()``) when the copy is accepted or refused and when it ends, and
reads ``moved`` for its progress markers.  ``cancel`` (the client left, the
worker stops) shuts the remote's socket down, so a blocked read or send
returns at once, and a pull's partial file is removed.
"""

from __future__ import annotations

import http.client
import io
import logging
import os
import select
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, cast

from pyai import serving
from pyai.archive import checksums
from pyai.archive.service import Upload
from pyai.errors import (
    ArchiveError,
    BadRequest,
    Forbidden,
    IncompleteBody,
    InsufficientStorage,
    NotFound,
    PayloadTooLarge,
)
from pyai.serving import run_to_end
from pyai.web.dates import mtime_from
from pyai.web.digest_fields import expected_digests
from pyai.web.receive import RequestBody
from pyai.web.tpc.client import MAX_REDIRECTS, REDIRECTS, Client, Headers, RemoteFailed, Url, describe, redirected
from pyai.web.tpc.remotes import RemoteRefused

if TYPE_CHECKING:
    from pyai.archive.service import Archive
    from pyai.backends.base import Checksums, Reader, Writer

log = logging.getLogger("pyai")
BLOCK = 1024 * 1024  # what a pull reads at once
SEND_BLOCK = 8 * 1024 * 1024  # what a push sends at once (between looks at the cancel flag)
CONTINUE_WAIT = 1.0  # how long a push waits for 100 Continue before it sends the body anyway (RFC 9110 10.1.1)
MAX_HEAD = 64 * 1024  # the most of an interim answer's head a push reads
VERIFY_WITH = "adler32"  # the digest asked of the remote (what davix, XRootD and dCache offer)


class Cancelled(Exception):
    """The copy was cancelled (its client left, the worker stops)."""


class Copy:
    """A pull (``source`` set) or a push of the file under ``ident``, through ``client``.

    ``headers``: what every request to the remote carries (the TransferHeaders);
    ``verify``: RequireChecksumVerification; ``max_size``: the most a pull may store (0: no limit);
    ``min_rate``: the bytes a second the remote must average once ``client.timeout`` has passed (0: none),
    so a remote that trickles does not hold a copy slot for ever.
    """

    def __init__(
        self,
        archive: Archive,
        ident: str,
        url: Url,
        *,
        pull: bool,
        headers: Headers,
        client: Client,
        verify: bool,
        max_size: int,
        min_rate: int = 0,
        on_end: Optional[Callable[[], object]] = None,
    ) -> None:
        self.archive = archive
        self.ident = ident
        self.url = url
        self.pull = pull
        self.headers = headers
        self.client = client
        self.verify = verify
        self.max_size = max_size
        self.min_rate = min_rate
        self.began = time.monotonic()
        self.on_end = on_end  # called (no arguments) once the thread ends: the worker's copy slot
        self.sent = 0  # bytes a push sent so far, or a pull received through Python
        # where a C receive is under way, how far it is (the file's offset: splice moves it)
        self.progress: Optional[Callable[[], int]] = None
        self.peer = ""  # "tcp:<ip>:<port>" of the remote connection
        self.accepted = False  # the checks passed: the transfer runs (the answer is 202)
        self.refusal: Optional[ArchiveError] = None  # the copy was refused before it began
        self.outcome: Optional[str] = None  # the answer's last line, once the copy ended
        self._cancelled = threading.Event()
        self._why = ""
        self._lock = threading.Lock()  # the eventfd and the sockets, between the thread and the canceller
        self._fd: Optional[int] = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._sockets: List[socket.socket] = []

    @property
    def moved(self) -> int:
        """Bytes received from (pull) or sent to (push) the remote so far."""
        progress = self.progress
        if progress is not None:
            try:
                return progress()
            except OSError:
                pass  # the receive ended meanwhile
        return self.sent

    @property
    def received(self) -> int:
        """The transfer log's body bytes (``pyai.ops.record``): the bytes moved."""
        return self.moved

    def fileno(self) -> int:
        """The eventfd that turns readable when the copy is accepted or refused, and when it ends."""
        if self._fd is None:
            raise ValueError("the copy's descriptor is released")
        return self._fd

    def start(self) -> None:
        threading.Thread(target=self._run, name="pyai-copy", daemon=True).start()

    def cancel(self, why: str) -> None:
        """Stop the transfer (from any thread): its sockets are shut down, a pull keeps nothing."""
        with self._lock:
            if self._cancelled.is_set():
                return
            self._why = why
            self._cancelled.set()
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def release(self) -> None:
        """The answer is done with the copy: its eventfd closes (the thread no longer signals it)."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def clear(self) -> None:
        """Take the eventfd's signal (it turns readable again at the next one)."""
        fd = self._fd
        if fd is not None:
            try:
                os.eventfd_read(fd)
            except BlockingIOError:
                pass

    # ---- the copy's thread -------------------------------------------------

    def _run(self) -> None:
        try:
            try:
                if self.pull:
                    self._pull()
                else:
                    self._push()
                self.outcome = "success: Created"
            except Cancelled:
                self.outcome = f"aborted: {self._why}"
            except ArchiveError as exc:
                if not self.accepted:
                    self.refusal = exc
                self.outcome = f"failure: {exc.message}"
            except RemoteRefused as exc:
                if not self.accepted:
                    self.refusal = Forbidden(str(exc), detail="remote not allowed")
                self.outcome = f"failure: {exc}"
            except RemoteFailed as exc:
                self.outcome = f"failure: {exc}"
            except OSError as exc:
                self.outcome = f"failure: {'the copy was cancelled' if self._cancelled.is_set() else describe(exc)}"
            except Exception as exc:  # noqa: BLE001 - a copy's failure is its last line, never the worker's
                log.exception("third-party copy of %s failed", self.ident)
                self.outcome = f"failure: {type(exc).__name__}"
            if self._cancelled.is_set() and not self.outcome.startswith("success"):
                self.outcome = f"aborted: {self._why}"
        finally:
            with self._lock:
                for sock in self._sockets:
                    sock.close()
                self._sockets.clear()
            if self.on_end is not None:
                self.on_end()
            self._signal()

    def _signal(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.eventfd_write(self._fd, 1)

    def _accept(self) -> None:
        """The checks passed: the answer begins (202 and the first marker)."""
        self.accepted = True
        self._signal()

    def _track(self, sock: socket.socket) -> None:
        """A socket to the remote, to shut down on cancel (at once, if that came first)."""
        with self._lock:
            self._sockets.append(sock)
            if self._cancelled.is_set():
                raise Cancelled()

    def _check_rate(self, moved: int) -> None:
        """RemoteFailed when the remote averages under ``min_rate`` once ``timeout`` has passed."""
        if not self.min_rate:
            return
        elapsed = time.monotonic() - self.began
        if elapsed > self.client.timeout and moved < (elapsed - self.client.timeout) * self.min_rate:
            raise RemoteFailed(f"the remote moves fewer than {self.min_rate} bytes a second ([archive] min_body_rate)")

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled()

    def _request(self, method: str, url: Url, headers: Headers) -> http.client.HTTPResponse:
        conn, response, _, peer = self.client.request(method, url, headers, self._track)
        self.peer = peer
        response.connection = conn  # type: ignore[attr-defined]  # closed with it (see _close)
        return response

    # ---- pull ---------------------------------------------------------------

    def _pull(self) -> None:
        headers = {**self.headers, "Want-Digest": VERIFY_WITH}
        head = self._request("HEAD", self.url, headers)
        _close(head)
        offered: Checksums = {}
        length: Optional[int] = None
        if head.status == 404:
            raise NotFound(f"the source {self.url.host} has no such file (404)", detail="copy source not found")
        if head.status in (401, 403):
            raise Forbidden(
                f"the source {self.url.host} refused the copy ({head.status} {head.reason}): "
                "send its token as TransferHeaderAuthorization",
                detail="copy source refused",
            )
        if 200 <= head.status < 300:  # else (a HEAD it does not serve, a failure) the GET tells
            length = _length(head)
            offered = _offered(head)
            self._check_size(length)
        self._check_cancelled()
        self._accept()
        response = self._request("GET", self.url, headers)
        try:
            if response.status != 200:
                raise RemoteFailed(f"the source answered {response.status} {response.reason}")
            length = _length(response)
            offered = _offered(response) or offered
            if self.verify and not offered:
                raise RemoteFailed("the source offers no digest to verify the copy with (RequireChecksumVerification)")
            mtime, _ = mtime_from(response.getheader("Last-Modified"))
            algorithms = self.archive.wanted_algorithms(offered)
            upload = Upload(self.ident, length, mtime, offered, algorithms)
            body = _RemoteBody(self, response, length, algorithms)
            try:
                run_to_end(self.archive.storing(upload, body))
            except BadRequest as exc:
                if not body.complete:
                    raise
                raise RemoteFailed(
                    "the bytes received do not match the digest the source offers: nothing was stored"
                ) from exc
        finally:
            _close(response)

    def _check_size(self, length: Optional[int]) -> None:
        """413 before the copy begins when the source is larger than a file may be here, 507 when
        the storage has less room than that."""
        if length is not None and self.max_size and length > self.max_size:
            raise PayloadTooLarge(
                f"the source holds {length} bytes, more than the {self.max_size} a file may have here",
                detail="copy source too large",
            )
        space = getattr(self.archive.backend, "space", None)
        found = space() if length and space is not None else None
        if found is not None and length is not None and found[1] < length:
            raise InsufficientStorage(
                f"the source holds {length} bytes and the archive has {found[1]} free", detail="no space for the copy"
            )

    # ---- push ---------------------------------------------------------------

    def _push(self) -> None:
        status = self.archive.status(self.ident)
        if status is None:
            raise NotFound("no file is stored under this id", detail="not found")
        reader = self.archive.open(self.ident)
        try:
            self._check_cancelled()
            self._accept()
            response = self._put(reader, status.size)
            _close(response)
            if not 200 <= response.status < 300:
                raise RemoteFailed(f"the destination answered {response.status} {response.reason}")
        finally:
            reader.close()
        self._verify_pushed(status.size)

    def _put(self, reader: Reader, size: int) -> http.client.HTTPResponse:
        url, headers = self.url, {**self.headers, "Content-Length": str(size), "Expect": "100-continue"}
        for _ in range(MAX_REDIRECTS + 1):
            conn, self.peer = self.client.connect(url, self._track)
            try:
                conn.putrequest("PUT", url.target, skip_accept_encoding=True)
                for name, value in headers.items():
                    conn.putheader(name, value)
                conn.endheaders()
                sock = conn.sock
                stream = sock.makefile("rb")
                early = _interim(sock, stream)
                if early is None:
                    self._send(sock, reader, size)
                    early = _response(stream)
                elif early.status in REDIRECTS and early.getheader("Location"):
                    url, headers = redirected(url, early.getheader("Location", ""), headers)
                    conn.close()
                    continue
                early.connection = conn  # type: ignore[attr-defined]
                return early
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._check_cancelled()
                raise RemoteFailed(f"PUT {url.host}: {describe(exc)}") from None
        raise RemoteFailed(f"PUT {url.host}: too many redirects")

    def _send(self, sock: socket.socket, reader: Reader, size: int) -> None:
        """The stored bytes: with sendfile where the file has a descriptor and the socket no TLS,
        else read a block at a time (an HPSS file: socket.sendfile would read it 8 KiB at a time)."""
        reader.seek(0)
        try:
            direct = not isinstance(sock, ssl.SSLSocket) and reader.fileno() >= 0
        except (OSError, ValueError):  # io.UnsupportedOperation: no local descriptor
            direct = False
        while self.sent < size:
            self._check_cancelled()
            count = min(SEND_BLOCK, size - self.sent)
            if direct:
                sent = sock.sendfile(reader, self.sent, count)  # a Reader has the fileno, seek and read it uses
            else:
                data = reader.read(min(count, BLOCK))
                sock.sendall(data)
                sent = len(data)
            if not sent:
                raise RemoteFailed("the stored file ended before its size")
            self.sent += sent
            self._check_rate(self.sent)

    def _verify_pushed(self, size: int) -> None:
        """HEAD the destination: its size and offered digest against the stored file's."""
        head = self._request("HEAD", self.url, {**self.headers, "Want-Digest": VERIFY_WITH})
        _close(head)
        if not 200 <= head.status < 300:
            raise RemoteFailed(f"the destination answered {head.status} {head.reason} to the HEAD that verifies it")
        length = _length(head)
        if length is not None and length != size:
            raise RemoteFailed(f"the destination holds {length} bytes, not the {size} sent")
        offered = _offered(head)
        if not offered:
            if self.verify:
                raise RemoteFailed("the destination offers no digest to verify the copy with")
            return
        stored = self.archive.digests(self.ident, list(offered))
        for name, digest in offered.items():
            if name in stored and stored[name] != digest:
                raise RemoteFailed(f"the destination's {name} differs from the stored file's")


class _RemoteBody:
    """A pull's body, as ``Archive.storing`` receives one (``pyai.archive.service.Body``)."""

    def __init__(
        self, copy: Copy, response: http.client.HTTPResponse, length: Optional[int], algorithms: Sequence[str]
    ) -> None:
        self.copy = copy
        self.response = response
        self.length = length
        self.received = 0
        self.complete = False
        self.algorithms = algorithms
        self._digesting = checksums.digesting(algorithms)
        self._native: Optional[RequestBody] = None  # the receive in C, when it took the body

    def digests(self) -> Checksums:
        if self._native is not None:
            return self._native.digests()
        return self._digesting.digests()

    def receive(self, writer: Writer, patience: Optional[float]) -> bool:
        fd = writer.fileno()
        sock = self.response.connection.sock  # type: ignore[attr-defined]  # set by Copy._request
        if fd is not None and self.length and not isinstance(sock, ssl.SSLSocket):
            return self._receive_native(fd, sock)
        copy = self.copy
        limit = copy.max_size
        while True:
            copy._check_cancelled()
            try:
                data = self.response.read1(BLOCK)  # what one receive brings: the markers count as it comes
            except http.client.IncompleteRead as exc:
                raise RemoteFailed(f"the source closed after {self.received} of {self.length} bytes") from exc
            except (OSError, http.client.HTTPException) as exc:
                copy._check_cancelled()
                raise RemoteFailed(f"receiving from the source: {describe(exc)}") from None
            if not data:
                break
            count = len(data)
            self._digesting.update(data)
            writer.write(data)
            self.received += count
            copy.sent = self.received
            if limit and self.received > limit:
                raise PayloadTooLarge(f"the source sends more than the {limit} bytes a file may have here")
            copy._check_rate(self.received)
        copy._check_cancelled()
        if self.length is not None and self.received != self.length:
            raise RemoteFailed(f"the source closed after {self.received} of {self.length} bytes")
        self.complete = True
        return True

    def _receive_native(self, fd: int, sock: socket.socket) -> bool:
        """Plain http with a Content-Length, into a file: the PUT's own receive (``pyai.web.receive``),
        from the socket to the file in C (spliced, the digests beside), after what http.client
        read past the answer's head."""
        copy, length = self.copy, cast(int, self.length)
        stream = self.response.fp
        ahead = stream.peek(1)[:length]  # the body's first bytes (waiting for them: they are coming)
        stream.read(len(ahead))
        source = serving.BodySource(sock, bytearray(ahead), length, max_line=MAX_HEAD, max_trailer=MAX_HEAD)
        environ = {"CONTENT_LENGTH": str(length), serving.BODY: source}
        body = RequestBody(environ, copy.max_size, copy.client.timeout, self.algorithms, min_rate=copy.min_rate)
        self._native = body
        copy.progress = lambda: os.lseek(fd, 0, os.SEEK_CUR)
        try:
            body.receive(_Descriptor(fd))
        except (IncompleteBody, OSError) as exc:
            copy._check_cancelled()
            if isinstance(exc, IncompleteBody):
                raise RemoteFailed(f"the source closed after {exc.received} of {length} bytes") from None
            raise RemoteFailed(f"receiving from the source: {describe(exc)}") from None
        finally:
            copy.progress = None
            copy.sent = self.received = body.received
        copy._check_cancelled()
        self.complete = True
        return True


class _Descriptor:
    """A writer's descriptor, as ``RequestBody.receive`` takes a sink (its bytes go there in C)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def write(self, data: bytes) -> None:
        raise AssertionError("a direct receive writes through the descriptor")


def _length(response: http.client.HTTPResponse) -> Optional[int]:
    value = response.getheader("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _offered(response: http.client.HTTPResponse) -> Dict[str, bytes]:
    """The digests a remote's answer offers (Digest, Content-Digest, Content-MD5), {} when none it can."""
    try:
        return expected_digests(response.headers)
    except ArchiveError:
        return {}  # malformed, or only algorithms this archive does not know


def _close(response: http.client.HTTPResponse) -> None:
    response.close()
    conn = getattr(response, "connection", None)
    if conn is not None:
        conn.close()


def _interim(sock: socket.socket, stream: io.BufferedReader) -> Optional[http.client.HTTPResponse]:
    """After a PUT's head: None once 100 Continue came (or none came in CONTINUE_WAIT: the body
    goes anyway), else the remote's final answer (a refusal, a redirect) before the body."""
    if not select.select([sock], [], [], CONTINUE_WAIT)[0] and not getattr(sock, "pending", lambda: 0)():
        return None
    first = stream.peek(12)[:12]
    if first[:9] in (b"HTTP/1.1 ", b"HTTP/1.0 ") and first[9:12] == b"100":
        taken = 0
        while True:  # the interim head: read up to its blank line
            line = stream.readline(MAX_HEAD)
            taken += len(line)
            if not line or taken >= MAX_HEAD:
                raise RemoteFailed("the destination's 100 Continue did not end")
            if line in (b"\r\n", b"\n"):
                return None
    return _response(stream)


def _response(stream: io.BufferedReader) -> http.client.HTTPResponse:
    """The answer read from ``stream`` (the connection's one buffered reader, so nothing read is lost)."""
    response = http.client.HTTPResponse(_Made(stream), method="PUT")  # type: ignore[arg-type]
    response.begin()
    return response


class _Made:
    """What ``http.client.HTTPResponse`` takes a socket for: only its ``makefile``."""

    def __init__(self, stream: io.BufferedReader) -> None:
        self.stream = stream

    def makefile(self, mode: str, *args: object) -> object:
        return self.stream
