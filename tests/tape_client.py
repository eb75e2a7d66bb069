"""The WLCG Tape REST API as the tests call it: its requests, its documents, and servers set up
for it (short leases and polls)."""

import os
import signal

import requests
from emulator import emu_cli
from faults.procs import listener
from server import wait_until

API = "/api/v1"
PROBLEM = "application/problem+json"
TIMEOUT = 15
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def tape_settings(**settings):
    """Short leases and polls, so take-overs and stages finish within a test's bounds."""
    return {"PAI_TAPE_LEASE": "2", "PAI_TAPE_MAX_POLL_INTERVAL": "0.5", "PAI_WORKERS": "2", **settings}


def emu(srv, *args):
    return emu_cli(srv.prefix, *args)


def stage(srv, paths, headers=None, **extra):
    files = [{"path": path, **extra} for path in paths]
    return requests.post(srv.url + API + "/stage", json={"files": files}, headers=headers, timeout=TIMEOUT)


def poll(srv, request_id, headers=None):
    return requests.get(f"{srv.url}{API}/stage/{request_id}", headers=headers, timeout=TIMEOUT)


def wait_done(srv, request_id, timeout=30, headers=None):
    """The request's document once completedAt is set (or the last one seen)."""
    last = {}

    def done():
        last["doc"] = poll(srv, request_id, headers).json()
        return "completedAt" in last["doc"]

    wait_until(done, timeout=timeout, interval=0.2)
    return last["doc"]


def states(document):
    return {entry["path"]: entry.get("state") for entry in document["files"]}


def archiveinfo(srv, paths, headers=None):
    return requests.post(srv.url + API + "/archiveinfo", json={"paths": paths}, headers=headers, timeout=TIMEOUT)


def assert_problem(resp, status):
    """An RFC 7807 answer: the status, its content type and the four members; no traceback, no path."""
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers["Content-Type"] == PROBLEM, resp.headers
    body = resp.json()
    assert set(body) == {"type", "title", "status", "detail"}, body
    assert body["status"] == status and body["title"] and body["detail"], body
    assert "Traceback" not in resp.text and "/tmp" not in resp.text, resp.text
    return body


def kill(srv):
    """SIGKILL the server's process group: no graceful end, as in a crash.  Once its workers are
    gone too (nothing listens on its port), it may be started again on the same port."""
    os.killpg(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(10)
    srv.stop()
    assert wait_until(lambda: listener(srv.port) is None, timeout=10), f"port {srv.port} still listened on"
