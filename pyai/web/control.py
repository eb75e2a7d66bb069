"""The control plane: Flask blueprints for everything that is not an id.

The health check ``/``, the service description ``/openapi.json`` and the
WLCG Tape REST API (``/.well-known/wlcg-tape-rest-api``, ``/api/v1/...``,
``pyai.web.tape_api``); the coming APIs (metrics, health) are blueprints here
too.  The gate routes, authenticates and maps errors before and after Flask:
Flask is configured to let every exception through to it.
"""

import json

from flask import Blueprint, Flask, Response

from pyai.web.openapi import load_description


def control_plane(*blueprints: Blueprint) -> Flask:
    """The Flask app of the control plane (a WSGI app the gate mounts), with ``blueprints`` besides the service's."""
    app = Flask("pyai")
    app.url_map.merge_slashes = False
    # Every failure goes to the gate's one error mapper, not to Flask's pages.
    app.config.update(PROPAGATE_EXCEPTIONS=True, TRAP_HTTP_EXCEPTIONS=True)
    app.register_blueprint(service_blueprint())
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    return app


def service_blueprint() -> Blueprint:
    """``/`` (the health check the original answered) and ``/openapi.json``."""
    blueprint = Blueprint("service", __name__)
    description = load_description()

    @blueprint.get("/")
    def root() -> Response:
        body = json.dumps({"message": "Pacifica Archive Interface Up and Running"})
        return Response(body, content_type="application/json")

    @blueprint.get("/openapi.json")
    def openapi() -> Response:
        return Response(description, content_type="application/json")

    return blueprint
