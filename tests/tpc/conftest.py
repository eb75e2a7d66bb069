"""Fixtures of the third-party copy tests: pyai servers with COPY on, and remotes the tests control.

``tpc_pair`` is two servers of the flavor that may copy with each other (``[tpc] remotes =
127.0.0.1``); ``remote`` is a small HTTP server in this process whose every answer a test
writes (a source that stops half way, one that trickles, one that redirects), recording what
each request carried.
"""

import http.server
import socketserver
import threading

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
