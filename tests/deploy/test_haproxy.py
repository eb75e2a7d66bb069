"""Scale-out failures through HAProxy: three instances of one archive (one prefix, one MariaDB
stage store) behind the shipped deploy/haproxy/haproxy.cfg, on loopback ports.

An instance killed with -9 under mixed traffic costs a reader at most one retry and an
uploader only the uploads it had in flight, which left nothing and succeed when sent
again; a stage request made through one instance is polled and completed through the
others; a rolling restart (TERM, drain, start again) under load fails no request.
"""

import importlib.util
import os
import signal

import pytest
import requests
from emulator import emu_cli
from faults.checks import assert_absent, assert_intact
from server import wait_until

from .balancer import NAMES, Cluster, StageStores, open_files, open_temp_files
from .traffic import SIZES, TIMEOUT, SlowDownload, SlowUpload, Traffic, new_id, sha256

HAS_HPSS = importlib.util.find_spec("pyai.hpss_client._hpss") is not None
# Longer than HAProxy needs to see /readyz turn 503 (inter + (fall - 1) * fastinter = 1.25 s,
# see haproxy.cfg), so it has taken an instance out before the instance stops listening.
DRAIN_DELAY = 3
GRACEFUL = 60  # gunicorn's graceful_timeout (pyai/server/gunicorn_conf.py)
BIG = 32 << 20  # a download of it outlasts every socket buffer between an instance and a slow reader


@pytest.fixture(scope="module")
def stage_stores(mariadb):
    return StageStores(mariadb)


@pytest.fixture
def make_cluster(server_pool, request, stage_stores, tmp_path):
    """make_cluster(backend, **settings): three instances on one prefix behind HAProxy."""

    def make(backend, **settings):
        cluster = Cluster(
            server_pool(request, backend), tmp_path, tmp_path / "shared-prefix", stage_stores.new(), **settings
        )
        request.addfinalizer(cluster.stop)  # HAProxy stops first, then its instances (their pool's finalizer)
        return cluster

    return make


def store_seed(cluster):
    files = {new_id(): os.urandom(size) for size in SIZES}
    for ident, data in files.items():
        resp = requests.put(cluster.id_url(ident), data=data, timeout=TIMEOUT)
        assert resp.status_code == 201, resp.text
    return files


def access_log(srv):
    return srv.log_path.read_text(errors="replace")


def served_archive(srv):
    """Whether the instance's access log has a request of the archive (HAProxy's checks aside)."""
    return any('"PUT /' in line or '"GET /' in line and "/readyz" not in line for line in access_log(srv).splitlines())


def test_kill_9_under_mixed_traffic(make_cluster):
    cluster = make_cluster("posix")
    seed = store_seed(cluster)

    big = new_id()
    big_data = os.urandom(BIG)
    assert requests.put(cluster.id_url(big), data=big_data, timeout=TIMEOUT).status_code == 201
    big_path = str(cluster.instances[0].stored_path(big))

    # Transfers surely in flight at the kill: three half-sent uploads and three half-read
    # downloads, which leastconn spreads over the three instances; /proc says which
    # instance holds which (an upload's temporary file, a download's file, open).
    def uploads(srv):
        return len(open_temp_files(srv))

    def downloads(srv):
        return len(open_files(srv, big_path))

    slow, slow_reads = [], []
    for count in range(1, 4):
        slow.append(SlowUpload(cluster.haproxy.port))
        slow[-1].begin()
        assert wait_until(lambda: sum(map(uploads, cluster.instances)) == count, timeout=20)  # noqa: B023
    for count in range(1, 4):
        slow_reads.append(SlowDownload(cluster.haproxy.port, big, big_data))
        slow_reads[-1].begin()
        assert wait_until(lambda: sum(map(downloads, cluster.instances)) == count, timeout=20)  # noqa: B023
    holds = [(uploads(srv), downloads(srv)) for srv in cluster.instances]
    victim = max(range(len(holds)), key=lambda i: (min(holds[i]), sum(holds[i])))
    survivors = [srv for i, srv in enumerate(cluster.instances) if i != victim]

    with Traffic(cluster.url, seed, threads=3, read_retries=1) as traffic:
        assert wait_until(lambda: traffic.total() >= 30, timeout=30), traffic.counts
        cluster.kill(victim)
        cluster.haproxy.wait_state(NAMES[victim], "DOWN", timeout=10)
        after_kill = traffic.total()
        assert wait_until(lambda: traffic.total() >= after_kill + 60, timeout=40), traffic.counts
    answers = [upload.finish() for upload in slow]
    whole = [download.finish() for download in slow_reads]

    assert traffic.read_failures == [], f"reads that failed after one retry: {traffic.read_failures[:5]}"
    cut = [upload for upload, status in zip(slow, answers) if status != 201]
    assert len(cut) == holds[victim][0], f"{answers}: the victim held {holds[victim][0]} of the half-sent uploads"
    # a download cut off by the kill succeeds when read again (once)
    assert whole.count(False) == holds[victim][1], f"{whole}: the victim held {holds[victim][1]} of the downloads"
    for _ in range(whole.count(False)):
        again = requests.get(cluster.id_url(big), timeout=TIMEOUT)
        assert again.status_code == 200 and sha256(again.content) == sha256(big_data)
    assert all(status is None or status >= 500 for status in answers if status != 201), answers

    stored = {**seed, **traffic.stored, big: big_data}
    failed = {upload.ident: upload.data for upload in cut}
    failed.update((ident, data) for ident, (data, _) in traffic.failed_uploads.items())
    for ident, data in failed.items():
        # an upload cut off by the kill left nothing under its id, seen by every survivor
        stored_whole = False
        for srv in survivors:
            answer = requests.get(srv.id_url(ident), timeout=TIMEOUT)
            if answer.status_code == 200 and ident in traffic.failed_uploads:
                stored_whole = True
                # its instance had stored it all and died before the 201 went out (or
                # HAProxy replayed a small one): only ever its own exact bytes
                assert sha256(answer.content) == sha256(data), f"id {ident}: other bytes after a failed upload"
                continue
            assert_absent(srv, ident)
            assert not [p for p in srv.prefix.rglob(f"*{ident}*")], f"a file is named by the failed upload {ident}"
        retry = requests.put(cluster.id_url(ident), data=data, timeout=TIMEOUT)
        assert retry.status_code == (409 if stored_whole else 201), (
            ident,
            retry.status_code,
            retry.text[:300],
        )
        stored[ident] = data

    # nothing stored is lost or mixed: every id's bytes, through HAProxy and from each survivor
    assert_intact(cluster, stored)
    for srv in survivors:
        assert_intact(srv, stored)


@pytest.mark.skipif(not HAS_HPSS, reason="pyai.hpss_client._hpss is not built (the HPSS emulator)")
def test_stage_request_moves_between_instances(make_cluster):
    cluster = make_cluster(
        "hpss",
        PAI_TAPE_LEASE="2",  # a dead instance's claims expire soon
        PAI_TAPE_MAX_POLL_INTERVAL="0.5",
        PAI_HPSS_PING_INTERVAL="0",
    )
    creator, others = 0, (1, 2)
    haproxy = cluster.haproxy
    idents = [new_id() for _ in range(2)]
    for ident in idents:
        assert requests.put(cluster.id_url(ident), data=os.urandom(3000), timeout=TIMEOUT).status_code == 201
    emu_cli(cluster.prefix, "purge", *idents)
    emu_cli(cluster.prefix, "set-stage-delay", "2")
    paths = [f"/{ident}" for ident in idents]

    # the operator's runtime API steers the POST to the creator...
    for i in others:
        haproxy.set_state(NAMES[i], "maint")
    resp = requests.post(f"{cluster.url}/api/v1/stage", json={"files": [{"path": p} for p in paths]}, timeout=TIMEOUT)
    assert resp.status_code == 201, resp.text
    request_id = resp.json()["requestId"]
    # ...and everything after it to the others; the creator dies with the stage under way
    haproxy.set_state(NAMES[creator], "maint")
    for i in others:
        haproxy.set_state(NAMES[i], "ready")
        haproxy.wait_state(NAMES[i], "UP")
    cluster.kill(creator)

    poll_url = f"{cluster.url}/api/v1/stage/{request_id}"
    first = requests.get(poll_url, timeout=TIMEOUT)
    assert first.status_code == 200, first.text
    assert sorted(entry["path"] for entry in first.json()["files"]) == sorted(paths)
    last = {}

    def done():
        last["doc"] = requests.get(poll_url, timeout=TIMEOUT).json()
        return "completedAt" in last["doc"]

    assert wait_until(done, timeout=40, interval=0.2), last
    assert {entry["path"]: entry.get("state") for entry in last["doc"]["files"]} == dict.fromkeys(paths, "COMPLETED")
    info = requests.post(f"{cluster.url}/api/v1/archiveinfo", json={"paths": paths}, timeout=TIMEOUT)
    assert [entry["locality"] for entry in info.json()] == ["DISK_AND_TAPE"] * 2, info.text
    assert requests.delete(poll_url, timeout=TIMEOUT).status_code == 200

    # the access logs: created on the creator only, polled only on the others
    logs = [access_log(srv) for srv in cluster.instances]
    assert "POST /api/v1/stage " in logs[creator]
    assert f"GET /api/v1/stage/{request_id} " not in logs[creator]
    for i in others:
        assert "POST /api/v1/stage " not in logs[i]
    assert any(f"GET /api/v1/stage/{request_id} " in logs[i] for i in others)


def test_rolling_restart_under_load_fails_nothing(make_cluster):
    cluster = make_cluster("posix", PAI_DRAIN_DELAY=str(DRAIN_DELAY))
    seed = store_seed(cluster)
    with Traffic(cluster.url, seed, threads=3, read_retries=0) as traffic:
        assert wait_until(lambda: traffic.total() >= 30, timeout=30), traffic.counts
        for index, name in enumerate(NAMES):
            old = cluster.instances[index]
            old.proc.send_signal(signal.SIGTERM)  # the master: /readyz turns 503, it serves on for drain_delay
            cluster.haproxy.wait_state(name, "DOWN", timeout=DRAIN_DELAY)
            assert old.proc.poll() is None, f"{name} stopped before HAProxy took it out:\n{old.log()}"
            old.proc.wait(DRAIN_DELAY + GRACEFUL + 10)
            new = cluster.restart(index)
            cluster.haproxy.wait_state(name, "UP")
            served = traffic.total()
            assert wait_until(lambda: traffic.total() >= served + 30, timeout=30), traffic.counts  # noqa: B023
            assert wait_until(lambda: served_archive(new), timeout=10), f"{name} serves nothing since its restart"  # noqa: B023
    assert traffic.read_failures == [], f"failed reads: {traffic.read_failures[:5]}"
    failed = {ident: seen for ident, (_, seen) in traffic.failed_uploads.items()}
    assert failed == {}, f"{len(failed)} failed uploads: {list(failed.items())[:5]}"
    assert_intact(cluster, traffic.stored)
