"""The durability order of every upload, seen from outside the server with strace.

The real gunicorn runs under ``strace -f``; every receive path is driven with
real uploads (Content-Length bodies spliced, teed to the hashing thread and
hashed in line, the pure-Python path, chunked bodies, concurrent uploads on
kept-alive connections), the server is stopped so the trace is complete, and
``trace.check`` proves for each PUT, from the system calls and their times,
that the method the server runs with (``PAI_DURABILITY``; ``fsync`` is today's
code) made the bytes durable before their name and the name durable before the
client heard 201 (see ``trace.RULES``).

The data and the name go through the archive's own file system, so: a
directory under /var/tmp (a disk, not a tmpfs) for fsync and syncfs, and, for
journal, an ext4 (journaled, data=ordered) loop-mounted by the test (root only).

Not on HPSS: the emulator's writes land in local files the emulator chooses
how to flush, which says nothing of what the vendor's library makes durable,
so a trace of it would prove nothing about the order HPSS gives; those uploads
never reach the posix backend's commit that these tests check.
"""

import contextlib
import dataclasses
import http.client
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from harness import children

from pyai.config import SETTINGS

from .trace import check, parse

HPSS_REASON = (
    "not on hpss: the emulator's writes are not the vendor's durability, so a trace of them proves nothing "
    "(see tests/durability/test_order.py)"
)
IMPLS = tuple(os.environ.get("PYAI_TEST_IMPLS", "c python").split())
POSIX = "posix" in os.environ.get("PYAI_TEST_BACKENDS", "posix hpss hsmsideband").split()
HAVE_C = importlib.util.find_spec("pyai.native._cimpl") is not None
DURABILITY = next((s for s in SETTINGS if s.name == "durability"), None)
KIB, MIB = 1 << 10, 1 << 20
# Every call that reads a request line, writes an answer, writes data into a file,
# syncs something, or gives a file a name ("?": not a system call on every architecture).
SYSCALLS = (
    "?open,openat,read,readv,recvfrom,recvmsg,?recv,"
    "write,writev,pwrite64,pwritev,pwritev2,sendto,sendmsg,?send,splice,tee,copy_file_range,sendfile,"
    "fsync,fdatasync,sync_file_range,syncfs,rename,renameat,renameat2,link,linkat,unlink,unlinkat,?mkdir,mkdirat"
)
STOP_TIMEOUT = 60


@dataclasses.dataclass(frozen=True)
class Config:
    impl: str
    settings: tuple  # (environment variable, value) pairs
    integer_ids: bool = False
    server_makes_prefix: bool = False  # else the test makes it beforehand, as an operator would


CONFIGS = {
    "c-nochecksum": Config("c", (("PAI_CHECKSUM", "none"),)),
    "c-sha256": Config("c", (("PAI_CHECKSUM", "sha256"),)),
    # nested directories too: integer ids in the id2filename layout
    "python": Config("python", (("PAI_CHECKSUM", "sha256"), ("PAI_USE_ID2FILENAME", "true")), integer_ids=True),
    "c-new-prefix": Config("c", (("PAI_CHECKSUM", "sha256"),), server_makes_prefix=True),
}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    config: str
    size: int
    chunked: bool = False
    threads: int = 0  # 0: on the config's one kept-alive connection, in turn with the other cases
    per_thread: int = 1
    spliced: bool = None  # whether the file must have been written by splice (the path the case is for)


CASES = [
    Case("splice-64KiB", "c-nochecksum", 64 * KIB, spliced=True),
    Case("splice-3MiB", "c-nochecksum", 3 * MIB, spliced=True),
    Case("chunked-nochecksum-3MiB", "c-nochecksum", 3 * MIB, chunked=True),
    Case("tee-3MiB", "c-sha256", 3 * MIB, spliced=True),
    Case("seen-30B", "c-sha256", 30),
    Case("seen-64KiB", "c-sha256", 64 * KIB),
    Case("chunked-30B", "c-sha256", 30, chunked=True),
    Case("chunked-3MiB", "c-sha256", 3 * MIB, chunked=True),
    Case("concurrent-4x10", "c-sha256", 16 * KIB, threads=4, per_thread=10),
    Case("python-30B", "python", 30, spliced=False),
    Case("python-3MiB", "python", 3 * MIB, spliced=False),
    Case("python-chunked-3MiB", "python", 3 * MIB, chunked=True, spliced=False),
]
NEW_PREFIX = Case("new-prefix-30B", "c-new-prefix", 30)


def _method_param(method):
    if method == "fsync":
        return pytest.param(method, id=method)
    if DURABILITY is None:
        reason = f"durability={method}: pyai.config.SETTINGS has no durability setting in this tree yet"
        return pytest.param(method, id=method, marks=pytest.mark.skip(reason=reason))
    try:
        DURABILITY.parse(method)
    except ValueError as exc:
        reason = f"the server refuses {DURABILITY.env}={method}: {exc}"
        return pytest.param(method, id=method, marks=pytest.mark.skip(reason=reason))
    return pytest.param(method, id=method)


def _skip_reason(impl):
    if not POSIX:
        return "PYAI_TEST_BACKENDS leaves out posix"
    if impl not in IMPLS:
        return f"PYAI_TEST_IMPLS leaves out {impl}"
    if impl == "c" and not HAVE_C:
        return "the C extension is not built"
    return None


def _case_param(case):
    reason = _skip_reason(CONFIGS[case.config].impl)
    marks = [pytest.mark.skip(reason=reason)] if reason else []
    return pytest.param(case, id=case.name, marks=marks)


def strace_command(output):
    """strace, following every process and thread of the server, writing to ``output``; skips when unusable."""
    exe = shutil.which("strace")
    if exe is None:
        pytest.skip("strace is not installed (make test installs it)")
    base = [exe, "-f", "-tt", "-T", "-y", "-s", "128", "-qq", "-e", f"trace={SYSCALLS}", "-o", str(output)]
    # seccomp-bpf stops the server only at the traced calls: several times faster under strace
    for extra in (["--seccomp-bpf"], []):
        probe = subprocess.run([*base[:1], *extra, *base[1:-2], "-o", os.devnull, "true"], capture_output=True)
        if probe.returncode == 0:
            return [*base[:1], *extra, *base[1:], "--"]
    pytest.skip(f"strace cannot trace here: {probe.stderr.decode(errors='replace').strip()}")


def on_device(path):
    """A predicate: is a path on the file system of ``path`` (its nearest existing ancestor's device)?"""
    device = os.stat(path).st_dev

    def same(candidate):
        while True:
            try:
                return os.stat(candidate).st_dev == device
            except OSError:
                parent = os.path.dirname(candidate)
                if parent == candidate:
                    return False
                candidate = parent

    return same


@dataclasses.dataclass
class Run:
    """One traced server: the ids each case stored, and the calls of the trace."""

    ids: dict  # case name -> ids
    calls: list
    trace: Path
    path_of: object
    same_fs: object


class Runs:
    """One traced server per (method, config), started and run at its first test, shared by the others."""

    def __init__(self, tmp_path_factory, new_pool):
        self.tmp = tmp_path_factory
        self.new_pool = new_pool  # new_pool(impl): a ServerPool; each run closes its own at its end
        self.done = {}
        self.stack = contextlib.ExitStack()

    def get(self, method, config):
        key = (method, config)
        if key not in self.done:
            try:
                self.done[key] = self._run(method, config)
            except BaseException as exc:  # noqa: BLE001 - a skip or a failure: every case of this run has it
                self.done[key] = exc
        result = self.done[key]
        if isinstance(result, BaseException):
            raise result
        return result

    def close(self):
        self.stack.close()

    def _prefix(self, method, config):
        prefix = self._base(method, config) / "prefix"
        if not CONFIGS[config].server_makes_prefix:
            prefix.mkdir()
        return prefix

    def _base(self, method, config):
        if method == "journal":
            from faults.mounts import Ext4OnLoop

            if os.geteuid() != 0:
                pytest.skip("journal needs an ext4 of its own, which only root can mount")
            base = Path(tempfile.mkdtemp(prefix="pyai-durability-", dir="/var/tmp"))
            self.stack.callback(shutil.rmtree, base, ignore_errors=True)
            return self.stack.enter_context(Ext4OnLoop(base / "ext4.img", base / "mnt", size_mib=512)).mountpoint
        base = Path(tempfile.mkdtemp(prefix=f"pyai-durability-{method}-{config}-", dir="/var/tmp"))
        self.stack.callback(shutil.rmtree, base, ignore_errors=True)
        return base

    def _run(self, method, config_name):
        config = CONFIGS[config_name]
        base = self.tmp.mktemp(f"traced-{method}-{config_name}")
        trace = base / "strace.txt"
        wrapper = strace_command(trace)
        prefix = self._prefix(method, config_name)
        settings = dict(config.settings, PAI_PREFIX=str(prefix), PAI_WORKERS="1")
        if DURABILITY is not None:
            settings[DURABILITY.env] = method
        with self.new_pool(config.impl) as pool:
            srv = pool.start(f"traced-{method}", wrapper=wrapper, **settings)
            ids = upload(srv.port, [c for c in [*CASES, NEW_PREFIX] if c.config == config_name], config.integer_ids)
            stop_traced(srv)
        return Run(ids, parse(trace.read_text(errors="replace")), trace, srv.stored_path, on_device(srv.prefix))


def new_id(integer):
    return str(secrets.randbits(40) | (1 << 40)) if integer else f"d-{secrets.token_hex(6)}"


def put(conn, ident, body, chunked):
    """One PUT on the kept-alive ``conn``; the answer must be 201."""
    if chunked:
        pieces = (body[i : i + 64 * KIB] for i in range(0, len(body), 64 * KIB))
        conn.request("PUT", f"/{ident}", body=pieces, encode_chunked=True)
    else:
        conn.request("PUT", f"/{ident}", body=body, headers={"Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    answer = resp.read()
    assert resp.status == 201, (ident, resp.status, answer[:300])


def upload(port, cases, integer_ids):
    """Store every case's bodies: the single ones in turn on one connection, then the concurrent ones."""
    ids = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for case in cases:
            if not case.threads:
                ident = new_id(integer_ids)
                put(conn, ident, os.urandom(case.size), case.chunked)
                ids[case.name] = [ident]
    finally:
        conn.close()
    for case in cases:
        if case.threads:
            ids[case.name] = concurrent(port, case, integer_ids)
    return ids


def concurrent(port, case, integer_ids):
    """``case.threads`` clients at once, each storing ``case.per_thread`` bodies on its kept-alive connection."""
    plan = [[new_id(integer_ids) for _ in range(case.per_thread)] for _ in range(case.threads)]
    errors = []
    start = threading.Barrier(case.threads)

    def client(mine):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            start.wait()
            for ident in mine:
                put(conn, ident, os.urandom(case.size), case.chunked)
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(mine,)) for mine in plan]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [ident for mine in plan for ident in mine]


def stop_traced(srv):
    """Stop gunicorn (strace's child) gracefully and wait for strace to exit: then the trace is complete."""
    masters = children(srv.proc.pid)
    assert masters, f"no gunicorn under strace:\n{srv.log()}"
    for pid in masters:
        os.kill(pid, signal.SIGTERM)
    try:
        srv.proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"gunicorn under strace did not stop within {STOP_TIMEOUT}s:\n{srv.log()}")


@pytest.fixture(scope="module")
def runs(server_pool, request, tmp_path_factory):
    cache = Runs(tmp_path_factory, lambda impl: server_pool(request, impl=impl))
    try:
        yield cache
    finally:
        cache.close()


@pytest.mark.parametrize("case", [_case_param(c) for c in CASES])
@pytest.mark.parametrize("method", [_method_param(m) for m in ("fsync", "journal", "syncfs")])
def test_durability_order(runs, method, case):
    """Every upload of the case: data durable before its name, its name durable before 201."""
    run = runs.get(method, case.config)
    ids = run.ids[case.name]
    assert len(ids) == max(case.threads, 1) * case.per_thread
    report = check(run.calls, method, run.path_of, same_fs=run.same_fs, ids=ids)
    assert report, f"durability={method}, {case.name} (trace: {run.trace}):\n{report.text()}"
    if case.spliced is not None:
        # the case is for one receive path: prove it took it (else it proves nothing of that path)
        spliced = {ident for ident in ids if any(c.name == "splice" for c in report.writes[ident])}
        assert spliced == (set(ids) if case.spliced else set()), f"{case.name}: written with splice: {spliced}"


@pytest.mark.skipif(_skip_reason("c") is not None, reason=str(_skip_reason("c")))
def test_a_prefix_the_server_makes_is_durable_in_its_parent(runs):
    """A missing prefix is made at start-up: a file stored in it is durable only once the prefix's
    own entry is, so its parent must be fsynced before the first 201 (trace.check's mkdir rule)."""
    run = runs.get("fsync", NEW_PREFIX.config)
    report = check(run.calls, "fsync", run.path_of, same_fs=run.same_fs, ids=run.ids[NEW_PREFIX.name])
    prefix = os.path.dirname(str(run.path_of(run.ids[NEW_PREFIX.name][0])))
    assert any(c.name in ("mkdir", "mkdirat") and prefix in c.args for c in run.calls), "no mkdir of the prefix seen"
    assert report, f"a prefix made at start-up (trace: {run.trace}):\n{report.text()}"


@pytest.mark.skip(reason=HPSS_REASON)
def test_hpss():
    """Placeholder that says in the run's summary why hpss is not traced."""
