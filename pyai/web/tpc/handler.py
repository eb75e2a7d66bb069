"""COPY: HTTP third-party copy as FTS, gfal2 and davix drive it, answered with performance markers.

``COPY /<id>`` with ``Source: <url>`` pulls that URL's file under the id;
with ``Destination: <url>`` it pushes the id's file there.  The request is
checked before anything moves (the headers, the token's rights on the path,
write-once, the copy slots of this worker), then the copy's own thread
checks the remote (the allow-list, its HEAD) and the answer begins: ``202``,
``text/plain``, chunked, a performance marker at once and then at least every
``MARKER_INTERVAL`` seconds, and one last line, ``success: Created``,
``failure: <why>`` or ``aborted: <why>`` (the grammar davix parses: lines
under 1024 bytes, a space after each colon, no other line starting with
``End``).  A refusal the copy's thread finds before it begins (a remote the
list does not allow: 403; a source that has no such file: 404; too large: 413
or 507) is a status, not a last line.

The answer waits for the copy without a thread: its iterable yields a
``pyai.serving.Wait`` on the copy's eventfd, with a deadline at the next
marker and at most ``LOOK`` seconds away, when it also looks whether the
client is still there (a client that left cancels the copy).
"""

from __future__ import annotations

import os
import re
import select
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Dict, Generator, Iterator, Optional, Tuple, Union, cast

from pyai import serving as parking
from pyai.archive.service import id_holds_a_file
from pyai.errors import ArchiveError, BadRequest, Conflict, NotFound, PreconditionFailed
from pyai.ops.record import record_of
from pyai.web import auth, scopes
from pyai.web.answers import Waiting
from pyai.web.receive import abandon_body
from pyai.web.small_body import has_body
from pyai.web.targets import request_path
from pyai.web.tpc.client import Client, parse_url
from pyai.web.tpc.remotes import Remotes
from pyai.web.tpc.transfer import Copy

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

    from pyai.archive.service import Archive, Namespace
    from pyai.config import Config

MARKER_INTERVAL = 5.0  # seconds between performance markers (what XRootD sends, and what FTS expects at least)
LOOK = 1.0  # how often a waiting answer looks whether its client left
MAX_LINE = 1000  # a line of the answer is under davix's 1024 bytes
MAX_STREAMS = 100
RETRY_AFTER = 10  # seconds a client is told to wait when this worker's copies are all taken
# TransferHeader<X> fields never forwarded: the framing and the connection are the copy's own.
NOT_FORWARDED = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "expect", "te", "upgrade", "keep-alive",
     "want-digest", "proxy-connection"}
)  # fmt: skip
_PREFIX = "HTTP_TRANSFERHEADER"
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


class CopiesBusy(ArchiveError, status=503):
    """Every copy slot of this worker is taken: 503 with Retry-After."""

    retry_after = RETRY_AFTER


class ThirdPartyCopy:
    """The COPY handler of an archive: ``remotes`` and the rest of ``[tpc]`` from ``config``;
    ``namespace``: the collections under paths (None under ids)."""

    def __init__(self, archive: Archive, config: Config, namespace: Optional[Namespace]) -> None:
        self.archive = archive
        self.config = config
        self.namespace = namespace
        context = ssl.create_default_context(cafile=config.tpc_ca_file or None)
        self.client = Client(Remotes(config.tpc_remotes), context, config.tpc_timeout)
        self.max_copies = config.tpc_max_copies
        self._running = 0
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self._lock = threading.Lock()  # the copies of the parent are not this process's
        self._running = 0

    def __call__(self, ident: str, environ: WSGIEnvironment) -> Waiting:
        if has_body(environ):
            abandon_body(environ)
            raise BadRequest("a COPY takes no body", detail="COPY with a body")
        source, destination = environ.get("HTTP_SOURCE"), environ.get("HTTP_DESTINATION")
        if (source is None) == (destination is None):
            raise BadRequest(
                "a COPY names exactly one of Source (pull) and Destination (push)", detail="COPY without one remote"
            )
        pull = source is not None
        try:
            url = parse_url((source or destination or "").strip())
        except ValueError as exc:
            raise BadRequest(f"{'Source' if pull else 'Destination'}: {exc}", detail="bad COPY URL") from None
        options = _options(environ)
        self._check_rights(environ, pull)
        if pull:
            self._check_target(ident, environ, overwrite=options["overwrite"])
        elif self.archive.status(ident) is None:
            raise NotFound("no file is stored under this id", detail="not found")
        self._take_slot()
        copy = Copy(
            self.archive,
            ident,
            url,
            pull=pull,
            headers=_forwarded(environ),
            client=self.client,
            verify=options["verify"],
            max_size=self.config.max_body_size,
            min_rate=self.config.min_body_rate,
            on_end=self._free_slot,
        )
        record = record_of(environ)
        if record is not None and pull:
            record.body = copy  # the bytes it received are the request's (a push's go to the remote)
        try:
            copy.start()
        except BaseException:  # no thread: nothing will free the slot or the eventfd
            self._free_slot()
            copy.release()
            raise
        return self._answer(copy, environ)

    def _check_rights(self, environ: WSGIEnvironment, pull: bool) -> None:
        """A pull needs the rights of a PUT on the path, a push those of a GET."""
        rights = auth.rights_of(environ)
        needed = scopes.CREATE if pull else scopes.READ
        if rights is not None and not rights.allows(needed, request_path(environ)):
            raise auth.InsufficientScope(
                f"a COPY that {'pulls' if pull else 'pushes'} needs {scopes.describe(needed)} on the path",
                detail="insufficient rights for COPY",
            )

    def _check_target(self, ident: str, environ: WSGIEnvironment, overwrite: bool) -> None:
        """Where a pull stores: a name that may take the file (write-once, Overwrite, collections)."""
        namespace = self.namespace
        if namespace is not None:
            if namespace.collection(ident) is not None:
                raise Conflict("a collection has this name: a COPY stores files", detail="COPY onto a collection")
            parent = ident.rpartition("/")[0]
            if parent and namespace.collection(parent) is None:
                raise Conflict(
                    "the collection to copy into does not exist: make it first (MKCOL)", detail="no such collection"
                )
        if self.archive.status(ident) is None:
            return
        if not overwrite:
            raise PreconditionFailed("the id holds a file and the COPY says Overwrite: F", detail="COPY target taken")
        if not self.config.allow_overwrite:
            raise id_holds_a_file()
        if scopes.lacking(environ, scopes.MODIFY, [request_path(environ)]):  # as a PUT that replaces
            raise auth.replacing_needs_modify()

    def _take_slot(self) -> None:
        with self._lock:
            if self._running >= self.max_copies:
                raise CopiesBusy(
                    f"this worker runs {self.max_copies} copies already: try again later", detail="copy slots taken"
                )
            self._running += 1

    def _free_slot(self) -> None:
        with self._lock:
            self._running -= 1

    def _answer(self, copy: Copy, environ: WSGIEnvironment) -> Waiting:
        """Wait for the copy's thread to accept or refuse it, then answer."""
        can_park = bool(environ.get(parking.CAN_PARK))
        client = _client_socket(environ)
        streaming = False
        try:
            while not copy.accepted and copy.outcome is None:
                yield from _wait(copy, time.monotonic() + LOOK, can_park)
                if client is not None and _gone(client):
                    copy.cancel("the client disconnected")
            if copy.refusal is not None:
                raise copy.refusal
            streaming = True
            # the body yields Waits between its pieces: the server's business (pyai.serving), not the gate's
            return 202, {"Content-Type": "text/plain"}, cast("Iterator[bytes]", _markers(copy, client, can_park))
        finally:
            if not streaming:
                copy.cancel("the copy was not answered")
                copy.release()


def _markers(copy: Copy, client: Optional[socket.socket], can_park: bool) -> Iterator[Union[bytes, parking.Wait]]:
    """The answer's body: markers while the copy runs, then its last line."""
    try:
        yield marker(copy.moved, copy.peer)  # the head goes with it: the client knows the copy began
        due = time.monotonic() + MARKER_INTERVAL
        while copy.outcome is None:
            yield from _wait(copy, min(due, time.monotonic() + LOOK), can_park)
            if client is not None and _gone(client):
                copy.cancel("the client disconnected")
                return
            if copy.outcome is None and time.monotonic() >= due:
                yield marker(copy.moved, copy.peer)
                due = time.monotonic() + MARKER_INTERVAL
        yield last_line(copy.outcome)
    finally:
        if copy.outcome is None:
            copy.cancel("the client disconnected")
        copy.release()


def marker(moved: int, peer: str) -> bytes:
    """A performance marker (davix's grammar, as XRootD and dCache send it)."""
    lines = [
        "Perf Marker",
        f"Timestamp: {int(time.time())}",
        "Stripe Index: 0",
        f"Stripe Bytes Transferred: {moved}",
        "Total Stripe Count: 1",
    ]
    if peer:
        lines.append(f"RemoteConnections: {peer}")
    lines.append("End")
    return ("\n".join(lines) + "\n").encode()


def last_line(outcome: str) -> bytes:
    """The answer's last line: one line, under davix's limit, never starting with End."""
    text = " ".join(outcome.split())
    return (text[:MAX_LINE] + "\n").encode("utf-8", "replace")


def _wait(copy: Copy, deadline: float, can_park: bool) -> Generator[parking.Wait, None, None]:
    """Until the copy signals or ``deadline``: parked in the worker's poller, or (another server) blocking."""
    if can_park:
        yield parking.Wait(copy.fileno(), deadline)
    else:
        select.select([copy.fileno()], [], [], max(0.0, deadline - time.monotonic()))
    copy.clear()


def _client_socket(environ: WSGIEnvironment) -> Optional[socket.socket]:
    """The client's socket, to see it leave (pyai's server only; not through TLS)."""
    source = environ.get(parking.BODY)
    sock = getattr(source, "sock", None)
    return None if sock is None or isinstance(sock, ssl.SSLSocket) else sock


def _gone(sock: socket.socket) -> bool:
    """Whether the client closed its connection (a COPY has no body: whatever it sends is a next request)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def _options(environ: WSGIEnvironment) -> Dict[str, bool]:
    """The COPY's own header fields, checked: Overwrite, RequireChecksumVerification, Credential,
    X-Number-Of-Streams (the rest, Secure-Redirection, ClientInfo, SciTag, ..., are ignored)."""
    overwrite = _flag(environ, "HTTP_OVERWRITE", "Overwrite", ("t", "f"), "t")
    verify = _flag(
        environ, "HTTP_REQUIRECHECKSUMVERIFICATION", "RequireChecksumVerification", ("true", "false"), "false"
    )
    # gfal2 with a token for the passive end says it twice (its token code and davix's copy each add one)
    credential = environ.get("HTTP_CREDENTIAL", "none").lower()
    if any(part.strip() != "none" for part in credential.split(",")):
        raise BadRequest(
            "Credential: this archive takes no delegated credential: send the remote's token as "
            "TransferHeaderAuthorization",
            detail="COPY credential",
        )
    streams = environ.get("HTTP_X_NUMBER_OF_STREAMS")
    if streams is not None and not (streams.strip().isdigit() and int(streams) <= MAX_STREAMS):
        raise BadRequest(f"X-Number-Of-Streams is a number from 0 to {MAX_STREAMS}", detail="COPY streams")
    return {"overwrite": overwrite, "verify": verify}


def _flag(environ: WSGIEnvironment, key: str, name: str, values: Tuple[str, str], default: str) -> bool:
    value = environ.get(key, default).strip().lower()
    if value not in values:
        raise BadRequest(f"{name} is {values[0].upper()} or {values[1].upper()}", detail=f"COPY {name}")
    return value == values[0]


def _forwarded(environ: WSGIEnvironment) -> Dict[str, str]:
    """The TransferHeader<X>: v fields, as X: v for the remote."""
    forwarded = {}
    for key, value in environ.items():
        if not key.startswith(_PREFIX) or len(key) == len(_PREFIX):
            continue
        name = "-".join(part.capitalize() for part in key[len(_PREFIX) :].split("_"))
        if name.lower() in NOT_FORWARDED:
            continue
        if not _FIELD_VALUE.fullmatch(value):
            raise BadRequest(f"TransferHeader{name} holds characters a header may not", detail="COPY header")
        forwarded[name] = value
    return forwarded
