"""Prometheus metrics: the counters the workers keep, and the ``/metrics`` exposition.

gunicorn runs several worker processes; each keeps its counts in
prometheus-client's multiprocess mode (one mmapped file per process and kind,
in ``PROMETHEUS_MULTIPROC_DIR``), and a scrape, whichever worker it lands in,
sums the files of every worker, live or dead.  The master sets the directory
up before it forks (``prepare_master``: a private fresh one, or the operator's
emptied), drops a dead worker's in-progress gauges (``worker_exited``) and
removes the private directory at its exit (``master_exiting``).
prometheus_client picks its value class when it is first imported, from the
environment, so it is imported only inside functions here, never at import
time (the master imports pyai before it runs the hooks).

The per-request counts (``request_finished``, ``transfer_started``: the request
counter, the duration histogram, the byte counters and the transfer gauge) are
not written per request: each thread adds them to its own list of plain
numbers (no lock, no shared write), and ``flush`` adds what the lists gained
since the last flush to the mmapped files.  ``pyai.ops.observe`` flushes every
``FLUSH_INTERVAL`` seconds from a thread of each worker, and at the worker's
exit.  A scrape stays exact: the worker answering it flushes its own counts,
then asks every other worker to flush (a datagram to the socket the other's
flushing thread waits on, ``listen``) and waits for their answers (at most
``ASK_TIMEOUT`` seconds) before it reads the files.  A worker killed (SIGKILL)
loses what it counted since its last flush, at most ``FLUSH_INTERVAL`` seconds.

Outside gunicorn (an in-process test client) the counts are this process's.
The health gauges (``pyai_ready``, ``pyai_backend_up``, ...), the build info and
the prefix's free space are computed by the scraping process at scrape time.
Counting never fails a request: a failure to count is logged once and forgotten.
"""

import bisect
import contextlib
import errno
import fcntl
import glob
import hashlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Protocol, Set, Tuple, Type, Union, cast

from pyai.archive.checksums import ALGORITHMS
from pyai.ops.record import RECORD, Record

if TYPE_CHECKING:  # prometheus_client is imported only inside functions (see above)
    from wsgiref.types import WSGIEnvironment

    from prometheus_client import Counter
    from prometheus_client.metrics_core import GaugeMetricFamily, Metric

    from pyai.config import Config
    from pyai.ops.health import Probed, Report, StageStore

log = logging.getLogger("pyai")
DIRECTORY_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Bounded label values: a method a client makes up is "other"; a request never answered is "none".
METHODS = ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "PROPFIND")
METHOD_LABELS = {method: method for method in METHODS}
STATUS_CLASSES = {code: f"{code // 100}xx" for code in range(100, 600)}
UPLOAD, DOWNLOAD = "upload", "download"
TRANSFERS = {"PUT": UPLOAD, "GET": DOWNLOAD}  # the data plane's methods that move a file's bytes
# Seconds: from a HEAD answered in microseconds to a GiB-sized file over a slow link.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# Seconds a file takes from tape: a mounted cartridge in seconds, a queue of mounts in hours.
STAGE_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
TAPE, PACIFICA = "tape", "pacifica"  # the stage APIs: the Tape REST API, Pacifica's POST /<id>
STAGE_STATES = ("SUBMITTED", "STARTED", "COMPLETED", "FAILED", "CANCELLED")  # pyai.tape.models
STAGE_OUTCOMES = {TAPE: ("completed", "failed"), PACIFICA: ("on_disk", "staging")}
TAPE_OPEN_REQUESTS = "tape_open_requests"  # the 429 of a Tape API client at [tape] max_open_requests
TAPE_KEPT_FILES = "tape_kept_files"  # the 429 of a Tape API client at [tape] max_kept_files
# Backends whose prefix is a local (or mounted) file system: the ones with free-space gauges.
FREE_SPACE_BACKENDS = ("posix", "hsmsideband")
PENDING_MAX = 10_000  # Pacifica stages remembered per process until they reach disk
FLUSH_INTERVAL = 0.25  # seconds: how often each worker adds its threads' counts to its files
ASK_TIMEOUT = 1.0  # seconds a scrape waits for the other workers' flushes (a worker stopped dead: no longer)

# Where a thread's counts are in its list (see _Instruments.flush): the requests by method and status
# class, then each method's duration histogram (its buckets, +Inf, then its sum), the body bytes, and
# the transfers ended, then started, by direction (ended before started: see flush).
METHOD_SLOTS = (*METHODS, "other")
STATUS_SLOTS = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")
_METHOD_INDEX = {method: index for index, method in enumerate(METHODS)}
_OTHER, _NONE = len(METHODS), len(STATUS_SLOTS) - 1
# keyed by Optional[int]: request_finished looks up a status that is None when no answer began
_STATUS_INDEX: Dict[Optional[int], int] = {code: code // 100 - 1 for code in range(100, 600)}
_HISTOGRAMS = len(METHOD_SLOTS) * len(STATUS_SLOTS)
_HISTOGRAM_SLOTS = len(DURATION_BUCKETS) + 2  # the buckets, +Inf, the sum
_SUM = len(DURATION_BUCKETS) + 1
_RECEIVED = _HISTOGRAMS + len(METHOD_SLOTS) * _HISTOGRAM_SLOTS
_SENT = _RECEIVED + 1
_KINDS = (UPLOAD, DOWNLOAD)
_KIND_INDEX = {kind: index for index, kind in enumerate(_KINDS)}
_ENDED = _SENT + 1
_STARTED = _ENDED + len(_KINDS)
_SLOTS = _STARTED + len(_KINDS)

_instruments: Optional["_Instruments"] = None  # this process's _Instruments, once made
# (master pid, the directory prepare_master made), None for the operator's
_private_directory: Optional[Tuple[int, str]] = None
_pending: Dict[str, float] = {}  # path -> time.monotonic() of the Pacifica POST /<id> that found it on tape
_complained: Set[str] = set()
_swept_here = 0  # count_swept's count without a directory (this process's)
_local = threading.local()  # .counts: this thread's list of _SLOTS numbers, which only it writes
# every thread's list, in the order they first counted (kept after the thread ends); floats: durations are summed
_thread_counts: List[List[float]] = []
_flush_lock = threading.Lock()  # one flush at a time (never taken by a request)
_listener: Optional[socket.socket] = None  # this worker's socket, where other workers' scrapes ask it to flush
# A scrape's ask: the nonce to send back, and the asker's (abstract, autobound) address.
Asker = Tuple[bytes, Union[str, bytes]]
SWEPT_FILE = "pyai-swept.count"  # count_swept's count in the directory (not *.db: the collector reads those)


# -- the master -----------------------------------------------------------------------------


def prepare_master() -> None:
    """Before any worker starts: the directory every process keeps its counts in.

    Without ``PROMETHEUS_MULTIPROC_DIR`` a private fresh directory; with it, that
    directory emptied of the files of a previous run (they would poison the sums).
    One line and exit 2 when it cannot be used."""
    global _private_directory
    path = os.environ.get(DIRECTORY_ENV)
    try:
        if path:
            os.makedirs(path, exist_ok=True)
            # only prometheus_client's own files: the operator may have named a shared directory
            stale = glob.glob(os.path.join(glob.escape(path), "*_*.db")) + [os.path.join(path, SWEPT_FILE)]
            for name in stale:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(name)
        else:
            path = tempfile.mkdtemp(prefix="pyai-metrics-")
            _private_directory = (os.getpid(), path)
            os.environ[DIRECTORY_ENV] = path
    except OSError as exc:
        sys.stderr.write(f"pyai: error: the metrics directory {DIRECTORY_ENV}={path}: {exc.strerror or exc}\n")
        sys.stderr.flush()
        os._exit(2)  # from inside gunicorn's arbiter: leave without its traceback
    _value_class_in_step()
    # Imported now, not when a worker ends: gunicorn before 25 runs child_exit inside its SIGCHLD
    # handler, and a second worker ending during that import re-entered it half made (a crash).
    import prometheus_client.multiprocess  # noqa: F401


def worker_exited(pid: int) -> None:
    """A worker died (or ended): its in-progress gauges go; its counters stay in the sums."""
    path = os.environ.get(DIRECTORY_ENV)
    if not path:
        return
    from prometheus_client import multiprocess

    try:
        multiprocess.mark_process_dead(pid, path)
    except OSError as exc:
        log.warning("could not drop the metrics of worker %s: %s", pid, exc.strerror or exc)


def master_exiting() -> None:
    """The master ends: the private directory goes with it (the operator's stays)."""
    if _private_directory is not None and _private_directory[0] == os.getpid():  # never from a forked worker
        shutil.rmtree(_private_directory[1], ignore_errors=True)


def _value_class_in_step() -> None:
    """prometheus_client chose its value class when imported; if that was before the directory
    was set, choose again (a metric made from now on uses the new one)."""
    values = sys.modules.get("prometheus_client.values")
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        # a ModuleType from sys.modules: typeshed lets its attributes be read (Any), not set
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]


# -- the instruments ------------------------------------------------------------------------


class _Instruments:
    """This process's metrics, and the children of their labels made once (the hot path)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        _value_class_in_step()
        self.registry = registry = CollectorRegistry()  # read alone outside multiprocess mode
        self.requests = Counter(
            "pyai_requests", "HTTP requests by method and status class", ("method", "status"), registry=registry
        )
        self.duration = Histogram(
            "pyai_request_duration_seconds",
            "From the request's head to the end of its answer (or its abandonment)",
            ("method",),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.received = Counter("pyai_received_bytes", "Request body bytes received", registry=registry)
        self.sent = Counter("pyai_sent_bytes", "Response body bytes sent", registry=registry)
        self.transfers = Gauge(
            "pyai_transfers_in_progress",
            "Data-plane transfers under way: uploads (PUT) and downloads (GET of a file)",
            ("direction",),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.mismatches = Counter(
            "pyai_checksum_mismatches",
            "Uploads refused because the body did not match the digest the client sent",
            ("algorithm",),
            registry=registry,
        )
        self.refusals = Counter(
            "pyai_admission_refusals", "Requests refused with 429 Too Many Requests", ("reason",), registry=registry
        )
        self.stage_files = Counter(
            "pyai_stage_files",
            "Files asked from tape: the Tape API's finished (completed, failed) by this instance's"
            " executors; Pacifica POST /<id> by answer (on_disk 200, staging 202)",
            ("api", "outcome"),
            registry=registry,
        )
        self.stage_wait = Histogram(
            "pyai_stage_wait_seconds",
            "Until a file asked from tape was on disk: the Tape API from the file's first claim, Pacifica"
            " from the POST /<id> that found it on tape",
            ("api",),
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        # The label values known in advance are shown as 0 from the start (a rate needs a first sample).
        for algorithm in ALGORITHMS:
            self.mismatches.labels(algorithm)
        for reason in (TAPE_OPEN_REQUESTS, TAPE_KEPT_FILES):
            self.refusals.labels(reason)
        for api, outcomes in STAGE_OUTCOMES.items():
            self.stage_wait.labels(api)
            for outcome in outcomes:
                self.stage_files.labels(api, outcome)
        self._transfers = {kind: self.transfers.labels(kind) for kind in _KINDS}
        for kind in self._transfers.values():
            kind.set(0)  # shown as 0 before the first transfer, not absent
        self._flushed: List[float] = [0] * _SLOTS  # the sums over every thread's list at the last flush

    def flush(self) -> None:
        """Add to the files what every thread counted since the last flush (under _flush_lock).

        A thread may count while this reads its list: what this misses goes with the next
        flush.  The columns are read in slot order, so every thread's ended transfers are read
        before any started one: a transfer ended (and so started) before the read of the ended
        ones is in both sums, and the gauge never shows fewer than the transfers under way."""
        totals = [sum(column) for column in zip(*list(_thread_counts))] or [0] * _SLOTS
        flushed = self._flushed
        for slot, total in enumerate(totals[:_HISTOGRAMS]):
            if total != flushed[slot]:
                method, status = divmod(slot, len(STATUS_SLOTS))
                self.requests.labels(METHOD_SLOTS[method], STATUS_SLOTS[status]).inc(total - flushed[slot])
        for method, label in enumerate(METHOD_SLOTS):
            first = _HISTOGRAMS + method * _HISTOGRAM_SLOTS
            if totals[first : first + _HISTOGRAM_SLOTS] == flushed[first : first + _HISTOGRAM_SLOTS]:
                continue
            child = self.duration.labels(label)
            # prometheus_client's Histogram.observe, for many observations at once: a count per
            # bucket (not cumulative) and the sum
            for bucket in range(len(DURATION_BUCKETS) + 1):
                added = totals[first + bucket] - flushed[first + bucket]
                if added:
                    child._buckets[bucket].inc(added)
            added = totals[first + _SUM] - flushed[first + _SUM]
            if added:
                child._sum.inc(added)
        for slot, counter in ((_RECEIVED, self.received), (_SENT, self.sent)):
            if totals[slot] != flushed[slot]:
                counter.inc(totals[slot] - flushed[slot])
        for index, kind in enumerate(_KINDS):
            started, ended = totals[_STARTED + index], totals[_ENDED + index]
            if (started, ended) != (flushed[_STARTED + index], flushed[_ENDED + index]):
                self._transfers[kind].set(started - ended)
        self._flushed = totals


def _get() -> _Instruments:
    global _instruments
    if _instruments is None:
        _instruments = _Instruments()
    return _instruments


def _quietly(what: str, exc: Exception) -> None:
    """Log a failure to count once per kind: counting must never fail the request."""
    if what not in _complained:
        _complained.add(what)
        log.warning("metrics: %s failed: %s", what, exc)


# -- what the service counts -----------------------------------------------------------------


def start_worker(config: "Config") -> None:
    """In each worker, before it serves: its instruments (made in the master, they follow the fork)."""
    _get()


def _counts() -> List[float]:
    """This thread's list of counts, made (and known to flush) the first time it counts."""
    counts: List[float] = [0] * _SLOTS
    _local.counts = counts
    _thread_counts.append(counts)  # list.append is atomic: no lock
    return counts


def request_finished(record: Record, status: Optional[int], sent: int) -> None:
    """An exchange ended (``status`` None: no answer began) after ``sent`` body bytes: counted in
    this thread's list (written to the files by the next flush)."""
    if _instruments is None:
        return
    try:
        counts: List[float] = _local.counts
    except AttributeError:
        counts = _counts()
    duration = time.monotonic() - record.started
    method = _METHOD_INDEX.get(record.method, _OTHER)
    counts[method * len(STATUS_SLOTS) + _STATUS_INDEX.get(status, _NONE)] += 1
    histogram = _HISTOGRAMS + method * _HISTOGRAM_SLOTS
    # the bucket of prometheus_client's observe: the first bound >= duration (+Inf after the last)
    counts[histogram + bisect.bisect_left(DURATION_BUCKETS, duration)] += 1
    counts[histogram + _SUM] += duration
    body = record.body
    if body is not None and body.received:
        counts[_RECEIVED] += body.received
    if sent:
        counts[_SENT] += sent
    kind = record.kind
    if kind is not None:
        record.kind = None
        counts[_ENDED + _KIND_INDEX[kind]] += 1


def transfer_started(environ: "WSGIEnvironment", method: str) -> None:
    """The data plane begins a PUT or GET: counted in progress until the exchange ends."""
    kind = TRANSFERS.get(method)
    record = environ.get(RECORD)
    if kind is None or record is None or record.kind is not None or _instruments is None:
        return
    try:
        counts: List[float] = _local.counts
    except AttributeError:
        counts = _counts()
    record.kind = kind
    counts[_STARTED + _KIND_INDEX[kind]] += 1


def flush() -> None:
    """Add what this process's threads counted since the last flush to its files; never raises."""
    instruments = _instruments
    if instruments is None:
        return
    with _flush_lock:
        try:
            instruments.flush()
        except Exception as exc:  # noqa: BLE001 - see _quietly
            _quietly("writing the counts", exc)


# -- a scrape asks the other workers to flush --------------------------------------------------


def _address(directory: str, pid: int) -> bytes:
    """The abstract (Linux) socket name of worker ``pid`` counting in ``directory``: no file, no
    length limit from the directory's path, gone with the process."""
    key = hashlib.sha256(os.path.realpath(directory).encode()).hexdigest()[:16]
    return f"\0pyai-metrics-{key}-{pid}".encode()


def listen() -> None:
    """In a worker (``pyai.ops.observe.start``): the socket other workers' scrapes ask it to flush at."""
    global _listener
    directory = os.environ.get(DIRECTORY_ENV)
    if not directory or _listener is not None:
        return
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError as exc:  # out of descriptors: the worker serves all the same
        log.warning("metrics: a scrape in another worker will not see this one's last counts: %s", exc)
        return
    try:
        sock.bind(_address(directory, os.getpid()))
    except OSError as exc:
        sock.close()
        log.warning("metrics: a scrape in another worker will not see this one's last counts: %s", exc)
        return
    _listener = sock
    # This worker's own files, now: a scrape finds the workers to ask by their files' names, and
    # a worker writes its first file at its first flush, which may come after its first requests.
    for transfers in _get()._transfers.values():
        transfers.set(0)


def wait_for_askers(timeout: float) -> List[Asker]:
    """Block until a scrape asks (or ``timeout`` seconds): the askers to ``answer`` after a flush."""
    sock = _listener
    if sock is None:
        time.sleep(timeout)
        return []
    askers: List[Asker] = []
    sock.settimeout(timeout)
    try:
        askers.append(sock.recvfrom(64))
        sock.setblocking(False)
        while True:  # one flush answers every scrape waiting
            askers.append(sock.recvfrom(64))
    except (BlockingIOError, TimeoutError):
        pass
    return askers


def answer(askers: List[Asker]) -> None:
    """Tell the scrapes in ``askers`` (from ``wait_for_askers``) that this worker has flushed."""
    listener = _listener
    if listener is None:
        return  # no askers without a listener: they came through it
    for nonce, address in askers:
        with contextlib.suppress(OSError):  # that scrape has gone (its worker, or its wait, ended)
            listener.sendto(nonce, address)


def _ask_others(directory: str) -> None:
    """Every other live worker flushes before this scrape reads the files (at most ASK_TIMEOUT)."""
    pids = set()
    for name in glob.glob(os.path.join(glob.escape(directory), "*_*.db")):
        with contextlib.suppress(ValueError):
            pids.add(int(os.path.basename(name)[:-3].rsplit("_", 1)[1]))
    pids.discard(os.getpid())
    if not pids:
        return
    nonce = os.urandom(8)
    waiting = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("")  # an address of its own (autobind) for the answers
        for pid in pids:
            try:
                sock.sendto(nonce, _address(directory, pid))
                waiting += 1
            except OSError as exc:  # no such worker any more (or the master: it counts no request)
                if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                    _quietly("asking a worker to flush", exc)
        deadline = time.monotonic() + ASK_TIMEOUT
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                _quietly("waiting for the other workers' counts", TimeoutError(f"{waiting} did not answer"))
                return
            sock.settimeout(left)
            try:
                if sock.recv(64) == nonce:
                    waiting -= 1
            except TimeoutError:
                continue


def count_swept(removed: int) -> None:
    """A sweep removed ``removed`` stale temporary files.

    Sweeps run in the master and in short-lived children it forks: a
    prometheus_client counter would leave a file per child in the directory for
    ever, so the count is one number in a file of its own, added to under a lock."""
    global _swept_here
    if not removed:
        return
    directory = os.environ.get(DIRECTORY_ENV)
    if not directory:
        _swept_here += removed
        return
    try:
        with open(os.path.join(directory, SWEPT_FILE), "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            total = int(handle.read() or 0) + removed
            handle.seek(0)
            handle.truncate()
            handle.write(str(total))
    except (OSError, ValueError) as exc:
        _quietly("counting swept files", exc)


def _swept() -> int:
    directory = os.environ.get(DIRECTORY_ENV)
    if not directory:
        return _swept_here
    try:
        with open(os.path.join(directory, SWEPT_FILE)) as handle:
            return int(handle.read() or 0)
    except FileNotFoundError:
        return 0  # no sweep removed anything yet
    except (OSError, ValueError) as exc:
        _quietly("reading the count of swept files", exc)
        return 0


_reloads_refused: Optional["Counter"] = None  # the master's counter (see count_reload_refused)


def count_reload_refused(count: int = 1) -> None:
    """The master refused a HUP (bad configuration): ``pyai_reloads_refused_total``.  Made in the
    master once the directory is set, before any worker forks (``count=0``), so it shows 0 from the
    start; the master's own file in the directory carries it to every scrape."""
    global _reloads_refused
    try:
        if _reloads_refused is None:
            from prometheus_client import CollectorRegistry, Counter

            text = "HUPs refused: the new configuration or tokens file was bad, the workers served on"
            _reloads_refused = Counter("pyai_reloads_refused", text, registry=CollectorRegistry())
        _reloads_refused.inc(count)
    except Exception as exc:  # noqa: BLE001 - see _quietly
        _quietly("counting a refused reload", exc)


def count_checksum_mismatch(algorithm: str) -> None:
    """An upload was refused: its body did not match the client's ``algorithm`` digest."""
    _count("counting a checksum mismatch", lambda m: m.mismatches.labels(algorithm).inc())


def count_refusal(reason: str) -> None:
    """A 429 for ``reason`` (a fixed word per place that refuses)."""
    _count("counting a refusal", lambda m: m.refusals.labels(reason).inc())


def count_stage(api: str, outcome: str, waited: Optional[float] = None) -> None:
    """A file asked from tape through ``api`` ended in ``outcome``; ``waited`` seconds when it reached disk."""

    def count(m: _Instruments) -> None:
        m.stage_files.labels(api, outcome).inc()
        if waited is not None:
            m.stage_wait.labels(api).observe(max(waited, 0.0))

    _count("counting a stage", count)


def pacifica_stage_asked(path: str, on_disk: bool) -> None:
    """A Pacifica POST /<id> found the file at ``path`` on disk, or started (or found going) its stage."""
    count_stage(PACIFICA, "on_disk" if on_disk else "staging")
    if on_disk:
        _pending.pop(path, None)  # it came another way (another process's stage): its time is unknown
    elif path not in _pending and len(_pending) < PENDING_MAX:
        _pending[path] = time.monotonic()


def stage_reached_disk(path: str) -> None:
    """This process's stage of ``path`` ended with the file on disk (from the backend's stage job)."""
    asked = _pending.pop(path, None)
    if asked is not None:
        _count("timing a stage", lambda m: m.stage_wait.labels(PACIFICA).observe(time.monotonic() - asked))


def _count(what: str, count: Callable[[_Instruments], None]) -> None:
    try:
        count(_get())
    except Exception as exc:  # noqa: BLE001 - see _quietly
        _quietly(what, exc)


# -- the scrape -----------------------------------------------------------------------------


class Scraped(Protocol):
    """What a scrape reads of the instance's health (``pyai.ops.health.Health``): its checks now,
    its backend and the Tape API's store (None: no Tape API)."""

    @property
    def backend(self) -> "Probed": ...
    @property
    def store(self) -> Optional["StageStore"]: ...
    def check(self) -> "Report": ...


class _Local(Protocol):
    """A backend whose files are under a local (or mounted) directory: FREE_SPACE_BACKENDS."""

    prefix: str


class _Gauge(Protocol):
    """The gauge maker of ``_live``, which ``_static`` uses too."""

    def __call__(
        self, name: str, text: str, value: float, labels: Optional[Dict[str, str]] = None
    ) -> "GaugeMetricFamily": ...


def exposition(health: Scraped) -> Tuple[str, bytes]:
    """``(content type, body)`` of ``GET /metrics``: every process's counts, and ``health`` now.

    Every request that ended before the scrape began is in it, whichever worker ended it: this
    worker flushes, and asks the others to (see the module's docstring)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    flush()
    directory = os.environ.get(DIRECTORY_ENV)
    if directory and _instruments is not None:
        try:
            _ask_others(directory)
        except Exception as exc:  # noqa: BLE001 - a scrape still shows what the files have
            _quietly("asking the other workers to flush", exc)

    return CONTENT_TYPE_LATEST, generate_latest(_Scrape(health))


class _Scrape:
    """What one scrape shows (generate_latest takes anything with ``collect``)."""

    def __init__(self, health: Scraped) -> None:
        self.health = health

    def collect(self) -> Iterator["Metric"]:
        if os.environ.get(DIRECTORY_ENV):
            from prometheus_client.multiprocess import MultiProcessCollector

            yield from MultiProcessCollector(None).collect()
        else:
            yield from _get().registry.collect()
        yield from _live(self.health)


def _live(health: Scraped) -> Iterator["Metric"]:
    """The gauges of now, from the health checks (``pyai.ops.health``) and the Tape API's store."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def gauge(name: str, text: str, value: float, labels: Optional[Dict[str, str]] = None) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, text, labels=list(labels) if labels else None)
        family.add_metric(list(labels.values()) if labels else [], float(value))
        return family

    swept = CounterMetricFamily("pyai_temp_files_swept", "Stale temporary upload files removed by a sweep")
    swept.add_metric([], float(_swept()))
    yield swept
    yield from _static(health, gauge)
    try:
        report = health.check()
    except Exception as exc:  # noqa: BLE001 - a scrape still shows the counts
        _quietly("the health check of a scrape", exc)
        yield gauge("pyai_ready", "1 while this instance can serve the archive (as /readyz)", 0)
        return
    checks = report.checks
    yield gauge("pyai_ready", "1 while this instance can serve the archive (as /readyz)", report.ready)
    storage = [checks[name] for name in ("storage", "prefix", "hpss", "sideband_database") if name in checks]
    if storage:
        backend = getattr(health.backend, "name", "unknown")
        up = all(check.ok for check in storage)
        yield gauge("pyai_backend_up", "1 while the storage backend answers", up, {"backend": backend})
    hpss = checks.get("hpss")
    if hpss is not None and hpss.seconds is not None:
        yield gauge("pyai_hpss_ping_seconds", "Latency of the last ping of the HPSS core server", hpss.seconds)
    for name, metric, text in (
        ("sideband_database", "pyai_sideband_database_up", "1 while the hsmsideband database answers"),
        ("stage_store", "pyai_stage_store_up", "1 while the Tape API's store of stage requests answers"),
    ):
        if name in checks:
            yield gauge(metric, text, checks[name].ok)
    yield from _stage_store_files(health.store, GaugeMetricFamily)


def _static(health: Scraped, gauge: _Gauge) -> Iterator["GaugeMetricFamily"]:
    """The build-info gauge and the prefix's free space: asked of this process and the file system
    at each scrape, whatever the health checks say."""
    from pyai import __version__
    from pyai.native import __impl__

    backend = getattr(health.backend, "name", "unknown")
    labels = {"version": __version__, "implementation": __impl__, "backend": backend}
    yield gauge("pyai_build_info", "Always 1: the version, I/O implementation and backend serving", 1, labels)
    # hpss: the prefix is a path in the HPSS namespace, not a local file system (the emulator's
    # directory would be the wrong answer), and the client API reports no free space: watch HPSS's own.
    if backend not in FREE_SPACE_BACKENDS:
        return
    try:
        st = os.statvfs(cast(_Local, health.backend).prefix)  # posix or hsmsideband (FREE_SPACE_BACKENDS)
    except OSError as exc:  # the prefix is gone: pyai_backend_up says so; no made-up free space
        _quietly("the statvfs of the prefix", exc)
        return
    yield gauge(
        "pyai_prefix_free_bytes", "Bytes free for the service in the prefix's file system", st.f_bavail * st.f_frsize
    )
    yield gauge("pyai_prefix_size_bytes", "Size in bytes of the prefix's file system", st.f_blocks * st.f_frsize)
    yield gauge(
        "pyai_prefix_free_inodes", "Inodes (files) free for the service in the prefix's file system", st.f_favail
    )
    yield gauge("pyai_prefix_inodes", "Inodes (files) of the prefix's file system", st.f_files)


def _stage_store_files(
    store: Optional["StageStore"], family_class: Type["GaugeMetricFamily"]
) -> Iterator["GaugeMetricFamily"]:
    """The Tape API's files by state, counted in its store (none while no request was ever made)."""
    if store is None or not store.exists():
        return
    try:
        counts = store.files_by_state()
    except Exception as exc:  # noqa: BLE001 - the store's own gauge says it is down
        _quietly("counting the stage store's files", exc)
        return
    family = family_class(
        "pyai_tape_stage_files",
        "Files of Tape API stage requests by state, in the store; a shared store (MariaDB) counts"
        " every instance's, so do not sum this over instances",
        labels=["state"],
    )
    for state in STAGE_STATES:
        family.add_metric([state.lower()], float(counts.get(state, 0)))
    yield family
