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

import dataclasses
from types import GeneratorType
from typing import Callable, Optional

from pyai import serving as parking
from pyai.errors import MethodNotAllowed
from pyai.ops.record import record_of
from pyai.web import auth
from pyai.web.answers import STATUS_LINES, error_answer
from pyai.web.receive import CLOSE_CONNECTION
from pyai.web.targets import request_path

ID_PATH = "/<id>"


@dataclasses.dataclass(frozen=True)
class Route:
    path: str  # a fixed path, a prefix (with ``prefix``), or ID_PATH for every other path
    methods: tuple
    plane: Callable
    wsgi: bool = False  # the plane is a WSGI app (start_response is its to call)
    prefix: bool = False  # ``path`` is a prefix: every path that starts with it is the route's
    errors: Callable = error_answer  # (exc, method, path, storage) -> the answer to a failure
    writes: frozenset = auth.WRITE_METHODS  # the methods that need a read-write token
    public: tuple = ()  # the methods anyone may call, also with authentication on
    # A WSGI plane's body reader: a generator function of the environ that reads the request's
    # body (yielding parking.Wait while the client is slow) and keeps it there for the plane.
    reads: Optional[Callable] = None

    @property
    def allow(self):
        """The Allow header of 405 and OPTIONS answers: the methods the route serves."""
        return ", ".join(self.methods)


class Gate:
    """The WSGI app: ``routes`` (a fixed path or a prefix each, and one ``ID_PATH``), the Tokens
    or None, and the backend (``storage``) that 503 answers name."""

    def __init__(self, routes, tokens=None, storage=None):
        self.fixed = {route.path: route for route in routes if route.path != ID_PATH and not route.prefix}
        self.prefixed = tuple(route for route in routes if route.prefix)
        self.ids = next(route for route in routes if route.path == ID_PATH)
        self.tokens = tokens  # None: authentication is off
        self.storage = storage  # the backend, which names itself in a 503
        # A backend that asks a remote server on every request: each request lets another thread serve.
        self.waits_remotely = getattr(storage, "waits_remotely", False)

    def route(self, path):
        """The route of ``path``: a dict lookup, then a startswith per prefix (the ids are the hot case)."""
        route = self.fixed.get(path)
        if route is None:
            for candidate in self.prefixed:
                if path.startswith(candidate.path):
                    return candidate
            return self.ids
        return route

    def __call__(self, environ, start_response):
        if self.waits_remotely:
            parking.may_block()
        method = environ["REQUEST_METHOD"]
        route = self.route(environ.get("PATH_INFO", "/"))
        try:
            if self.tokens is not None and method not in route.public:
                name = auth.check(self.tokens, method, request_path(environ), environ, route.writes)
                record = record_of(environ)
                if record is not None:
                    record.token = name  # the transfer log's: the token's name, never the token
            if method not in route.methods:
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
                return route.plane(environ, self._start_for(environ, start_response))
            else:
                parts = route.plane(environ)
                if type(parts) is GeneratorType:
                    if environ.get(parking.CAN_PARK):
                        return self._parked(environ, start_response, parts, route)
                    parts = parking.run_to_end(parts)
        except Exception as exc:  # noqa: BLE001 - every failure becomes its route's error answer
            parts = self._failed(environ, exc, route)
        return self._answer(environ, start_response, parts)

    def answer_plain(self, method, target, record):
        """A plain GET or HEAD of ``/<id>`` answered without an environ (``pyai.serving``'s contract),
        or None when it needs the gate: a token to check, a target that is not one plain segment,
        a path of another route, a backend that asks a server (its requests pass their turn on)."""
        if self.tokens is not None or self.waits_remotely:
            return None
        # one segment of plain characters: what id_from_uri would decode, split and compare is absent
        if target[:1] != b"/" or target.count(b"/") != 1 or b"%" in target or b"#" in target or b"?" in target:
            return None
        path = target.decode("latin-1")
        route = self.route(path)
        if route is not self.ids or method not in route.methods:
            return None
        try:
            answer = route.plane.plain(method, path[1:], record)
        except Exception:  # noqa: BLE001 - the full path answers it: its error answer, its log line
            return None
        if answer is None:
            return None
        status, headers, body = answer
        return STATUS_LINES[status], status, list(headers.items()), body

    def _parked(self, environ, start_response, steps, route):
        """The response iterable of a request that may wait for its client in the poller."""
        try:
            parts = yield from steps
        except Exception as exc:  # noqa: BLE001 - every failure becomes its route's error answer
            parts = self._failed(environ, exc, route)
        yield from self._answer(environ, start_response, parts)

    def _mounted_after(self, environ, start_response, reading, route):
        """The response iterable of a mounted app whose request body is read first, parked."""
        try:
            yield from reading
            body = route.plane(environ, self._start_for(environ, start_response))
        except Exception as exc:  # noqa: BLE001 - every failure becomes its route's error answer
            yield from self._answer(environ, start_response, self._failed(environ, exc, route))
            return
        try:
            yield from body
        finally:
            if hasattr(body, "close"):
                body.close()

    def _failed(self, environ, exc, route):
        return route.errors(exc, environ["REQUEST_METHOD"], request_path(environ), self.storage)

    def _answer(self, environ, start_response, parts):
        status, headers, body = parts
        self._start(environ, start_response, STATUS_LINES[status], list(headers.items()))
        if environ["REQUEST_METHOD"] == "HEAD":
            return []  # the headers, Content-Length included, are GET's; the body is not sent
        return body

    def _start_for(self, environ, start_response):
        """The start_response a mounted WSGI app gets: the connection policy applies to it too."""

        def start(status, headers, exc_info=None):
            return self._start(environ, start_response, status, headers, exc_info)

        return start

    @staticmethod
    def _start(environ, start_response, status, headers, exc_info=None):
        if environ.get(CLOSE_CONNECTION):
            # a request body is left unread: have gunicorn close after this response, and say so in it
            force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
            if force_close is not None:
                force_close()
        return start_response(status, headers, exc_info)


def not_allowed(route):
    exc = MethodNotAllowed("The method is not allowed for the requested URL.", detail="Method Not Allowed")
    exc.headers = {"Allow": route.allow}
    return exc
