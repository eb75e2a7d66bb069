"""The WSGI application: every route of the service, and the gate they sit behind.

``create_app(config)`` builds the archive for ``config`` and returns the gate
(``pyai.web.gate``) over this table.  A route is added here and nowhere else.
"""

from pyai.archive.service import Archive
from pyai.backends import create_backend
from pyai.config import load as load_config
from pyai.web import auth
from pyai.web.control import control_plane
from pyai.web.data import METHODS, DataPlane
from pyai.web.gate import ID_PATH, Gate, Route
from pyai.web.openapi import RESERVED_ID
from pyai.web.webdav import RootPlane


def create_app(config=None):
    """The WSGI app for ``config`` (loaded from file and environment when None)."""
    config = config or load_config()
    archive = Archive(config, create_backend(config))
    control = control_plane()
    routes = (
        # path                 methods                      plane
        Route("/",               ("GET", "HEAD", "PROPFIND"), RootPlane(control), wsgi=True),  # health check; DAV stat
        Route("/" + RESERVED_ID, ("GET", "HEAD"),             control, wsgi=True),  # the service description
        Route(ID_PATH,           METHODS,                     DataPlane(archive, config)),  # every other path: an id
    )  # fmt: skip
    tokens = auth.read_tokens_file(config.auth_tokens_file) if config.auth_tokens_file else None
    return Gate(routes, tokens, archive.backend)
