"""REDbot (HTTP lint) on a stored file: a GET and a HEAD against the real service.

REDbot sends the request, then its own follow-ups (If-None-Match, If-Modified-Since,
a Range), and grades what it sees.  No note may be "bad" and no warning may appear
that is not accepted below, each for a reason (docs/grid.md lists them too).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

pytest.importorskip("redbot", reason="REDbot is a test tool of the test extra (Python >= 3.11)")

CHECK = str(Path(__file__).with_name("redbot_check.py"))

# (method, REDbot note id): why pyai answers so.
ACCEPTED = {
    # RFC 3230 Digest is what davix (gfal2, FTS) reads for checksums; Repr-Digest is sent beside it.
    ("GET", "FIELD_DEPRECATED"): "Digest (RFC 3230) is kept for the grid clients that read only it",
    ("HEAD", "FIELD_DEPRECATED"): "Digest (RFC 3230) is kept for the grid clients that read only it",
    # A stored file is write-once, but an id can be deleted and stored again: pyai names no
    # lifetime, so caches revalidate with the ETag as they see fit.
    ("GET", "FRESHNESS_HEURISTIC"): "no Cache-Control: an id can be deleted and stored anew",
    # HEAD /<id> is the Pacifica status call: its Last-Modified is epoch seconds, which
    # cartd reads with float(); GET sends the HTTP date.
    ("HEAD", "BAD_DATE_SYNTAX"): "Pacifica's HEAD sends Last-Modified as epoch seconds (cartd)",
}


def redbot(url, method):
    proc = subprocess.run(
        [sys.executable, CHECK, url, method],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    return json.loads(proc.stdout)


def complaints(result, method):
    """The bad and warning notes that are not accepted for ``method``."""
    return [
        note for note in result["notes"] if note["level"] in ("BAD", "WARN") and (method, note["id"]) not in ACCEPTED
    ]


@pytest.fixture
def stored(server, uid):
    data = os.urandom(40_000)
    resp = requests.put(server.id_url(uid), data=data, timeout=30)
    assert resp.status_code == 201, resp.text
    return server.id_url(uid)


def test_redbot_get(stored):
    result = redbot(stored, "GET")
    assert result["status"] == 200
    assert complaints(result, "GET") == []
    good = {note["id"] for note in result["notes"] if note["level"] == "GOOD"}
    # its follow-ups found the conditional requests and ranges working
    assert {"INM_304", "IMS_304", "RANGE_CORRECT", "CL_CORRECT"} <= good, result["notes"]


def test_redbot_head(stored):
    result = redbot(stored, "HEAD")
    assert result["status"] == 204
    assert complaints(result, "HEAD") == []
    good = {note["id"] for note in result["notes"] if note["level"] == "GOOD"}
    assert "INM_304" in good, result["notes"]
