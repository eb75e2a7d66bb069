"""The control plane: Flask blueprints for everything that is not an id.

Today the health check ``/`` and the service description ``/openapi.json``;
the coming APIs (``/api/v1/...``, ``/.well-known/...``, metrics, health) are
blueprints here too.  The gate routes, authenticates and maps errors before
and after Flask: Flask is configured to let every exception through to it.
"""

import json

from flask import Blueprint, Flask, Response

from pyai.web.openapi import load_description


def control_plane():
    """The Flask app of the control plane (a WSGI app the gate mounts)."""
    app = Flask("pyai")
    app.url_map.merge_slashes = False
    # Every failure goes to the gate's one error mapper, not to Flask's pages.
    app.config.update(PROPAGATE_EXCEPTIONS=True, TRAP_HTTP_EXCEPTIONS=True)
    app.register_blueprint(service_blueprint())
    return app


def service_blueprint():
    """``/`` (the health check the original answered) and ``/openapi.json``."""
    blueprint = Blueprint("service", __name__)
    description = load_description()

    @blueprint.get("/")
    def root():
        body = json.dumps({"message": "Pacifica Archive Interface Up and Running"})
        return Response(body, content_type="application/json")

    @blueprint.get("/openapi.json")
    def openapi():
        return Response(description, content_type="application/json")

    return blueprint
