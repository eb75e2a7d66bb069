"""Serving pyai with gunicorn from our own command line (``gunicorn.app.base``)."""

import errno
import logging
import os
import runpy
import socket
import struct
import sys
from typing import TYPE_CHECKING, Any, Iterable, List, Mapping, Optional, Tuple, Union

from gunicorn.app.base import BaseApplication

from pyai import config as config_module
from pyai.backends import create_backend
from pyai.config import load as load_config
from pyai.errors import ConfigError
from pyai.ops import transfer_log
from pyai.server import lifecycle
from pyai.web import auth, gridmap

if TYPE_CHECKING:
    from pyai.config import Config
    from pyai.server.lifecycle import Log
    from pyai.server.wsgi import App

PACKAGED_GUNICORN_CONF = os.path.join(os.path.dirname(__file__), "gunicorn_conf.py")
# What a start checks of the files the settings name, beyond config.check's own: the tokens
# file, the token secret file, the WLCG token settings and the grid-mapfile (pyai.web) and the
# transfer log (pyai.ops), layers pyai.config sits below.
CHECKERS = (
    ("auth_tokens_file", auth.check_tokens_file),
    ("auth_token_secret_file", auth.check_secret_file),
    ("auth_jwt_issuers", auth.check_wlcg_config),
    ("auth_gridmap_file", gridmap.check_config),
    ("transfer_log", transfer_log.check_config),
)


def check_config(
    config_file: Optional[str] = None,
    environ: Mapping[str, str] = os.environ,
    overrides: Optional[Mapping[str, Optional[str]]] = None,
) -> List[str]:
    """Every problem a start would find in the configuration, one line each ([] when it would
    serve); creates nothing.  The master's check (on start and HUP) and ``check-config``'s."""
    return config_module.check(config_file, environ, overrides, checkers=CHECKERS)


def prepare_archive(
    log: "Optional[Log]" = None, addresses: Iterable[Union[Tuple[str, int], str, int]] = ()
) -> "Config":
    """Check the configuration (tokens file, token secret file, grid-mapfile and transfer log included) and sweep
    stale temporary files; one line and exit 2 on a bad config.  Warn when ``addresses`` (gunicorn's binds)
    reach beyond this host and no token is asked for."""
    try:
        config = load_config()
        auth.check_config(config)
        transfer_log.check_config(config)
        backend = create_backend(config)
    except ConfigError as exc:
        sys.stderr.write(f"pyai: error: {exc}\n")
        sys.stderr.flush()
        os._exit(2)  # from inside gunicorn's arbiter: leave without its traceback
    if log is not None:
        auth.warn_if_open(config, addresses, log)
    if "prefix" in config.defaulted:  # the original's default, kept for compatibility: say so
        (log or logging.getLogger("pyai")).warning(
            "serving the default prefix %s: no archive is named (--prefix, PAI_PREFIX or [archive] prefix)",
            config.prefix,
        )
    config_module.checked_prefix = config.prefix  # the workers forked from here need not check it again
    if config.sweep_on_start:
        lifecycle.sweep(config, log or logging.getLogger("pyai"), backend)
    return config


def listen_first(server: Any) -> None:  # gunicorn's Arbiter
    """Open gunicorn's listeners now, once each, before anything is created; one line with the fix
    and exit 1 when an address is taken.  (gunicorn itself would try 5 times in 5 s with no hint,
    after the hooks had made the prefix.)  Inherited sockets (systemd's, a USR2 re-exec's, fd://)
    and reuse_port stay gunicorn's."""
    from gunicorn import sock
    from gunicorn.systemd import listen_fds

    cfg = server.cfg
    if server.LISTENERS or "GUNICORN_FD" in os.environ or cfg.reuse_port or listen_fds(unset_environment=False):
        return
    if any(isinstance(address, int) for address in cfg.address):
        return
    listeners: List[Any] = []  # gunicorn's sockets
    for address in cfg.address:
        try:
            listeners.append(sock._sock_type(address)(address, cfg, server.log))
        except OSError as exc:
            where = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
            if exc.errno == errno.EADDRINUSE:
                fix = (
                    "another process listens there: stop it, or choose another port "
                    "(pacifica-archiveinterface -p PORT, or PAI_BIND=host:port / --bind under gunicorn)"
                )
                problem = "is already in use"
            else:
                fix = "choose another address (pacifica-archiveinterface -a/-p, or PAI_BIND=host:port under gunicorn)"
                problem = f"cannot be listened on ({exc.strerror})"
            sys.stderr.write(f"pyai: error: {where} {problem}; {fix}\n")
            sys.stderr.flush()
            os._exit(1)  # not 2: a port may free up (systemd's Restart= tries again)
    server.LISTENERS = listeners


def limit_request_reads(listeners: Iterable[Any], receive_timeout: float) -> None:  # gunicorn's sockets
    """Bound every blocking read of a client's socket by ``receive_timeout`` seconds.

    pyai's worker reads request heads and parked uploads without blocking, but a
    body read by a thread with a plain blocking recv() (a PATCH body, a chunked
    upload, any WSGI app reading ``wsgi.input``) has no timeout of its own.
    Linux copies a listening socket's receive timeout (SO_RCVTIMEO) to every
    connection it accepts, where it bounds each blocking recv(); the stalled read
    then fails and the request ends.  Non-blocking reads are not affected.
    """
    if not receive_timeout:
        return  # 0: wait for ever, as configured
    seconds = int(receive_timeout)
    value = struct.pack("ll", seconds, int((receive_timeout - seconds) * 1_000_000))
    for listener in listeners:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)


class ArchiveServer(BaseApplication):
    """gunicorn with the settings of a gunicorn config file plus our command-line options."""

    def __init__(self, options: Mapping[str, object], conf_file: Optional[str] = None) -> None:
        self.options = options
        self.conf_file = conf_file or _default_conf_file()
        super().__init__()

    def load_config(self) -> None:
        namespace = runpy.run_path(self.conf_file)
        for name, value in namespace.items():
            if name in self.cfg.settings and value is not None:
                self.cfg.set(name, value)
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self) -> "App":
        from pyai.web.app import create_app

        return create_app()


def _default_conf_file() -> str:
    """./gunicorn.conf.py when there is one (gunicorn's own convention), else ours."""
    local = os.path.abspath("gunicorn.conf.py")
    return local if os.path.exists(local) else PACKAGED_GUNICORN_CONF
