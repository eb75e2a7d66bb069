"""Readiness: whether this instance can serve the archive now (stub: the health work fills it in)."""

import dataclasses


@dataclasses.dataclass
class Report:
    ready: bool
    checks: dict

    def document(self):
        return {"status": "ready" if self.ready else "unready", "checks": self.checks}


class Health:
    def __init__(self, config, backend, store):
        self.config = config
        self.backend = backend
        self.store = store

    def check(self):
        return Report(True, {})
