"""The operator's endpoints, a blueprint of the control plane: ``/healthz``, ``/readyz``, ``/metrics``.

``/healthz`` answers 200 while the process serves at all.  ``/readyz`` answers
200 only while the backend is usable (see ``pyai.ops.health``) and 503 with the
failing checks otherwise; a load balancer sends requests to ready instances.
``/metrics`` is the Prometheus exposition (``pyai.ops.metrics``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from flask import Blueprint, Response

from pyai.ops import metrics
from pyai.web.openapi import HEALTHZ, METRICS, READYZ

if TYPE_CHECKING:
    from pyai.ops.health import Health


def ops_blueprint(health: Health) -> Blueprint:
    """The blueprint over ``health`` (a pyai.ops.health.Health)."""
    blueprint = Blueprint("ops", __name__)

    @blueprint.get(HEALTHZ)
    def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @blueprint.get(READYZ)
    def readyz() -> Response:
        report = health.check()
        return _json(200 if report.ready else 503, report.document())

    @blueprint.get(METRICS)
    def metrics_page() -> Response:
        content_type, body = metrics.exposition(health)
        return Response(body, content_type=content_type)

    return blueprint


def _json(status: int, document: object) -> Response:
    response = Response(json.dumps(document), status=status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response
