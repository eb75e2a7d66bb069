"""The WLCG Tape REST API v1 over HTTP: a Flask blueprint of the control plane.

``/.well-known/wlcg-tape-rest-api`` (discovery) and ``/api/v1/stage``,
``/api/v1/stage/<id>``, ``/api/v1/stage/<id>/cancel``, ``/api/v1/release/<id>``,
``/api/v1/archiveinfo``.  The gate reads a POST's body first (``read_documents``:
bounded, parked while the client is slow); the views parse it (JSON), call
``pyai.tape.service`` and answer JSON; every failure goes up to the gate,
whose route for these paths answers it as an RFC 7807 problem
(``pyai.web.problems``).  No path under ``/api/v1/`` or ``/.well-known/`` is an
id: ids are one segment and never start with a dot.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Generator, Iterable, Mapping, Optional, Tuple

from flask import Blueprint, Response, request

from pyai.tape import bodies
from pyai.tape.service import owner_of
from pyai.web import gridmap, scopes, small_body
from pyai.web.auth import BEARER, InsufficientScope
from pyai.web.openapi import TAPE_API, TAPE_DISCOVERY

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

    from pyai.config import Config
    from pyai.serving import Wait
    from pyai.tape.service import TapeService
    from pyai.web.small_body import BodyReader

API, DISCOVERY = TAPE_API, TAPE_DISCOVERY
# A stage body of max_files long paths fits; a larger body is no client's mistake worth reading.
MAX_BODY = 8 * 1024 * 1024


def read_documents(settings: Config) -> BodyReader:
    """The gate's reader of the Tape API's request bodies: a POST's JSON document."""

    def read(environ: WSGIEnvironment) -> Generator[Wait, None, None]:
        if environ["REQUEST_METHOD"] == "POST":
            data = yield from small_body.read(environ, MAX_BODY, settings, "a Tape API body")
            small_body.keep(environ, data)

    return read


def tape_blueprint(service: TapeService, config: Config, auth_on: bool) -> Blueprint:
    """The blueprint over ``service`` (a pyai.tape.service.TapeService)."""
    # gfal2 posts to ``{uri}/stage/`` and ``{uri}/archiveinfo/``: a trailing slash names the same endpoint
    blueprint = Blueprint("tape", __name__)

    def answer(status: int, document: object, headers: Optional[Mapping[str, str]] = None) -> Response:
        return Response(json.dumps(document), status=status, headers=headers, content_type="application/json")

    def done() -> Response:
        """200 without a body (cancel, delete, release): no Content-Type either."""
        response = Response(status=200)
        del response.headers["Content-Type"]
        return response

    def base_uri() -> str:
        if config.tape_endpoint_uri:
            return config.tape_endpoint_uri.rstrip("/")
        scheme = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip().lower()
        if scheme not in ("http", "https"):
            scheme = request.scheme
        return f"{scheme}://{request.host}{API}"

    def owner() -> str:
        if not auth_on:
            return owner_of(None)
        grant = scopes.grant_of(request.environ)
        if grant is not None:  # a WLCG token (or one issued here): its subject owns the requests, whichever token
            return owner_of(grant.owner)
        entry = gridmap.entry_of(request.environ)
        if entry is not None:  # a client certificate's DN (there was no token): its DN owns the requests
            return owner_of(entry.owner)
        match = BEARER.fullmatch(request.headers.get("Authorization", ""))
        return owner_of(match.group(1) if match else None)  # the gate has checked it

    def covered(activities: Tuple[str, ...], paths: Iterable[str]) -> None:
        """403 when the request's WLCG token does not grant ``activities`` on every one of ``paths``."""
        outside = scopes.lacking(request.environ, activities, paths)
        if outside is not None:
            raise InsufficientScope(
                f"the token grants no {' or '.join(activities)} for {outside}", detail="insufficient WLCG scope"
            )

    def document() -> object:
        return bodies.parse_json(small_body.kept(request.environ))  # read by the gate (read_documents)

    @blueprint.get(DISCOVERY)
    def discovery() -> Response:
        return answer(
            200,
            {
                "sitename": config.tape_sitename,
                "description": "pyai: the Pacifica Archive Interface, WLCG Tape REST API",
                "endpoints": [{"uri": base_uri(), "version": "v1", "metadata": {}}],
            },
        )

    @blueprint.post(API + "/stage", strict_slashes=False)
    def stage() -> Response:
        files = bodies.stage_files(document())
        covered(scopes.STAGE, (path for path, _lifetime in files))
        request_id = service.stage(owner(), files)
        location = f"{base_uri()}/stage/{request_id}"
        return answer(201, {"requestId": request_id}, {"Location": location})

    @blueprint.get(API + "/stage/<request_id>", strict_slashes=False)
    def poll(request_id: str) -> Response:
        return answer(200, service.poll(owner(), request_id))

    @blueprint.post(API + "/stage/<request_id>/cancel", strict_slashes=False)
    def cancel(request_id: str) -> Response:
        paths = bodies.paths_of(document(), config.tape_max_files)
        covered(scopes.STAGE, paths)
        service.cancel(owner(), request_id, paths)
        return done()

    @blueprint.delete(API + "/stage/<request_id>", strict_slashes=False)
    def delete(request_id: str) -> Response:
        service.delete(owner(), request_id)
        return done()

    @blueprint.post(API + "/release/<request_id>", strict_slashes=False)
    def release(request_id: str) -> Response:
        paths = bodies.paths_of(document(), config.tape_max_files)
        covered(scopes.STAGE, paths)
        service.release(owner(), request_id, paths)
        return done()

    @blueprint.post(API + "/archiveinfo", strict_slashes=False)
    def archiveinfo() -> Response:
        paths = bodies.paths_of(document(), config.tape_max_archiveinfo, truncate=True)  # answers for the first
        covered(scopes.LOCALITY, paths)
        return answer(200, service.archiveinfo(paths))

    return blueprint
