"""Where stage requests are kept: SQLite in the state directory, or a shared MariaDB/MySQL.

Several gunicorn workers, and several instances on one MariaDB, share the
store, so every change is one statement or one transaction, and the claims
of the executor are conditional UPDATEs (exactly one process wins a file).
Connections are per thread (peewee's default) and opened per operation: none
outlives a request or survives a fork, and a database that restarts costs
one failed operation, not a broken worker.  Tables are created idempotently
the first time a process uses the store.
"""

import contextlib
import hashlib
import logging
import os
import threading
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, TypedDict, TypeVar, cast
from urllib.parse import urlsplit

import peewee
from playhouse.db_url import parse as parse_url

from pyai.config import Config
from pyai.errors import BackendUnavailable, ConfigError
from pyai.tape import models
from pyai.tape.fairness import share_out
from pyai.tape.models import RUNNING, STARTED, SUBMITTED, StageFile, StageRequest

log = logging.getLogger("pyai")
SQLITE_NAME = "tape-requests.sqlite3"
STATE_DIR_NAME = ".pyai-state"  # under a posix prefix: a dot name, which no id can reach
RETRY_AFTER = 10  # seconds, when the store cannot be reached
CHUNK = 500  # values per IN (...): far below SQLite's limit on the variables of one statement
EXPIRY_BATCH = 10  # requests one transaction of a sweep deletes (at most max_files rows each): a short write lock
_T = TypeVar("_T")


class FileRow(TypedDict):
    """A new file row, as ``Store.add_request`` inserts it (the other StageFile fields take their defaults)."""

    request_id: str
    position: int
    path: str
    state: str
    pinned_until: int
    target: Optional[str]
    target_key: Optional[str]
    error: Optional[str]
    started_at: Optional[int]
    finished_at: Optional[int]


def _chunks(values: Iterable[_T]) -> Iterator[List[_T]]:
    values = list(values)
    return (values[start : start + CHUNK] for start in range(0, len(values), CHUNK))


def state_dir(config: Config) -> str:
    """The directory of the SQLite store (see ``[tape] state_dir``)."""
    if config.tape_state_dir:
        return config.tape_state_dir
    if config.backend == "hpss":
        # the prefix is HPSS's namespace, no place for a database: a local directory per archive
        digest = hashlib.sha256(config.prefix.encode()).hexdigest()[:12]
        return os.path.join(os.path.expanduser("~"), ".pacifica-archiveinterface", f"tape-state-{digest}")
    return os.path.join(config.prefix, STATE_DIR_NAME)


def describe_store(config: Config) -> str:
    """The store as a log line may name it (no password)."""
    if not config.tape_store:
        return os.path.join(state_dir(config), SQLITE_NAME)
    parts = urlsplit(config.tape_store)
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"


def check_config(config: Config) -> None:
    """A bad ``[tape] store`` stops the service at start-up with one line."""
    if config.tape_store:
        _database(config)


def target_key(target: str) -> str:
    return hashlib.sha256(target.encode("utf-8", "surrogateescape")).hexdigest()


def _database(config: Config) -> Tuple[peewee.Database, Optional[str]]:
    url = config.tape_store
    if not url:
        path = os.path.join(state_dir(config), SQLITE_NAME)
        # WAL: readers never wait for the writer; busy_timeout: writers of other workers wait their turn
        return peewee.SqliteDatabase(
            path, pragmas={"journal_mode": "wal", "busy_timeout": 10000, "synchronous": "normal"}
        ), path
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("mysql", "mariadb"):
        raise ConfigError(f"[tape] store must be a mysql://user:password@host:port/database URL, not {scheme}://...")
    try:
        kwargs = parse_url(url.replace(scheme + "://", "mysql://", 1))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"[tape] store is not a valid URL: {exc}") from None
    name = kwargs.pop("database", None)
    if not name:
        raise ConfigError("[tape] store names no database (mysql://user:password@host:port/database)")
    kwargs.setdefault("charset", "utf8mb4")
    kwargs.setdefault("connect_timeout", 5)
    # a statement that hangs (a server gone silent) fails instead of holding a thread for ever
    kwargs.setdefault("read_timeout", 30)
    kwargs.setdefault("write_timeout", 30)
    return peewee.MySQLDatabase(name, **kwargs), None


class Store:
    """The stage requests of one archive; safe to share between the threads of a process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._pid: Optional[int] = None
        self.db: Optional[peewee.Database] = None
        self.sqlite_path: Optional[str] = None

    # -- connections -------------------------------------------------------------

    def _prepare(self) -> peewee.Database:
        """This process's database, its tables made (once per process, idempotently)."""
        with self._lock:
            if self._pid == os.getpid() and self.db is not None:  # db is set with _pid
                return self.db
            db, path = _database(self.config)
            if path is not None:
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            models.database.initialize(db)
            with db.connection_context():
                _create_tables(db)
            self.db, self.sqlite_path, self._pid = db, path, os.getpid()
            return db

    def exists(self) -> bool:
        """Whether there may be requests at all (an archive that never got one has no SQLite file)."""
        if self.config.tape_store:
            return True
        return os.path.exists(os.path.join(state_dir(self.config), SQLITE_NAME))

    @contextlib.contextmanager
    def session(self, transaction: bool = False) -> Iterator[peewee.Database]:
        """A connection for one operation (and a transaction with ``transaction``); 503 when unreachable."""
        try:
            db = self._prepare()
            opened = db.is_closed()
            if opened:
                db.connect()
            try:
                if transaction:
                    # SQLite: the write lock at BEGIN (waiting up to busy_timeout for it).  A deferred
                    # BEGIN whose first statement reads fails at once with "database is locked" when
                    # it writes after another process did (its snapshot cannot become a writer).
                    with db.atomic("IMMEDIATE") if self.sqlite_path else db.atomic():
                        yield db
                else:
                    yield db
            finally:
                if opened:
                    db.close()
        except peewee.OperationalError as exc:
            log.warning("the tape request store %s failed: %s", describe_store(self.config), exc)
            raise BackendUnavailable(
                "the store of tape requests is unavailable", retry_after=RETRY_AFTER, detail="store unavailable"
            ) from None

    # -- requests ----------------------------------------------------------------

    def add_request(self, request_id: str, owner: str, now: int, files: Sequence[FileRow]) -> None:
        """Store a request and its file rows (dicts of StageFile fields) in one transaction."""
        with self.session(transaction=True):
            StageRequest.create(id=request_id, owner=owner, created_at=now)
            for start in range(0, len(files), 100):  # bounded statements (SQLite's variable limit)
                StageFile.insert_many(files[start : start + 100]).execute()

    def open_requests(self, owner: str) -> int:
        """How many of ``owner``'s requests have a file not finished."""
        with self.session():
            query = (
                StageFile.select(StageFile.request_id)
                .join(StageRequest, on=(StageRequest.id == StageFile.request_id))
                .where((StageRequest.owner == owner) & StageFile.state.in_(RUNNING))
                .distinct()
            )
            return query.count()

    def kept_files(self, owner: str) -> int:
        """How many file rows ``owner``'s requests hold, finished ones too (until they expire)."""
        with self.session():
            return (
                StageFile.select()
                .join(StageRequest, on=(StageRequest.id == StageFile.request_id))
                .where(StageRequest.owner == owner)
                .count()
            )

    def expire(self, cutoff: float, now: float, owner: Optional[str] = None, batch: int = EXPIRY_BATCH) -> int:
        """Delete up to ``batch`` requests (of ``owner``, or anyone's) made before ``cutoff`` whose
        every file finished before it and pins nothing at ``now`` (a pin decides what a release
        may evict: it outlives the request's expiry); how many.  One short transaction: a sweep
        holds no lock long."""
        with self.session():
            pinning = (
                (StageFile.state == models.COMPLETED)
                & (StageFile.released == False)  # noqa: E712 - peewee builds SQL from ==
                & (StageFile.pinned_until > now)
            )
            unfinished = StageFile.select(StageFile.id).where(
                (StageFile.request_id == StageRequest.id)
                & (StageFile.state.in_(RUNNING) | (StageFile.finished_at >= cutoff) | pinning)
            )
            query = StageRequest.select(StageRequest.id).where(
                (StageRequest.created_at < cutoff) & ~peewee.fn.EXISTS(unfinished)
            )
            if owner is not None:
                query = query.where(StageRequest.owner == owner)
            ids = [row.id for row in query.order_by(StageRequest.created_at).limit(batch)]
        if ids:
            with self.session(transaction=True):
                StageFile.delete().where(StageFile.request_id.in_(ids)).execute()
                StageRequest.delete().where(StageRequest.id.in_(ids)).execute()
        return len(ids)

    def request(self, request_id: str, owner: str) -> Optional[Tuple[StageRequest, List[StageFile]]]:
        """(StageRequest, [StageFile]) of ``owner``'s request, None when there is none."""
        with self.session():
            found = StageRequest.get_or_none((StageRequest.id == request_id) & (StageRequest.owner == owner))
            if found is None:
                return None
            return found, list(
                StageFile.select().where(StageFile.request_id == request_id).order_by(StageFile.position)
            )

    def cancel(self, request_id: str, paths: Optional[Iterable[str]], now: int) -> int:
        """Every running file of the request among ``paths`` (all of them when None) becomes CANCELLED."""
        with self.session(transaction=True):
            query = StageFile.update(state=models.CANCELLED, finished_at=now, lease_owner=None).where(
                (StageFile.request_id == request_id) & StageFile.state.in_(RUNNING)
            )
            if paths is None:
                return query.execute()
            return sum(query.where(StageFile.path.in_(chunk)).execute() for chunk in _chunks(paths))

    def delete(self, request_id: str, now: int) -> None:
        with self.session(transaction=True):
            self.cancel(request_id, None, now)
            StageFile.delete().where(StageFile.request_id == request_id).execute()
            StageRequest.delete().where(StageRequest.id == request_id).execute()

    def release(
        self, targets: Iterable[str], now: int, *, request_id: Optional[str] = None, owner: Optional[str] = None
    ) -> List[str]:
        """Drop the pins on ``targets`` (backend paths) of the request ``request_id``, or (without
        one) of every request of ``owner``; those of them it pinned that no live pin holds any more
        (to evict).  Matched on the indexed ``target_key``, a short transaction per chunk: a long
        list holds the store's write lock for one chunk at a time, never for the whole list."""
        if request_id is not None:
            scope = StageFile.request_id == request_id
        else:
            scope = StageFile.request_id.in_(StageRequest.select(StageRequest.id).where(StageRequest.owner == owner))
        keys = {target_key(target): target for target in targets}
        pinned: Dict[str, str] = {}
        for chunk in _chunks(keys):
            ours = scope & StageFile.target_key.in_(chunk)
            with self.session(transaction=True):
                pinned.update(
                    # matched on a target_key: the row has one, and the target it stands for
                    (cast(str, row.target_key), cast(str, row.target))
                    for row in StageFile.select(StageFile.target, StageFile.target_key).where(ours)
                )
                StageFile.update(released=True).where(ours).execute()
        with self.session():
            return self._unpinned(pinned, now)

    def unpinned(self, targets: Iterable[str], now: int) -> List[str]:
        """The ``targets`` (backend paths) that no live pin of any request holds."""
        with self.session():
            return self._unpinned({target_key(target): target for target in targets}, now)

    def _unpinned(self, targets: Dict[str, str], now: int) -> List[str]:
        """Of ``targets`` ({target_key: target}), those no live pin holds: one indexed query per chunk."""
        held: Set[Optional[str]] = set()
        for chunk in _chunks(targets):
            held.update(
                row.target_key
                for row in StageFile.select(StageFile.target_key)
                .where(
                    StageFile.target_key.in_(chunk)
                    & (StageFile.released == False)  # noqa: E712 - peewee builds SQL from ==
                    & (StageFile.state.in_(RUNNING) | (StageFile.pinned_until > now))
                    & (StageFile.state != models.CANCELLED)
                    & (StageFile.state != models.FAILED)
                )
                .distinct()
            )
        return [target for key, target in targets.items() if key not in held]

    # -- execution (pyai.tape.executor) --------------------------------------------

    def claim(self, owner: str, count: int, now: float, lease: float) -> List[StageFile]:
        """Up to ``count`` running files no live process holds, now held by ``owner``.

        Shared out (``fairness.share_out``) between the owners of requests with such files, and
        within an owner between its requests, each oldest first: one client's long queue delays
        another's files by one share of the slots, not by its length.
        """
        free = StageFile.state.in_(RUNNING) & ((StageFile.lease_owner.is_null()) | (StageFile.lease_until < now))
        with self.session():
            # (request_id, owner, files waiting, first file): .tuples() rows, which peewee's stubs type as models
            waiting = cast(
                "Iterable[Tuple[str, str, int, int]]",
                StageFile.select(
                    StageFile.request_id, StageRequest.owner, peewee.fn.COUNT(StageFile.id), peewee.fn.MIN(StageFile.id)
                )
                .join(StageRequest, on=(StageRequest.id == StageFile.request_id))
                .where(free)
                .group_by(StageFile.request_id, StageRequest.owner)
                .order_by(peewee.fn.MIN(StageFile.id))
                .tuples(),
            )
            shares = share_out([(request_id, client, number) for request_id, client, number, _ in waiting], count)
            candidates: List[StageFile] = []
            for request_id, share in shares.items():
                candidates.extend(
                    StageFile.select(StageFile.id)
                    .where(free & (StageFile.request_id == request_id))
                    .order_by(StageFile.id)
                    .limit(share)
                )
            claimed: List[int] = []
            for row in candidates:
                # the one atomic step: of all processes trying this row, one updates it
                won = (
                    StageFile.update(
                        lease_owner=owner,
                        lease_until=now + lease,
                        state=STARTED,
                        started_at=peewee.fn.COALESCE(StageFile.started_at, int(now)),
                    )
                    .where((StageFile.id == row.id) & free)
                    .execute()
                )
                if won:
                    claimed.append(row.id)
            if not claimed:
                return []
            return list(
                StageFile.select(StageFile.id, StageFile.target, StageFile.started_at).where(StageFile.id.in_(claimed))
            )

    def still_held(self, owner: str, ids: Iterable[int], now: float, lease: float) -> Set[int]:
        """Of ``ids``, those still running and held by ``owner``, their leases renewed."""
        kept: Set[int] = set()
        with self.session():
            for chunk in _chunks(ids):
                mine = StageFile.id.in_(chunk) & (StageFile.lease_owner == owner) & StageFile.state.in_(RUNNING)
                StageFile.update(lease_until=now + lease).where(mine).execute()
                kept.update(row.id for row in StageFile.select(StageFile.id).where(mine))
        return kept

    def finish(self, owner: str, file_id: int, state: str, now: int, error: Optional[str] = None) -> int:
        """Set a held file's terminal state (unless it was cancelled or taken meanwhile)."""
        with self.session():
            return (
                StageFile.update(state=state, finished_at=now, error=error, lease_owner=None)
                .where((StageFile.id == file_id) & (StageFile.lease_owner == owner) & StageFile.state.in_(RUNNING))
                .execute()
            )

    def files_by_state(self) -> Dict[str, int]:
        """``{state: number of file rows}`` over every request (the metrics' gauge)."""
        with self.session():
            query = StageFile.select(StageFile.state, peewee.fn.COUNT(StageFile.id)).group_by(StageFile.state)
            # (state, count) rows: .tuples(), which peewee's stubs type as models
            return dict(cast("Iterable[Tuple[str, int]]", query.tuples()))

    def let_go(self, owner: str, ids: Iterable[int]) -> None:
        """Give up the claims on ``ids`` (a worker on its way out), so others take them at once."""
        with self.session():
            for chunk in _chunks(ids):
                StageFile.update(lease_owner=None, lease_until=0).where(
                    StageFile.id.in_(chunk) & (StageFile.lease_owner == owner) & (StageFile.state == STARTED)
                ).execute()


def _create_tables(db: peewee.Database) -> None:
    """CREATE TABLE/INDEX IF NOT EXISTS; a concurrent creator winning a race is no failure."""
    try:
        db.create_tables(models.MODELS, safe=True)
    except peewee.DatabaseError:
        if not all(db.table_exists(model._meta.table_name) for model in models.MODELS):
            raise
    _create_indexes(db)


def _create_indexes(db: peewee.Database) -> None:
    """Every index of the models that the tables lack (made by an older pyai).

    MySQL/MariaDB have no CREATE INDEX IF NOT EXISTS that peewee uses: there ``create_tables``
    stops at the first index that exists, and later ones would never be made.  So each is
    looked up, made when missing, and looked up again when making it failed (a concurrent
    process made it first).
    """
    for model in models.MODELS:
        table = model._meta.table_name
        for index in model._meta.fields_to_index():
            name = index._name
            if name in {found.name for found in db.get_indexes(table)}:
                continue
            try:
                # _schema (a SchemaManager) is set by peewee's metaclass: its stubs do not declare it
                db.execute(model._schema._create_index(index, safe=db.safe_create_index))  # type: ignore[attr-defined]
            except peewee.DatabaseError:
                if name not in {found.name for found in db.get_indexes(table)}:
                    raise
                log.info("the index %s of the tape request store was made by another process", name)


__all__ = ["Store", "state_dir", "target_key", "SUBMITTED"]
