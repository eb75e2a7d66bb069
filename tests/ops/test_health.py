"""/healthz and /readyz against the real gunicorn: alive while it serves, ready only while it can store."""

import pytest
import requests
from faults import mounts
from server import wait_until


def unready(srv):
    """The document of a 503 (each worker keeps its last answer half a second: ask until one has news)."""
    status, doc = readiness(srv)
    return doc if status == 503 else None


def readiness(srv):
    resp = requests.get(srv.url + "/readyz", timeout=10)
    assert resp.headers["Content-Type"] == "application/json", resp.headers
    assert resp.headers["Cache-Control"] == "no-store"
    return resp.status_code, resp.json()


@pytest.mark.quick
def test_alive_and_ready(pool):
    srv = pool.start("health")
    resp = requests.get(srv.url + "/healthz", timeout=10)
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    status, doc = readiness(srv)
    assert status == 200, doc
    assert doc == {"status": "ready", "checks": {"serving": {"ok": True}, "prefix": {"ok": True}}}
    assert requests.head(srv.url + "/readyz", timeout=10).status_code == 200
    assert requests.put(srv.url + "/readyz", data=b"x", timeout=10).status_code == 405  # not an id


def test_probes_need_no_token(pool, tmp_path):
    """Load balancers and orchestrators probe without credentials; everything else still needs one."""
    tokens = tmp_path / "tokens"
    tokens.write_text("rw " + "T" * 24 + "\n")
    tokens.chmod(0o600)
    srv = pool.start("health-auth", PAI_AUTH_TOKENS_FILE=str(tokens))
    assert requests.get(srv.url + "/healthz", timeout=10).status_code == 200
    assert requests.get(srv.url + "/readyz", timeout=10).status_code == 200
    assert requests.get(srv.url + "/1", timeout=10).status_code == 401


def test_read_only_prefix_is_unready_until_writable_again(pool, tmp_path):
    prefix = tmp_path / "mounted"
    with mounts.tmpfs(prefix):
        srv = pool.start("health-ro", PAI_PREFIX=str(prefix))
        assert readiness(srv)[0] == 200
        mounts.remount(prefix, "ro")
        try:
            doc = wait_until(lambda: unready(srv), timeout=10)
            assert doc and doc["status"] == "unready", readiness(srv)
            assert doc["checks"]["prefix"] == {
                "ok": False,
                "error": "the archive directory is on a read-only file system",
            }
            assert str(prefix) not in str(doc)
            assert requests.get(srv.url + "/healthz", timeout=10).status_code == 200  # alive, not ready
        finally:
            mounts.remount(prefix, "rw")
        assert wait_until(lambda: readiness(srv)[0] == 200, timeout=10)
        srv.stop()


def test_missing_prefix_is_unready(pool, tmp_path):
    prefix = tmp_path / "vanishing"
    srv = pool.start("health-gone", PAI_PREFIX=str(prefix))
    prefix.rename(tmp_path / "moved-away")
    doc = wait_until(lambda: unready(srv), timeout=10)
    assert doc and doc["checks"]["prefix"]["ok"] is False, readiness(srv)
    assert "unavailable" in doc["checks"]["prefix"]["error"]
