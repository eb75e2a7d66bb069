"""/metrics on the real gunicorn with two workers: exact counts summed over both, whichever
serves the scrape; in-progress gauges that forget a killed worker; promtool's verdict; the
metrics directory's life; tokens; the HPSS emulator's ping and stages from tape (both APIs)."""

import base64
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from emulator import emu_cli
from faults.procs import connect, holder_of, workers
from prometheus_client.parser import text_string_to_metric_families
from server import BIN, free_port, wait_until
from tape_client import stage, tape_settings, wait_done

TIMEOUT = 15
TWO = {"PAI_WORKERS": "2", "PAI_THREADS": "4"}


# -- reading a scrape --------------------------------------------------------------------------


def parse(text):
    """{(sample name, sorted label items): value} of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(srv, headers=None):
    """(the body's text, its samples) of one GET /metrics on a new connection."""
    resp = requests.get(srv.url + "/metrics", headers=headers, timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["Content-Type"].startswith("text/plain; version="), resp.headers
    return resp.text, parse(resp.text)


def answer(sock):
    """(head, body bytes) of the next answer on a kept-alive connection (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head)[1])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, body
        body += chunk
    return head.decode("latin-1"), body


def scrape_on(sock):
    """The body of GET /metrics on ``sock`` (kept alive: the same worker answers every time)."""
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head, body = answer(sock)
    assert head.startswith("HTTP/1.1 200"), head
    return body


def connection_per_worker(srv, pids):
    """{worker pid: a kept-alive connection it holds}, one for each of ``pids``."""
    held, spare = {}, []
    deadline = time.monotonic() + 30
    while len(held) < len(pids):
        assert time.monotonic() < deadline, f"no connection reached every worker of {pids}: {list(held)}"
        sock = connect(srv.port)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer(sock)
        pid = holder_of(sock, pids)
        if pid is not None and pid not in held:
            held[pid] = sock
        else:
            spare.append(sock)
    for sock in spare:
        sock.close()
    return held


def new_id():
    return f"m{os.getpid()}-{time.monotonic_ns()}"


COUNTERS = re.compile(r"_(total|count|sum|bucket)$")


# -- counts ------------------------------------------------------------------------------------


def barrier(sock):
    """Once a HEAD answers on ``sock``, its worker has counted every earlier request on it
    (the worker ends one exchange before it reads the next head)."""
    sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk


def test_counts_are_summed_over_both_workers(pool):
    srv = pool.start("counts", **TWO)
    conns = connection_per_worker(srv, workers(srv, 2))
    first, second = conns.values()
    base_body = scrape_on(first)
    barrier(first)
    base = parse(base_body.decode())

    sent = received = 0
    with requests.Session() as session:  # one kept-alive connection: one worker, in order
        body = b"these bytes are not the ones the digest names"
        wrong = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()
        refused = session.put(srv.id_url(new_id()), data=body, headers={"Content-MD5": wrong}, timeout=TIMEOUT)
        assert refused.status_code == 400, refused.text
        received += len(body)
        sent += len(refused.content)
        for size in (1000, 2000, 3000):
            resp = session.put(srv.id_url(f"{new_id()}-{size}"), data=os.urandom(size), timeout=TIMEOUT)
            assert resp.status_code == 201, resp.text
            received += size
            sent += len(resp.content)
        ident = new_id()
        resp = session.put(srv.id_url(ident), data=b"x" * 4096, timeout=TIMEOUT)
        assert resp.status_code == 201
        received += 4096
        sent += len(resp.content)
        for _ in range(2):
            resp = session.get(srv.id_url(ident), timeout=TIMEOUT)
            assert resp.status_code == 200 and len(resp.content) == 4096
            sent += 4096
        missing = session.get(srv.id_url(new_id()), timeout=TIMEOUT)
        assert missing.status_code == 404
        sent += len(missing.content)
        assert session.head(srv.url + "/healthz", timeout=TIMEOUT).status_code == 200  # the barrier
    puts, gets = 5, 3  # the base scrape's GET is counted once it ended

    one_body = scrape_on(first)  # the worker of the base scrape...
    barrier(first)
    one = parse(one_body.decode())
    other = parse(scrape_on(second).decode())  # ...and the other one, which saw other requests
    for snapshot in (one, other):
        assert value(snapshot, "pyai_requests_total", method="PUT", status="2xx") - value(
            base, "pyai_requests_total", method="PUT", status="2xx"
        ) == (puts - 1)
        assert value(snapshot, "pyai_requests_total", method="PUT", status="4xx") == 1
        assert value(snapshot, "pyai_requests_total", method="GET", status="4xx") == 1
        assert (
            value(snapshot, "pyai_request_duration_seconds_count", method="PUT")
            - value(base, "pyai_request_duration_seconds_count", method="PUT")
            == puts
        )
        assert value(snapshot, "pyai_received_bytes_total") - value(base, "pyai_received_bytes_total") == received
        assert value(snapshot, "pyai_checksum_mismatches_total", algorithm="md5") == 1
        assert value(snapshot, "pyai_transfers_in_progress", direction="upload") == 0
        assert value(snapshot, "pyai_transfers_in_progress", direction="download") == 0
        assert value(snapshot, "pyai_ready") == 1
    base_gets = value(base, "pyai_requests_total", method="GET", status="2xx")
    assert value(one, "pyai_requests_total", method="GET", status="2xx") - base_gets == gets
    assert value(other, "pyai_requests_total", method="GET", status="2xx") - base_gets == gets + 1  # + one's
    base_sent = value(base, "pyai_sent_bytes_total")
    assert value(one, "pyai_sent_bytes_total") - base_sent == sent + len(base_body)
    assert value(other, "pyai_sent_bytes_total") - base_sent == sent + len(base_body) + len(one_body)
    for sock in conns.values():
        sock.close()


@pytest.mark.quick
def test_promtool_finds_no_problem_in_a_real_scrape(pool):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed: make system-deps")
    srv = pool.start("promtool", **TWO)
    ident = new_id()
    assert requests.put(srv.id_url(ident), data=b"some bytes", timeout=TIMEOUT).status_code == 201
    assert requests.get(srv.id_url(ident), timeout=TIMEOUT).status_code == 200
    assert requests.get(srv.id_url(new_id()), timeout=TIMEOUT).status_code == 404
    text, _ = scrape(srv)
    assert "pyai_request_duration_seconds_bucket" in text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (check, text)


def test_a_killed_worker_leaves_no_transfer_in_progress_and_no_count_goes_back(pool):
    srv = pool.start("kill", **TWO)
    pids = workers(srv, 2)
    big = new_id()
    assert requests.put(srv.id_url(big), data=os.urandom(48 << 20), timeout=60).status_code == 201
    download = connect(srv.port)
    download.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    download.sendall(f"GET /{big} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    upload = connect(srv.port)
    upload.sendall(f"PUT /{new_id()} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n".encode())
    upload.sendall(b"u" * 1000)

    def in_progress(samples):
        return tuple(value(samples, "pyai_transfers_in_progress", direction=d) for d in ("upload", "download"))

    seen = {}

    def both_counted():
        seen["samples"] = scrape(srv)[1]
        return in_progress(seen["samples"]) == (1, 1)

    assert wait_until(both_counted, timeout=TIMEOUT), in_progress(seen["samples"])
    before = seen["samples"]
    victim = holder_of(upload, pids)
    assert victim in pids
    download_in_victim = holder_of(download, pids) == victim
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: victim not in workers(srv, 2), timeout=30)
    _, after = scrape(srv)
    assert in_progress(after) == (0, 0 if download_in_victim else 1)
    for key, number in before.items():
        if COUNTERS.search(key[0]):
            assert after.get(key, 0.0) >= number, (key, number, after.get(key))
    download.close()
    upload.close()


def test_sweeps_are_counted_at_start_up_and_in_the_masters_sweeping_children(pool, tmp_path):
    prefix = tmp_path / "sweep-prefix"
    (prefix / "39").mkdir(parents=True)
    directory = tmp_path / "multiproc"

    def stale(name):
        (prefix / name).write_bytes(b"left by a crash")
        an_hour_ago = time.time() - 3600
        os.utime(prefix / name, (an_hour_ago, an_hour_ago))

    stale(".pyai-tmp-a")
    stale("39/.pyai-tmp-b")
    settings = {"PAI_SWEEP_INTERVAL": "1", "PAI_SWEEP_MIN_AGE": "60", **TWO}
    srv = pool.start("sweep", PAI_PREFIX=str(prefix), PROMETHEUS_MULTIPROC_DIR=str(directory), **settings)
    for _ in range(3):  # whichever worker answers, the sweep of the master is in every scrape
        assert value(scrape(srv)[1], "pyai_temp_files_swept_total") == 2
    stale(".pyai-tmp-c")  # for the next sweep, in a child the master forks every second
    assert wait_until(lambda: value(scrape(srv)[1], "pyai_temp_files_swept_total") == 3, timeout=TIMEOUT)
    assert not list(prefix.rglob(".pyai-tmp*"))
    # the sweeping children leave no file of their own: only the workers' files are there, and the
    # master's (its pyai_reloads_refused_total)
    pids = {int(name.stem.rsplit("_", 1)[1]) for name in directory.glob("*_*.db")}
    assert pids == {*workers(srv, 2), srv.proc.pid}, sorted(os.listdir(directory))


# -- the metrics directory -------------------------------------------------------------------


def metrics_directories(pids):
    """The directories of the prometheus_client files the processes ``pids`` have mapped."""
    found = set()
    for pid in pids:
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                path = line.split()[-1] if line.count("/") else ""
                if path.endswith(".db") and os.path.basename(path).split("_")[0] in ("counter", "gauge", "histogram"):
                    found.add(os.path.dirname(path))
    return found


@pytest.mark.parametrize("how", ["gunicorn", "pacifica-archiveinterface"])
def test_a_private_directory_lives_as_long_as_the_master(pool, how):
    """Both ways of serving load the hooks: the sums are over both workers, the directory goes at exit."""
    command = port = None
    if how != "gunicorn":
        port = free_port()
        command = [str(BIN / how), "-a", "127.0.0.1", "-p", str(port)]
    srv = pool.start("private", command=command, port=port, **TWO)
    conns = connection_per_worker(srv, workers(srv, 2))
    first, second = conns.values()
    before = parse(scrape_on(second).decode())
    barrier(second)
    scrape_on(first)
    barrier(first)
    after = parse(scrape_on(second).decode())
    gets = [value(samples, "pyai_requests_total", method="GET", status="2xx") for samples in (before, after)]
    assert gets[1] - gets[0] == 2  # the second worker's scrape and the first's: summed
    for sock in conns.values():
        sock.close()
    (directory,) = metrics_directories(workers(srv, 2))
    assert os.path.basename(directory).startswith("pyai-metrics-")
    srv.stop()
    assert not os.path.exists(directory)


def test_the_operators_directory_is_emptied_of_a_previous_run(pool, tmp_path):
    directory = tmp_path / "multiproc"
    directory.mkdir()
    stale = (
        "from prometheus_client import Counter;"
        "Counter('pyai_requests', 'stale', ('method', 'status')).labels('GET', '2xx').inc(1000000)"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", stale], env=env, check=True, timeout=60)
    (stale_file,) = directory.glob("counter_*.db")
    (directory / "README").write_text("not prometheus_client's: left alone")
    srv = pool.start("operator", PROMETHEUS_MULTIPROC_DIR=str(directory), **TWO)
    assert not stale_file.exists()
    assert (directory / "README").exists()
    assert value(scrape(srv)[1], "pyai_requests_total", method="GET", status="2xx") < 1000
    assert metrics_directories(workers(srv, 2)) == {str(directory)}
    srv.stop()
    assert directory.exists()  # the operator's: kept


# -- tokens ------------------------------------------------------------------------------------

RO = "ro-token-for-the-metrics-tests-01"
RW = "rw-token-for-the-metrics-tests-02"


def test_metrics_need_a_token_when_authentication_is_on(pool, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ro {RO}\nrw {RW}\n")
    tokens.chmod(0o600)
    srv = pool.start("auth", PAI_AUTH_TOKENS_FILE=str(tokens), **TWO)
    refused = requests.get(srv.url + "/metrics", timeout=TIMEOUT)
    assert refused.status_code == 401
    assert "pyai_" not in refused.text
    wrong = requests.get(srv.url + "/metrics", headers={"Authorization": "Bearer not-a-token-0000"}, timeout=TIMEOUT)
    assert wrong.status_code == 401

    def refusals():  # each worker counts a request once its answer is out: the scrape may come first
        _, samples = scrape(srv, headers={"Authorization": f"Bearer {RO}"})
        return value(samples, "pyai_requests_total", method="GET", status="4xx")

    assert wait_until(lambda: refusals() == 2, timeout=TIMEOUT)  # the two refused
    assert refusals() == 2


# -- asked at scrape time: the build and the prefix's free space ------------------------------------


def test_build_info_and_the_prefixs_free_space_follow_the_file_system(pool, tmp_path):
    from faults import mounts

    from pyai import __version__

    prefix = tmp_path / "small"
    with mounts.tmpfs(prefix, size="16m"):
        srv = pool.start("space", PAI_PREFIX=str(prefix), **TWO)
        text, before = scrape(srv)
        st = os.statvfs(prefix)  # nothing else writes to this file system
        assert value(before, "pyai_build_info", version=__version__, implementation="c", backend="posix") == 1
        assert value(before, "pyai_prefix_size_bytes") == 16 * 1024 * 1024 == st.f_blocks * st.f_frsize
        assert value(before, "pyai_prefix_free_bytes") == st.f_bavail * st.f_frsize
        assert value(before, "pyai_prefix_inodes") == st.f_files
        assert value(before, "pyai_prefix_free_inodes") == st.f_favail > 0
        resp = requests.put(srv.url + "/four-mib", data=os.urandom(4 * 1024 * 1024), timeout=TIMEOUT)
        assert resp.status_code == 201, resp.text
        _, after = scrape(srv)
        st = os.statvfs(prefix)
        assert value(after, "pyai_prefix_free_bytes") == st.f_bavail * st.f_frsize
        assert value(before, "pyai_prefix_free_bytes") - value(after, "pyai_prefix_free_bytes") >= 4 * 1024 * 1024
        assert value(after, "pyai_prefix_free_inodes") == st.f_favail < value(before, "pyai_prefix_free_inodes")
        srv.stop()


def test_a_vanished_prefix_has_no_free_space_gauge(pool, tmp_path):
    prefix = tmp_path / "vanishing"
    srv = pool.start("space-gone", PAI_PREFIX=str(prefix))
    prefix.rename(tmp_path / "moved-away")
    _, samples = scrape(srv)
    assert ("pyai_prefix_free_bytes", ()) not in samples and ("pyai_prefix_free_inodes", ()) not in samples
    assert value(samples, "pyai_backend_up", backend="posix") == 0


# -- the HPSS emulator: ping, stages from tape -----------------------------------------------------


def test_hpss_ping_and_stages_through_both_apis(fresh_hpss):

    srv = fresh_hpss.start("hpss", **tape_settings(PAI_HPSS_PING_INTERVAL="0", PAI_TAPE_MAX_OPEN_REQUESTS="1"))
    emu_cli(srv.prefix, "set-stage-delay", "0.5")
    idents = [str(secrets.randbits(40) | (1 << 41)) for _ in range(3)]
    for ident in idents:
        assert requests.put(srv.id_url(ident), data=os.urandom(3000), timeout=TIMEOUT).status_code == 201
    emu_cli(srv.prefix, "purge", *idents)
    pacifica, tape, refused = idents

    assert requests.post(srv.id_url(pacifica), timeout=TIMEOUT).status_code == 202
    accepted = stage(srv, [f"/{tape}"])
    assert accepted.status_code == 201, accepted.text
    assert stage(srv, [f"/{refused}"]).status_code == 429  # one open request per owner
    assert wait_done(srv, accepted.json()["requestId"])["files"][0]["state"] == "COMPLETED"

    seen = {}

    def both_timed():  # the Pacifica stage ends in its own time; the executor counts after the store
        seen["samples"] = scrape(srv)[1]
        waits = [value(seen["samples"], "pyai_stage_wait_seconds_count", api=api) for api in ("pacifica", "tape")]
        return waits == [1, 1]

    assert wait_until(both_timed, timeout=TIMEOUT), seen
    assert requests.post(srv.id_url(pacifica), timeout=TIMEOUT).status_code == 200  # on disk now
    _, samples = scrape(srv)
    assert value(samples, "pyai_stage_files_total", api="pacifica", outcome="staging") == 1
    assert value(samples, "pyai_stage_files_total", api="pacifica", outcome="on_disk") == 1
    assert value(samples, "pyai_stage_files_total", api="tape", outcome="completed") == 1
    assert value(samples, "pyai_stage_wait_seconds_count", api="tape") == 1
    assert value(samples, "pyai_stage_wait_seconds_sum", api="pacifica") >= 0.4  # the emulator's delay
    assert value(samples, "pyai_admission_refusals_total", reason="tape_open_requests") == 1
    assert value(samples, "pyai_tape_stage_files", state="completed") == 1
    assert value(samples, "pyai_tape_stage_files", state="started") == 0

    checks = requests.get(srv.url + "/readyz", timeout=TIMEOUT).json()["checks"]
    if "hpss" not in checks:
        pytest.skip("the health checks have no hpss check yet (pyai.ops.health is a stub on this branch)")
    assert value(samples, "pyai_backend_up", backend="hpss") == 1
    assert 0 < value(samples, "pyai_hpss_ping_seconds") < 10


def test_hpss_has_build_info_and_no_local_free_space(fresh_hpss):
    """The prefix is a path in HPSS: the emulator's directory is no answer for the real one."""
    from pyai import __version__

    srv = fresh_hpss.start("hpss-space")
    _, samples = scrape(srv)
    assert value(samples, "pyai_build_info", version=__version__, implementation="c", backend="hpss") == 1
    assert not [name for name, _ in samples if name.startswith("pyai_prefix_")]


# -- the gauges of a scrape, from given health checks ------------------------------------------


class Checked:
    """What exposition reads of pyai.ops.health.Health: its checks, backend and store."""

    class backend:
        name = "hpss"

    store = None

    def __init__(self, checks):
        self.checks = checks

    def check(self):
        from pyai.ops.health import Report

        return Report(self.checks)


def test_health_gauges_follow_the_checks():
    from pyai.ops import metrics
    from pyai.ops.health import Check

    checks = {"serving": Check(True), "hpss": Check(True, seconds=0.012), "stage_store": Check(False, error="down")}
    content_type, body = metrics.exposition(Checked(checks))
    assert content_type.startswith("text/plain; version=")
    samples = parse(body.decode())
    assert value(samples, "pyai_ready") == 0  # the store is down
    assert value(samples, "pyai_backend_up", backend="hpss") == 1
    assert value(samples, "pyai_hpss_ping_seconds") == 0.012
    assert value(samples, "pyai_stage_store_up") == 0
    assert ("pyai_sideband_database_up", ()) not in samples  # no such check: no such gauge
    checks["hpss"] = Check(False, error="the core server does not answer")
    samples = parse(metrics.exposition(Checked(checks))[1].decode())
    assert value(samples, "pyai_backend_up", backend="hpss") == 0
    assert ("pyai_hpss_ping_seconds", ()) not in samples  # no latency without an answer
