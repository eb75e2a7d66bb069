"""The WSGI application: every route of the service, and the gate they sit behind.

``create_app(config)`` builds the archive for ``config`` and returns the gate
(``pyai.web.gate``) over this table.  A route is added here and nowhere else.
"""

from typing import Optional

from pyai.archive.service import Archive
from pyai.backends import create_backend
from pyai.config import Config
from pyai.config import load as load_config
from pyai.ops.health import Health
from pyai.tape.service import TapeService
from pyai.web import auth, gridmap, scopes
from pyai.web.control import control_plane
from pyai.web.data import DataPlane
from pyai.web.gate import ID_PATH, Gate, Route
from pyai.web.openapi import HEALTHZ, METRICS, READYZ, RESERVED_ID
from pyai.web.ops_api import ops_blueprint
from pyai.web.problems import problem_answer
from pyai.web.tape_api import API, DISCOVERY, read_documents, tape_blueprint
from pyai.web.webdav import RootPlane, read_root_body


def create_app(config: Optional[Config] = None) -> Gate:
    """The WSGI app for ``config`` (loaded from file and environment when None)."""
    config = config or load_config()
    archive = Archive(config, create_backend(config))
    tokens = auth.read_tokens_file(config.auth_tokens_file) if config.auth_tokens_file else None
    wlcg = auth.wlcg_tokens(config)
    issued = auth.token_issuer(config)  # None without [auth] token_secret_file
    dns = gridmap.dn_map(config)  # None without [auth] dn_header
    if wlcg is not None:
        wlcg.start()  # in this worker: its thread fetches the issuers' keys
    tape = TapeService(config, archive.backend)
    health = Health(config, archive.backend, tape.store)
    auth_on = tokens is not None or wlcg is not None or dns is not None
    control = control_plane(tape_blueprint(tape, config, auth_on=auth_on), ops_blueprint(health))
    tape_writes = frozenset({"POST", "DELETE"})  # stage, cancel, release, delete need a read-write token
    tape_documents = read_documents(config)  # a mounted app's request body is read (parked) by the gate
    data = DataPlane(archive, config, issued)
    # namespace = paths: MKCOL and MOVE change the archive too (under ids they are not served)
    data_writes = auth.WRITE_METHODS | ({"MKCOL", "MOVE"} if data.collections else set())
    routes = (
        # path                 methods                      plane
        Route("/",               ("GET", "HEAD", "PROPFIND"), RootPlane(control, data.collections), wsgi=True,
              reads=read_root_body(config), scopes=scopes.ROOT),  # health check; DAV stat
        Route("/" + RESERVED_ID, ("GET", "HEAD"),             control, wsgi=True,
              scopes=scopes.DESCRIPTION),  # the service description
        Route(HEALTHZ,           ("GET", "HEAD"),             control, wsgi=True, public=("GET", "HEAD")),  # alive
        Route(READYZ,            ("GET", "HEAD"),             control, wsgi=True, public=("GET", "HEAD")),  # usable
        Route(METRICS,           ("GET", "HEAD"),             control, wsgi=True),  # Prometheus
        Route(DISCOVERY,         ("GET", "HEAD"),             control, wsgi=True, errors=problem_answer,
              public=("GET", "HEAD")),  # the Tape API's discovery (open to anyone)
        Route(API + "/archiveinfo", ("POST",),                control, wsgi=True, errors=problem_answer,
              writes=frozenset(), reads=tape_documents, scopes=scopes.ARCHIVEINFO),  # a POST that only reads
        Route(API + "/archiveinfo/", ("POST",),               control, wsgi=True, errors=problem_answer,
              writes=frozenset(), reads=tape_documents, scopes=scopes.ARCHIVEINFO),  # the same, as gfal2 spells it
        Route(API + "/",         ("GET", "HEAD", "POST", "DELETE"), control, wsgi=True, prefix=True,
              errors=problem_answer, writes=tape_writes, reads=tape_documents,
              scopes=scopes.TAPE),  # the rest of the Tape API
        Route(ID_PATH,           data.methods,                data, writes=data_writes,
              scopes=scopes.DATA, token_requests=scopes.DELEGATION),  # every other path: an id
    )  # fmt: skip
    if tape.store.exists():  # requests a dead worker left are taken over without waiting for a client
        tape.executor.ensure_running()
    gate = Gate(routes, tokens, archive.backend, wlcg, issued, dns)
    if data.collections is not None:
        data.collections.routed_elsewhere = lambda path: gate.route(path) is not gate.ids
    return gate
