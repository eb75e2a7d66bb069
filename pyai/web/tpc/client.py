"""A third-party copy's outgoing HTTP: URLs, connections to vetted addresses, redirects.

The standard library's ``http.client`` speaks HTTP/1.1 and TLS (certificates
checked against the system's CAs or ``[tpc] ca_file``, and against the URL's
host name).  What a copy needs around it is here: every connection goes to
an address ``pyai.web.tpc.remotes`` vetted (never to a name resolved again),
redirects are followed a bounded number of times with each hop vetted
again, and ``Authorization`` (and the cookies a client forwarded) is dropped
when a redirect leaves the host it was meant for.
"""

from __future__ import annotations

import dataclasses
import http.client
import socket
import ssl
from typing import Callable, Dict, Optional, Tuple
from urllib.parse import urljoin, urlsplit

from pyai.web.tpc.remotes import Remotes

# Redirects a request follows before it fails: dCache sends one (door to pool), a chain is a loop.
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# The credentials a request carries that are meant for its host only.
CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})
Headers = Dict[str, str]
SocketHook = Callable[[socket.socket], object]  # told each socket a copy opens (to shut it down on cancel)


class RemoteFailed(Exception):
    """The remote could not be reached, or answered what a copy cannot use: the copy fails with this text."""


@dataclasses.dataclass(frozen=True)
class Url:
    """An http(s) URL, split: ``target`` is the path and query a request line names."""

    scheme: str
    host: str
    port: int
    target: str

    @property
    def origin(self) -> Tuple[str, str, int]:
        return self.scheme, self.host.lower(), self.port

    def text(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.target}"


def parse_url(text: str) -> Url:
    """The Url of ``text``; ValueError saying why it is not one a copy can use."""
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("a URL holds no spaces or control characters")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"the URL's scheme is {scheme or 'missing'}: only http and https are copied")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a URL with a user name or password: send credentials as TransferHeaderAuthorization")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise ValueError("the URL's port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("the URL names no host")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Url(scheme, parts.hostname, port, target)


class Client:
    """Requests to remotes ``remotes`` allows, over TLS checked by ``context``, each socket
    operation waiting at most ``timeout`` seconds."""

    def __init__(self, remotes: Remotes, context: ssl.SSLContext, timeout: float) -> None:
        self.remotes = remotes
        self.context = context
        self.timeout = timeout

    def connect(self, url: Url, on_socket: Optional[SocketHook] = None) -> Tuple[http.client.HTTPConnection, str]:
        """A connection to ``url``'s host at an address the remotes allow, and its ``tcp:<ip>:<port>``
        (``RemoteRefused`` when none is, RemoteFailed when none answers).  ``on_socket`` is told
        each socket as it is made (who may cancel the copy shuts it down)."""
        last: Optional[OSError] = None
        for address, port in self.remotes.addresses(url.host, url.port):
            try:
                sock = socket.create_connection((address, port), self.timeout)
            except OSError as exc:
                last = exc
                continue
            if on_socket is not None:
                on_socket(sock)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn: http.client.HTTPConnection
                if url.scheme == "https":
                    sock = self.context.wrap_socket(sock, server_hostname=url.host)
                    if on_socket is not None:
                        on_socket(sock)  # the plain one is detached now: a shutdown goes through this
                    conn = http.client.HTTPSConnection(url.host, url.port, timeout=self.timeout, context=self.context)
                else:
                    conn = http.client.HTTPConnection(url.host, url.port, timeout=self.timeout)
            except (OSError, ValueError) as exc:
                sock.close()
                raise RemoteFailed(f"{url.host}: {describe(exc)}") from None
            conn.sock = sock  # connected here, to the vetted address: http.client does not connect again
            peer = f"[{address}]" if ":" in address else address
            return conn, f"tcp:{peer}:{port}"
        raise RemoteFailed(f"cannot connect to {url.host}:{url.port}: {describe(last)}")

    def request(
        self, method: str, url: Url, headers: Headers, on_socket: Optional[SocketHook] = None
    ) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse, Url, str]:
        """``method`` (without a body) on ``url``, redirects followed: the connection, the answer
        (its body unread), the URL that answered and its ``tcp:<ip>:<port>``."""
        for _ in range(MAX_REDIRECTS + 1):
            conn, peer = self.connect(url, on_socket)
            try:
                conn.request(method, url.target, headers=headers)
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise RemoteFailed(f"{method} {url.host}: {describe(exc)}") from None
            location = response.getheader("Location")
            if response.status not in REDIRECTS or not location:
                return conn, response, url, peer
            conn.close()
            url, headers = redirected(url, location, headers)
        raise RemoteFailed(f"{method} {url.host}: more than {MAX_REDIRECTS} redirects")


def redirected(url: Url, location: str, headers: Headers) -> Tuple[Url, Headers]:
    """Where a redirect to ``location`` leads, and the headers to send there: without credentials
    when it leaves ``url``'s origin (scheme, host and port)."""
    try:
        target = parse_url(urljoin(url.text(), location))
    except ValueError as exc:
        raise RemoteFailed(f"{url.host} redirected to an unusable URL: {exc}") from None
    if target.origin != url.origin:
        headers = {name: value for name, value in headers.items() if name.lower() not in CREDENTIALS}
    return target, headers


def describe(exc: Optional[BaseException]) -> str:
    """A failure's text for the copy's last line: the reason, never a traceback."""
    if exc is None:
        return "no address"
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({exc.verify_message})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
