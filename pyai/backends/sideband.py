"""The Oracle HSM / SAM-QFS "sideband" backend: posix file I/O, HEAD from the sideband database.

Files live on the mounted HSM file system at ``<prefix><id2filename(id)>`` and
every byte moves exactly as in the posix backend (sendfile, the C receive,
atomic publish): this class is a PosixBackend.  What the file system cannot
tell -- whether a file's data is online (on disk) or only on tape -- comes
from the MySQL/MariaDB "sideband" database the HSM keeps (see
``sideband_models``), read with peewee over PyMySQL.

Under ``namespace = paths`` a file lives at its path below the prefix instead, and is
looked up the same way (``sam_qfs_prefix`` joined with that path); the collections are
directories of the file system (the posix backend's).

The database location of a file follows the original's rule:
``[hsm_sideband] sam_qfs_prefix`` is the archive directory as the database
names it (whatever the file system's mount point is on this host), and the
file of an id is ``sam_qfs_prefix`` joined with its id2filename path: its
directory, with a trailing ``/``, is ``sam_path.path`` and its base name is
``sam_file.name``.  With the original's example ``sam_qfs_prefix = /tmp/path``,
id 12345 is looked up as path ``/tmp/path/39/``, name ``3039``, wherever
``prefix`` is.  The rows are joined as the original joins them:
``sam_path.ino = sam_file.p_ino`` and ``sam_file.ino = sam_inode.ino``
(generations are not required to agree; where several inode rows match, the
one of the entry's own generation, else the newest, is taken).

- HEAD: a file missing from the file system is 404 (the database is not asked);
  otherwise one joined query (sam_path -> sam_file -> sam_inode) gives size,
  times and ``online``: ``disk`` with ``(size,)`` or ``tape`` with
  ``(0, size)``.  A file the database does not know yet is reported from the
  file system as ``disk``.
- POST: ``online`` answers 200; a file on tape gets a recall -- a thread of the
  worker's recall pool (``stage_workers`` threads; more recalls queue) reads
  the file, which makes the HSM stage it -- and 202 until the database says
  online.
- GET, PUT, PATCH, DELETE only touch the file system and work while the
  database is down (a GET of a file on tape waits in the read, as on any
  SAM-QFS file system).
- HEAD and POST answer 503 naming the sideband database when it is down; each
  worker keeps its own pool of connections (opened lazily after the fork) and
  reconnects by itself when the database is back.
"""

import datetime
import errno
import logging
import os
import posixpath
import stat
import threading
import time
from typing import Any, Callable, Dict, Iterator, Optional, Set, Tuple

import peewee
from playhouse.pool import MaxConnectionsExceeded, PooledMySQLDatabase

from pyai.backends.base import FileStatus, Member, Probes
from pyai.backends.jobs import KeyedPool
from pyai.backends.posix import PosixBackend, PosixReader, etag_of, open_stored
from pyai.backends.sideband_models import SamFile, SamInode, SamPath
from pyai.config import Config
from pyai.errors import BackendUnavailable, ConfigError, describe
from pyai.ops import metrics

log = logging.getLogger("pyai")
RECALL_BLOCK = 1 << 20
# After a failed connection attempt, requests answer 503 at once for this long
# instead of each waiting connect_timeout for a database that is not there.
RETRY_CONNECT_AFTER = 1.0
# Idle pooled connections older than this are replaced (servers drop idle ones).
STALE_AFTER = 600
# MySQL/MariaDB error numbers that mean "these credentials or this schema do not work".
REFUSED = {
    1044: "user has no access to the database",
    1045: "access denied",
    1049: "unknown database",
    1142: "user may not read the sideband tables",
    1143: "user may not read the sideband columns",
    1146: "the sideband tables are missing",
    1054: "the sideband tables lack a column",
    1698: "access denied",
}
# Client-side error numbers (and what to tell an HTTP client).
CLIENT_ERRORS = {
    2002: "no server at the configured socket",
    2003: "it does not accept connections",
    2005: "its host name does not resolve",
    2006: "the server has gone away",
    2013: "the connection was lost",
}
SERVER_STATUS_IN_TRANS = 1

# Connection settings validated at start-up in this process or in the process it
# was forked from (gunicorn's master validates before forking its workers).
_validated: Set[Tuple[Any, ...]] = set()


class SidebandDown(Exception):
    """Raised instead of connecting while a recent attempt failed (see RETRY_CONNECT_AFTER)."""


def _head_query() -> Tuple[str, Callable[[str, str], Tuple[Any, ...]]]:
    """The HEAD query as (SQL, a function of (directory, name) giving its parameters).

    Built once with peewee from the models; the SQL is then run as is on
    every HEAD (sam_path by its path index, sam_file by its name index joined
    on p_ino, sam_inode by the ino of its primary key).
    """
    directory, name = "\0directory", "\0name"
    query = (
        SamPath.select(SamInode.size, SamInode.online, SamInode.modify_time, SamInode.create_time)
        .join(SamFile, on=(SamFile.p_ino == SamPath.ino))
        .join(SamInode, on=(SamInode.ino == SamFile.ino))
        .where((SamPath.path == directory) & (SamFile.name == name))
        .order_by((SamInode.gen == SamFile.gen).desc(), SamInode.gen.desc())
        .limit(1)
    )
    sql, params = peewee.MySQLDatabase(None).get_sql_context().sql(query).query()

    def parameters(path: str, entry: str) -> Tuple[Any, ...]:
        return tuple(path if p == directory else entry if p == name else p for p in params)

    return sql, parameters


HEAD_SQL, _head_parameters = _head_query()


def error_code(exc: BaseException) -> Optional[int]:
    """The MySQL error number of a (peewee-wrapped) driver exception, or None."""
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        args: Tuple[Any, ...] = getattr(candidate, "args", ())
        if args and isinstance(args[0], int):
            return args[0]
    return None


def error_text(exc: BaseException) -> str:
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        args: Tuple[Any, ...] = getattr(candidate, "args", ())
        if len(args) > 1 and isinstance(args[1], str):
            return args[1]
    return str(exc) or type(exc).__name__


def _connection_level(exc: BaseException) -> bool:
    code = error_code(exc)
    return code is None or code == 0 or code >= 2000


def _epoch(value: Any) -> float:
    """Epoch seconds of a time column (an integer; a DATETIME is read as UTC)."""
    if hasattr(value, "timestamp"):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    return float(value or 0)


class _Pool(PooledMySQLDatabase):
    """The worker's connection pool.

    Checking a connection out costs no round trip (no ping): a connection
    that died since its last use fails its query, is discarded, and the query
    is retried once on a new connection.  New connections are not attempted
    for RETRY_CONNECT_AFTER seconds after one failed.
    """

    def __init__(self, *args, gate, **kwargs):
        self.gate = gate
        super().__init__(*args, **kwargs)

    def _connect(self):
        self.gate.before_connect()
        try:
            return super()._connect()
        except Exception as exc:
            self.gate.connect_failed(exc)
            raise

    def _is_closed(self, conn):
        return not conn.open

    def _can_reuse(self, conn):
        return conn.open and not (conn.server_status or 0) & SERVER_STATUS_IN_TRANS


class SidebandBackend(PosixBackend):
    """Files on a SAM-QFS file system under ``config.prefix``; their state in the sideband database."""

    name = "hsmsideband"
    storage = "the HSM file system"
    waits_remotely = True  # every request asks the sideband database

    def __init__(self, config: Config):
        super().__init__(config)
        # ids are integers, always in the nested layout; under namespace = paths, paths of safe names
        self.use_id2filename = not self.paths
        self.config = config
        self.retry_after = config.sideband_retry_after
        self.sam_qfs_prefix = config.sideband_prefix.strip()  # the database's name, not a local path
        for name in ("sideband_connect_timeout", "sideband_query_timeout"):
            if getattr(config, name) <= 0:
                raise ConfigError(f"[hsm_sideband] {name.split('_', 1)[1]} must be more than 0 seconds")
        self.where = f"{config.sideband_schema} on {config.sideband_host}:{config.sideband_port}"
        self.connect_params: Dict[str, Any] = {
            "host": config.sideband_host,
            "port": config.sideband_port,
            "user": config.sideband_user,
            "password": config.sideband_password,
            "connect_timeout": config.sideband_connect_timeout,
            "read_timeout": config.sideband_query_timeout,
            "write_timeout": config.sideband_query_timeout,
        }
        self._pool: Optional[_Pool] = None
        self._pool_pid: Optional[int] = None
        self._lock = threading.Lock()
        # (monotonic time of the failed connect, reason)
        self._down: Tuple[float, Optional[str]] = (float("-inf"), None)
        self._healthy = True  # for logging changes of state only
        # recalls from tape: config.stage_workers threads per process, one recall per path
        self._recalls = KeyedPool(config.stage_workers, "sideband-recall")
        key = (
            config.sideband_host,
            config.sideband_port,
            config.sideband_user,
            config.sideband_password,
            config.sideband_schema,
        )
        if key not in _validated:
            self._validate()
            _validated.add(key)

    # -- the database ----------------------------------------------------------

    def _validate(self) -> None:
        """At start-up: wrong credentials, schema or tables stop the program with one line;
        an unreachable database is only a warning (HEAD and POST answer 503 until it is back)."""
        db = peewee.MySQLDatabase(self.config.sideband_schema, autoconnect=False, **self.connect_params)
        try:
            db.connect()
            try:
                db.execute_sql(HEAD_SQL, _head_parameters("", "")).fetchall()
            finally:
                db.close()
        except peewee.PeeweeException as exc:
            code = error_code(exc)
            if code in REFUSED:
                raise ConfigError(
                    f"the sideband database {self.where} refused user {self.config.sideband_user!r} "
                    f"({REFUSED[code]}): {error_text(exc)}"
                ) from None
            log.warning(
                "the sideband database %s is unavailable at start-up (%s); HEAD and POST answer 503 until it answers",
                self.where,
                error_text(exc),
            )
        except peewee.ImproperlyConfigured as exc:  # pragma: no cover - PyMySQL is a dependency
            raise ConfigError(f"the hsmsideband backend needs PyMySQL: {exc}") from None

    def _database(self) -> "_Pool":
        """This process's pool, made on first use after a fork (never shared with a parent)."""
        pid = os.getpid()
        pool = self._pool
        if pool is None or self._pool_pid != pid:
            with self._lock:
                if self._pool is None or self._pool_pid != pid:
                    self._pool = _Pool(
                        self.config.sideband_schema,
                        gate=self,
                        max_connections=None,  # as many as the worker has threads
                        stale_timeout=STALE_AFTER,
                        autoconnect=False,
                        **self.connect_params,
                    )
                    self._pool_pid = pid
                pool = self._pool
        return pool

    def before_connect(self) -> None:
        failed_at, reason = self._down
        if time.monotonic() - failed_at < RETRY_CONNECT_AFTER:
            raise SidebandDown(reason)

    def connect_failed(self, exc: BaseException) -> None:
        if _connection_level(exc):
            self._down = (time.monotonic(), error_text(exc))

    def _fetch_one(self, sql: str, params: Tuple[Any, ...]) -> Optional[Tuple[Any, ...]]:
        """One row (or None); BackendUnavailable when the database cannot answer."""
        for attempt in (1, 2):
            db = self._database()
            try:
                db.connect()
            except (peewee.PeeweeException, SidebandDown, MaxConnectionsExceeded) as exc:
                raise self._unavailable(exc) from None
            try:
                row = db.execute_sql(sql, params).fetchone()
            except peewee.PeeweeException as exc:
                db.manual_close()  # never give a connection that failed back to the pool
                if attempt == 1 and _connection_level(exc):
                    # The server dropped it (restarted?): the idle ones are gone too.
                    # Once more, on a new connection.
                    db.close_idle()
                    continue
                raise self._unavailable(exc) from None
            except BaseException:
                db.manual_close()
                raise
            db.close()
            if not self._healthy:
                self._healthy = True
                log.warning("the sideband database %s answers again", self.where)
            return row
        raise AssertionError("unreachable")  # pragma: no cover

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        code = None if isinstance(exc, (SidebandDown, MaxConnectionsExceeded)) else error_code(exc)
        if isinstance(exc, MaxConnectionsExceeded):
            reason = "no free connection"
        elif code in REFUSED:
            reason = f"it refuses the configured user ({REFUSED[code]})"
        elif isinstance(exc, SidebandDown) or code in CLIENT_ERRORS or code is None:
            reason = CLIENT_ERRORS.get(code, "it does not answer") if code is not None else "it does not answer"
        else:
            reason = f"error {code}"
        if self._healthy:
            self._healthy = False
            log.warning("the sideband database %s is unavailable: %s", self.where, error_text(exc))
        return BackendUnavailable(
            f"the sideband database is unavailable ({reason}); ask again later",
            retry_after=self.config.sideband_retry_after,
            detail="sideband database unavailable",
        )

    def probe(self) -> Probes:
        probes = super().probe()
        started = time.monotonic()
        try:
            self._fetch_one("SELECT 1", ())
        except BackendUnavailable as exc:
            probes["sideband_database"] = (exc.message, None)
        else:
            probes["sideband_database"] = (None, time.monotonic() - started)
        return probes

    def sam_location(self, path: str) -> Tuple[str, str]:
        """``(sam_path.path, sam_file.name)`` of the file at ``path`` (``<prefix><id2filename>``):
        ``sam_qfs_prefix`` joined with the id2filename part, split at its last ``/``."""
        sam_qfs_path = posixpath.join(self.sam_qfs_prefix, path[len(self.prefix) :].lstrip("/"))
        return posixpath.dirname(sam_qfs_path) + "/", posixpath.basename(sam_qfs_path)

    def _record(self, path: str) -> Optional[Tuple[Any, ...]]:
        """The database's (size, online, modify_time, create_time) of the file, or None."""
        return self._fetch_one(HEAD_SQL, _head_parameters(*self.sam_location(path)))

    # -- HEAD and POST -----------------------------------------------------------

    def _regular(self, path: str) -> os.stat_result:
        try:
            st = self._lstat(path)  # a symlink under an id (or, under paths, on the way) is no stored file
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise FileNotFoundError(errno.ENOENT, "not a regular file") from None
        if not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(errno.ENOENT, "not a regular file")
        return st

    def members(self, path: str, limit: int) -> Iterator[Member]:
        """The posix listing, each file's status then asked of the database (one query per file:
        only the database knows whether its data is online)."""
        for member in super().members(path, limit):
            if member.file is None:
                yield member
                continue
            status = self.status(member.file.path)
            if status is not None:  # else removed meanwhile
                yield Member(member.name, status, None)

    def status(self, path: str) -> Optional[FileStatus]:
        try:
            st = self._regular(path)
        except (FileNotFoundError, NotADirectoryError):
            self.fail_if_prefix_missing("stat")
            return None
        row = self._record(path)
        if row is None:  # the HSM has not recorded it yet: it is on disk
            return FileStatus(path, st.st_size, st.st_mtime, st.st_ctime, (st.st_size,), "disk", etag_of(st))
        size, online, mtime, ctime = row
        size, mtime, ctime = int(size or 0), _epoch(mtime), _epoch(ctime)
        # the original's levels: (size,) online, (0, size) not; the medium is the level
        # holding the whole file, so an empty file is on disk either way
        per_level = (size,) if online else (0, size)
        media = "disk" if per_level[0] == size else "tape"
        return FileStatus(path, size, mtime, ctime, per_level, media, etag_of(st))

    def open_read(self, path: str) -> PosixReader:
        reader = super().open_read(path)
        # online or not, the reads recall it (SAM-QFS waits in the kernel): knowing would cost a query
        reader.media = None
        return reader

    def stage(self, path: str) -> bool:
        """True when the data is online; else start one recall (per process) and return False."""
        try:
            self._regular(path)
        except (FileNotFoundError, NotADirectoryError):
            self.fail_if_prefix_missing("stage")
            raise
        row = self._record(path)
        if row is None or row[1] or not row[0]:  # online, or empty: nothing to recall
            return True
        self._recalls.start(path, lambda: self._recall(path))
        return False

    def release(self, path: str) -> None:
        """Left to the HSM: its releaser frees the disk copies of archived files by its own policy."""

    def _recall(self, path: str) -> None:
        """Read the whole file: on SAM-QFS the reads stage it from tape (and wait for it)."""
        started = time.monotonic()
        try:
            buffer = bytearray(RECALL_BLOCK)
            # never through a symlink, never blocking on a FIFO
            with PosixReader(path, open_stored(path, self._open_below) if self.paths else None) as handle:
                while handle.readinto(buffer):
                    pass
            log.info("recalled %s in %.1f s", path, time.monotonic() - started)
        except OSError as exc:
            log.warning("the recall of %s from tape failed: %s", path, describe(exc))
        else:
            metrics.stage_reached_disk(path)
