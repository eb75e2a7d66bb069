"""Fixtures of the third-party copy tests: pyai servers with COPY on, and remotes the tests control.

``tpc_pair`` is two servers of the flavor that may copy with each other (``[tpc] remotes =
127.0.0.1``); ``remote`` is a small HTTP server in this process whose every answer a test
writes (a source that stops half way, one that trickles, one that redirects), recording what
each request carried.
"""

import http.server
import socket
import socketserver
import threading
import time

import pytest

TPC = {"PAI_TPC_REMOTES": "127.0.0.1", "PAI_TPC_TIMEOUT": "10"}


@pytest.fixture(scope="module")
def tpc_pair(server_pool, request, backend, impl):
    pool = server_pool(request, backend, impl)
    return pool.start("tpc-a", **TPC), pool.start("tpc-b", **TPC)


class Remote:
    """An HTTP server on 127.0.0.1: ``handle(handler)`` answers each request (``handler`` is an
    http.server.BaseHTTPRequestHandler); ``seen`` lists (method, path, headers) of each."""

    def __init__(self):
        self.seen = []
        self.handle = None
        self.closed = threading.Event()  # set when a handler saw its client's connection fail
        remote = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                remote.seen.append((self.command, self.path, dict(self.headers)))
                try:
                    remote.handle(self)
                except OSError:
                    remote.closed.set()

            do_GET = do_HEAD = do_PUT = _any

        self.httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def remote():
    served = Remote()
    yield served
    served.close()


@pytest.fixture(scope="module")
def tpc_server(server_pool, request):
    """One posix server with COPY on, for what no backend changes (the checks, the faults)."""
    return server_pool(request).start("tpc", **TPC)


def trickle(data, pieces, pause, *, stop_after=None):
    """A remote's answer: ``data`` with its Content-Length, sent in ``pieces`` with ``pause``
    seconds between them; ``stop_after`` pieces, it closes instead (the source vanished)."""

    def handle(h):
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command == "HEAD":
            return
        step = -(-len(data) // pieces)
        for index in range(pieces):
            if stop_after is not None and index == stop_after:
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            h.wfile.write(data[index * step : (index + 1) * step])
            h.wfile.flush()
            time.sleep(pause)

    return handle
