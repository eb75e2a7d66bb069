"""Readiness: whether this instance can serve the archive now (``/readyz``, the metrics' up gauges).

A ``Report`` holds one ``Check`` per thing the archive needs, by name:
``serving`` (false once a TERM arrived: the instance drains), ``prefix`` (the
archive directory is writable; posix and hsmsideband), ``hpss`` (the core
server answers its ping within ``accept_latency``; ``seconds`` is the ping's
latency), ``sideband_database`` (hsmsideband) and ``stage_store`` (the Tape
API's database).  The instance is ready when every check is ok.
(Stub: the checks are filled in by the health work.)
"""

import dataclasses
from typing import Dict, Optional


@dataclasses.dataclass(frozen=True)
class Check:
    ok: bool
    seconds: Optional[float] = None  # how long the check took (the HPSS ping's latency)
    error: Optional[str] = None  # why it failed: one line, no server path

    def document(self):
        doc = {"ok": self.ok}
        if self.seconds is not None:
            doc["seconds"] = round(self.seconds, 6)
        if self.error:
            doc["error"] = self.error
        return doc


@dataclasses.dataclass(frozen=True)
class Report:
    checks: Dict[str, Check]

    @property
    def ready(self):
        return all(check.ok for check in self.checks.values())

    def document(self):
        return {
            "status": "ready" if self.ready else "unready",
            "checks": {name: check.document() for name, check in self.checks.items()},
        }


class Health:
    def __init__(self, config, backend, store):
        self.config = config
        self.backend = backend
        self.store = store

    def check(self):
        return Report({"serving": Check(True)})
