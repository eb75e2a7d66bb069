"""The gate: the one WSGI callable every request passes.

It finds the request's route, checks the token, answers OPTIONS and 405 from
the route's methods, turns every failure into its route's error answer (the
Pacifica JSON document, or an RFC 7807 problem for the Tape API), and closes the
connection after a response whose request body was left unread.  Each of these
happens here and nowhere else.  A route's plane is either the data plane (a
callable of the environ that returns ``(status, headers, body)``, or a
generator of ``parking.Wait`` that returns them) or a WSGI app (Flask's
control plane), which the gate mounts.  A mounted app never reads a request
body itself: the route's ``reads`` reads it first (``pyai.web.small_body``),
parked while the client is slow, so no thread waits on a client.
"""

from __future__ import annotations

import dataclasses
from types import GeneratorType
from typing import TYPE_CHECKING, Callable, FrozenSet, Generator, Iterable, List, Optional, Sequence, Tuple, Union, cast

from pyai import serving as parking
from pyai.errors import MethodNotAllowed, NotImplementedMethod
from pyai.ops.record import record_of
from pyai.web import auth, issued_tokens
from pyai.web.answers import STATUS_LINES, Answer, ErrorAnswer, Waiting, error_answer
from pyai.web.receive import CLOSE_CONNECTION
from pyai.web.targets import request_path

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from _typeshed import OptExcInfo

    from pyai.backends.base import Backend
    from pyai.ops.record import Record
    from pyai.web.data import DataPlane, FileRange
    from pyai.web.gridmap import DnMap
    from pyai.web.issued_tokens import IssuedTokens
    from pyai.web.scopes import ScopeRule
    from pyai.web.small_body import BodyReader
    from pyai.web.wlcg_tokens import WlcgTokens

ID_PATH = "/<id>"


@dataclasses.dataclass(frozen=True)
class Route:
    path: str  # a fixed path, a prefix (with ``prefix``), or ID_PATH for every other path
    methods: Tuple[str, ...]
    plane: Union[DataPlane, WSGIApplication]  # the data plane, or with ``wsgi`` a WSGI app
    wsgi: bool = False  # the plane is a WSGI app (start_response is its to call)
    prefix: bool = False  # ``path`` is a prefix: every path that starts with it is the route's
    errors: ErrorAnswer = error_answer  # (exc, method, path, storage) -> the answer to a failure
    writes: FrozenSet[str] = auth.WRITE_METHODS  # the methods that need a read-write token
    public: Tuple[str, ...] = ()  # the methods anyone may call, also with authentication on
    # A WSGI plane's body reader: a generator function of the environ that reads the request's
    # body (yielding parking.Wait while the client is slow) and keeps it there for the plane.
    reads: Optional[BodyReader] = None
    # What a WLCG (or issued) token must grant for each method here (pyai.web.scopes); None: none is taken.
    scopes: Optional[ScopeRule] = None
    # What such a token must grant for a token request (a POST of application/macaroon-request,
    # which the plane answers: pyai.web.issued_tokens); None: the route's POST rule applies to it.
    token_requests: Optional[ScopeRule] = None

    @property
    def allow(self) -> str:
        """The Allow header of 405 and OPTIONS answers: the methods the route serves."""
        return ", ".join(self.methods)


class Gate:
    """The WSGI app: ``routes`` (a fixed path or a prefix each, and one ``ID_PATH``), the static
    Tokens or None, the backend (``storage``) that 503 answers name, the WLCG token verifier or None,
    the issuer of this archive's own tokens or None, and the DNs of client certificates or None."""

    def __init__(
        self,
        routes: Sequence[Route],
        tokens: Optional[auth.Tokens] = None,
        storage: Optional[Backend] = None,
        wlcg: Optional[WlcgTokens] = None,
        issued: Optional[IssuedTokens] = None,
        dns: Optional[DnMap] = None,
    ) -> None:
        self.fixed = {route.path: route for route in routes if route.path != ID_PATH and not route.prefix}
        self.prefixed = tuple(route for route in routes if route.prefix)
        self.ids = next(route for route in routes if route.path == ID_PATH)
        # the ids' route has the data plane (no wsgi): told to mypy once here, not on every plain request
        self.ids_plane = cast("DataPlane", self.ids.plane)
        self.tokens = tokens  # static tokens, or None
        self.wlcg = wlcg  # WLCG tokens, or None
        self.issued = issued  # the tokens issued here, or None (asked for with a static or WLCG token, or a DN)
        self.dns = dns  # the DNs a TLS front end passes, or None
        self.auth_on = tokens is not None or wlcg is not None or dns is not None  # False: authentication is off
        self.storage = storage  # the backend, which names itself in a 503
        # A backend that asks a remote server on every request: each request lets another thread serve.
        self.waits_remotely = getattr(storage, "waits_remotely", False)

    def route(self, path: str) -> Route:
        """The route of ``path``: a dict lookup, then a startswith per prefix (the ids are the hot case)."""
        route = self.fixed.get(path)
        if route is None:
            for candidate in self.prefixed:
                if path.startswith(candidate.path):
                    return candidate
            return self.ids
        return route

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[Union[bytes, parking.Wait]]:
        """The response iterable: bytes, after a parking.Wait while the request waits for its client."""
        if self.waits_remotely:
            parking.may_block()
        method = environ["REQUEST_METHOD"]
        route = self.route(environ.get("PATH_INFO", "/"))
        parts: Answer
        try:
            if self.auth_on and method not in route.public:
                path = request_path(environ)
                rule = route.scopes
                if route.token_requests is not None and method == "POST" and issued_tokens.is_token_request(environ):
                    rule = route.token_requests
                name = auth.check(
                    self.tokens, method, path, environ, route.writes, self.wlcg, rule, self.issued, self.dns
                )
                record = record_of(environ)
                if record is not None:
                    record.token = name  # the transfer log's: the token's name, never the token
            if method not in route.methods:
                if method == "COPY":
                    raise NotImplementedMethod(
                        "third-party copy is off here ([tpc] remotes is empty): copy through the client"
                        " (gfal-copy falls back to it)",
                        detail="COPY not implemented",
                    )
                if method != "OPTIONS":
                    raise not_allowed(route)
                parts = 200, {"Allow": route.allow, "Content-Length": "0"}, []
                if "PROPFIND" in route.methods:
                    parts[1]["DAV"] = "1"  # WebDAV stat is served here (what davix and rclone probe for)
            elif route.wsgi:
                if route.reads is not None:
                    reading = route.reads(environ)
                    if environ.get(parking.CAN_PARK):
                        return self._mounted_after(environ, start_response, reading, route)
                    parking.run_to_end(reading)
                app = cast("WSGIApplication", route.plane)  # a route with wsgi=True mounts a WSGI app
                return app(environ, self._start_for(environ, start_response))
            else:
                answered = cast("DataPlane", route.plane)(environ)  # a route without wsgi has the data plane
                if type(answered) is GeneratorType:
                    if environ.get(parking.CAN_PARK):
                        return self._parked(environ, start_response, answered, route)
                    answered = parking.run_to_end(answered)
                parts = cast(Answer, answered)  # a generator's is what run_to_end returned
        except Exception as exc:  # noqa: BLE001 - every failure becomes its route's error answer
            parts = self._failed(environ, exc, route)
        return self._answer(environ, start_response, parts)

    def answer_plain(
        self, method: str, target: bytes, record: Record
    ) -> Optional[Tuple[str, int, List[Tuple[str, str]], Union[bytes, FileRange]]]:
        """A plain GET or HEAD of ``/<id>`` answered without an environ (``pyai.serving``'s contract),
        or None when it needs the gate: a token to check, a target that is not one plain segment,
        a path of another route, a backend that asks a server (its requests pass their turn on)."""
        if self.auth_on or self.waits_remotely:
            return None
        # one segment of plain characters: what id_from_uri would decode, split and compare is absent
        if target[:1] != b"/" or target.count(b"/") != 1 or b"%" in target or b"#" in target or b"?" in target:
            return None
        path = target.decode("latin-1")
        route = self.route(path)
        if route is not self.ids or method not in route.methods:
            return None
        try:
            answer = self.ids_plane.plain(method, path[1:], record)
        except Exception:  # noqa: BLE001 - the full path answers it: its error answer, its log line
            return None
        if answer is None:
            return None
        status, headers, body = answer
        return STATUS_LINES[status], status, list(headers.items()), body

    def _parked(
        self, environ: WSGIEnvironment, start_response: StartResponse, steps: Waiting, route: Route
    ) -> Generator[Union[bytes, parking.Wait], None, None]:
        """The response iterable of a request that may wait for its client in the poller."""
        try:
            parts = yield from steps
        except Exception as exc:  # noqa: BLE001 - every failure becomes its route's error answer
            parts = self._failed(environ, exc, route)
        yield from self._answer(environ, start_response, parts)

    def _mounted_after(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        reading: Generator[parking.Wait, None, None],
        route: Route,
    ) -> Generator[Union[bytes, parking.Wait], None, None]:
        """The response iterable of a mounted app whose request body is read first, parked."""
        try:
            yield from reading
            app = cast("WSGIApplication", route.plane)  # a route that reads mounts a WSGI app
            body = app(environ, self._start_for(environ, start_response))
        except Exception as exc:  # noqa: BLE001 - every failure becomes its route's error answer
            yield from self._answer(environ, start_response, self._failed(environ, exc, route))
            return
        try:
            yield from body
        finally:
            if hasattr(body, "close"):
                body.close()

    def _failed(self, environ: WSGIEnvironment, exc: Exception, route: Route) -> Answer:
        return route.errors(exc, environ["REQUEST_METHOD"], request_path(environ), self.storage)

    def _answer(self, environ: WSGIEnvironment, start_response: StartResponse, parts: Answer) -> Iterable[bytes]:
        status, headers, body = parts
        self._start(environ, start_response, STATUS_LINES[status], list(headers.items()))
        if environ["REQUEST_METHOD"] == "HEAD":
            return []  # the headers, Content-Length included, are GET's; the body is not sent
        return body

    def _start_for(self, environ: WSGIEnvironment, start_response: StartResponse) -> StartResponse:
        """The start_response a mounted WSGI app gets: the connection policy applies to it too."""

        def start(
            status: str, headers: List[Tuple[str, str]], exc_info: Optional[OptExcInfo] = None
        ) -> Callable[[bytes], object]:
            return self._start(environ, start_response, status, headers, exc_info)

        return start

    @staticmethod
    def _start(
        environ: WSGIEnvironment,
        start_response: StartResponse,
        status: str,
        headers: List[Tuple[str, str]],
        exc_info: Optional[OptExcInfo] = None,
    ) -> Callable[[bytes], object]:
        if environ.get(CLOSE_CONNECTION):
            # a request body is left unread: have gunicorn close after this response, and say so in it
            force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
            if force_close is not None:
                force_close()
        return start_response(status, headers, exc_info)


def not_allowed(route: Route) -> MethodNotAllowed:
    exc = MethodNotAllowed("The method is not allowed for the requested URL.", detail="Method Not Allowed")
    exc.headers = {"Allow": route.allow}
    return exc
