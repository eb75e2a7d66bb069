"""Readiness: whether this instance can serve the archive now (``/readyz``, the metrics' up gauges).

A ``Report`` holds one ``Check`` per thing the archive needs, by name:
``serving`` (false once a TERM arrived: the instance drains, see
``pyai.ops.drain``), ``prefix`` (the archive directory is writable;
posix and hsmsideband), ``hpss`` (the core server answers its ping within
``accept_latency``; ``seconds`` is the ping's latency), ``sideband_database``
(hsmsideband) and ``stage_store`` (the Tape API's database, when there is
one).  The instance is ready when every check is ok.  What the backend
needs is asked of the backend (``probe``); the answers are kept for
``CACHE_FOR`` so that several balancers probing often cost one ping, but
the drain is seen at once.
"""

import dataclasses
import threading
import time
from typing import TYPE_CHECKING, ContextManager, Dict, Optional, Protocol, Tuple, TypedDict

from pyai.errors import BackendUnavailable
from pyai.ops import drain

if TYPE_CHECKING:
    from pyai.config import Config

CACHE_FOR = 0.5  # seconds
# A probe that waits this long for another's answer (a core server that hangs) says unready:
# readiness probes must not pile up on a hung storage, each holding a thread.
PROBE_WAIT = 2.0
# What a backend's probe found, by part: the failure (one line) or None, and the seconds the part
# took to answer (pyai.backends.base.Probes: the backends are a layer above, so named again here).
Probes = Dict[str, Tuple[Optional[str], Optional[float]]]


class Probed(Protocol):
    """What readiness and the metrics ask of the backend (``pyai.backends.base.Backend``)."""

    name: str

    def probe(self) -> Probes: ...


class Connection(Protocol):
    """The one call readiness makes on a connection of the Tape API's store (a peewee Database)."""

    def execute_sql(self, sql: str) -> object: ...


class StageStore(Protocol):
    """What readiness and the metrics ask of the Tape API's store (``pyai.tape.store.Store``, a layer above)."""

    def exists(self) -> bool: ...
    def session(self) -> ContextManager[Connection]: ...
    def files_by_state(self) -> Dict[str, int]: ...  # {state: number of file rows}


class Readiness(TypedDict):
    """The document of ``/readyz``."""

    status: str  # "ready" or "unready"
    checks: Dict[str, Dict[str, object]]  # {name: Check.document()}


@dataclasses.dataclass(frozen=True)
class Check:
    ok: bool
    seconds: Optional[float] = None  # how long the check took (the HPSS ping's latency)
    error: Optional[str] = None  # why it failed: one line, no server path

    def document(self) -> Dict[str, object]:
        doc: Dict[str, object] = {"ok": self.ok}
        if self.seconds is not None:
            doc["seconds"] = round(self.seconds, 6)
        if self.error:
            doc["error"] = self.error
        return doc


@dataclasses.dataclass(frozen=True)
class Report:
    checks: Dict[str, Check]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks.values())

    def document(self) -> Readiness:
        return {
            "status": "ready" if self.ready else "unready",
            "checks": {name: check.document() for name, check in self.checks.items()},
        }


class Health:
    """The readiness of one worker's archive: its backend and the Tape API's store."""

    def __init__(self, config: "Config", backend: Probed, store: StageStore) -> None:
        self.config = config
        self.backend = backend
        self.store = store
        self._lock = threading.Lock()
        self._cached: Tuple[float, Dict[str, Check]] = (float("-inf"), {})  # (monotonic time, checks of the storage)

    def check(self) -> Report:
        serving = Check(False, error="the instance is stopping") if drain.draining() else Check(True)
        return Report({"serving": serving, **self._storage_checks()})

    def _storage_checks(self) -> Dict[str, Check]:
        if not self._lock.acquire(timeout=PROBE_WAIT):  # one probe at a time; the others take its answer
            return {"storage": Check(False, error=f"the storage has not answered a probe within {PROBE_WAIT:g} s")}
        try:
            asked_at, checks = self._cached
            if time.monotonic() - asked_at >= CACHE_FOR:
                checks = self._probe()
                self._cached = (time.monotonic(), checks)
            return checks
        finally:
            self._lock.release()

    def _probe(self) -> Dict[str, Check]:
        checks = {}
        for name, (error, seconds) in self.backend.probe().items():
            checks[name] = Check(error is None, seconds, error)
        if self.store.exists():
            checks["stage_store"] = self._probe_store()
        return checks

    def _probe_store(self) -> Check:
        started = time.monotonic()
        try:
            with self.store.session() as db:
                db.execute_sql("SELECT 1")
        except BackendUnavailable as exc:
            return Check(False, error=exc.message)
        return Check(True, time.monotonic() - started)
