"""A private MariaDB server for the sideband tests, and a writer of sideband rows.

``MariaDB`` runs Debian's ``mariadbd`` (package ``mariadb-server``) over a
fresh data directory on a free loopback port, as the current user, with real
accounts: ``root`` (no password, unix socket only: the tests write fixture
rows with it) and a read-only service account with a password, which pyai
uses.  Nothing is mocked.

``SamDB`` writes what Oracle HSM would record about files on its file
system: a ``sam_path`` row per directory, a ``sam_file`` row per entry, a
``sam_inode`` row per inode, for a local file named by the database path the
original's rule gives it (see ``SamDB``).

``start_mariadb`` starts one with the sideband schema; ``SidebandPool`` starts archives
served with ``-t hsmsideband`` on it.
"""

import itertools
import os
import posixpath
import secrets
import shutil
import subprocess
import time
import zlib
from pathlib import Path

import peewee
from harness import Spawned, free_port
from server import ServerPool

from pyai.backends.sideband_models import (
    MODELS,
    OFFLINE,
    ONLINE,
    TYPE_DIRECTORY,
    TYPE_FILE,
    SamFile,
    SamInode,
    SamPath,
    SamVersion,
)

SCHEMA = "samdb"
SERVICE_USER = "pyai"
SERVICE_PASSWORD = "s1deband-Secret"
START_TIMEOUT = 60.0
INSTALL_HINT = (
    "the hsmsideband tests need a MariaDB server: install Debian's mariadb-server "
    "(`make test` does it when run as root; else `apt-get install mariadb-server`), "
    "or leave hsmsideband out of PYAI_TEST_BACKENDS"
)


def find_program(*names):
    for name in names:
        found = shutil.which(name) or next(
            (str(Path(d) / name) for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin") if (Path(d) / name).is_file()),
            None,
        )
        if found:
            return found
    return None


class MariaDBMissing(RuntimeError):
    pass


class MariaDB(Spawned):
    """One mariadbd over ``base``/data, listening on 127.0.0.1:``port`` and ``base``/sock."""

    name = "mariadbd"
    grace = 30.0  # SIGTERM is a clean shutdown: InnoDB flushes first

    def __init__(self, base):
        self.server = os.environ.get("PYAI_TEST_MARIADBD") or find_program("mariadbd", "mysqld")
        if self.server and not os.access(self.server, os.X_OK):
            self.server = None
        self.installer = find_program("mariadb-install-db", "mysql_install_db")
        if not self.server or not self.installer:
            raise MariaDBMissing(INSTALL_HINT)
        self.base = Path(base)
        self.datadir = self.base / "data"
        self.socket = self.base / "sock"
        super().__init__(self.base / "mariadb.log", free_port())

    # -- life cycle ----------------------------------------------------------------

    def install(self):
        self.base.mkdir(parents=True, exist_ok=True)
        command = [
            self.installer,
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ]
        if os.geteuid() == 0:
            command.append("--user=root")
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return self

    def start(self):
        command = [
            self.server,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.base / 'mariadbd.pid'}",
            f"--log-error={self.log_path}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            "--skip-log-bin",
            "--max-connections=500",
        ]
        if os.geteuid() == 0:
            command.append("--user=root")
        self.spawn(command)
        self.wait_ready(self._answers, START_TIMEOUT)
        return self

    def _answers(self):
        try:
            self.root().close()
        except peewee.OperationalError as exc:
            return repr(exc)
        return True

    # -- accounts and schema ---------------------------------------------------------

    def root(self, schema=None):
        """A connection as root over the unix socket (the tests' writer)."""
        db = peewee.MySQLDatabase(
            schema or "mysql", unix_socket=str(self.socket), user="root", password="", autoconnect=False
        )
        db.connect()
        return db

    def tape_store(self, schema, user="tape", password="tape-Store-Secret1"):
        """A database ``schema`` that ``user`` owns, as a `[tape] store` URL (the Tape API's requests)."""
        root = self.root()
        try:
            root.execute_sql(f"CREATE DATABASE IF NOT EXISTS `{schema}`")
            for host in ("127.0.0.1", "localhost"):
                root.execute_sql(f"CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY %s", (password,))
                root.execute_sql(f"GRANT ALL ON `{schema}`.* TO '{user}'@'{host}'", ())
        finally:
            root.close()
        return f"mysql://{user}:{password}@127.0.0.1:{self.port}/{schema}"

    def create_schema(self, schema=SCHEMA, user=SERVICE_USER, password=SERVICE_PASSWORD):
        """The sideband tables in ``schema``, readable (only) by ``user`` from anywhere."""
        db = self.root()
        try:
            db.execute_sql(f"CREATE DATABASE IF NOT EXISTS `{schema}`")
            for host in ("127.0.0.1", "localhost", "%%"):  # %% is '%' (any host) in a query with parameters
                db.execute_sql(f"CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY %s", (password,))
                db.execute_sql(f"GRANT SELECT ON `{schema}`.* TO '{user}'@'{host}'", ())
        finally:
            db.close()
        db = self.root(schema)
        try:
            with db.bind_ctx(MODELS):
                db.create_tables(MODELS)
                SamVersion.insert(version="1.0").on_conflict_ignore().execute()
        finally:
            db.close()
        return self

    def settings(self, schema=SCHEMA, user=SERVICE_USER, password=SERVICE_PASSWORD):
        """The service's environment for this database."""
        return {
            "PAI_SIDEBAND_HOST": "127.0.0.1",
            "PAI_SIDEBAND_PORT": str(self.port),
            "PAI_SIDEBAND_USER": user,
            "PAI_SIDEBAND_PASSWORD": password,
            "PAI_SIDEBAND_SCHEMA": schema,
        }


_inodes = itertools.count(1000)


class SamDB:
    """Writes sideband rows, as the HSM would, for local files.

    A local file's database path is its real path, unless it lies under one of
    ``roots`` (``{local prefix: sam_qfs_prefix}``): then it is the
    ``sam_qfs_prefix`` joined with the part below the prefix (the original's
    rule).  A server whose ``sam_qfs_prefix`` is its own prefix needs no root.
    """

    def __init__(self, mariadb, roots=None, schema=SCHEMA):
        self.mariadb = mariadb
        self.roots = {os.path.realpath(local): db for local, db in (roots or {}).items()}
        self.schema = schema

    def db_path(self, path):
        path = os.path.realpath(path)
        for local, db in self.roots.items():
            if path.startswith(local.rstrip("/") + "/"):
                return posixpath.join(db, path[len(local.rstrip("/")) + 1 :])
        return path

    def _run(self, work):
        db = self.mariadb.root(self.schema)
        try:
            with db.bind_ctx(MODELS):
                with db.atomic():
                    return work()
        finally:
            db.close()

    @staticmethod
    def _new_inode():
        ino = SamInode.select(peewee.fn.COALESCE(peewee.fn.MAX(SamInode.ino), 0)).scalar() + 1
        return max(ino, next(_inodes)), 1

    def _directory(self, directory):
        """(ino, gen) of the directory whose database path is ``directory`` (ending in "/", or
        "" for the root of relative paths), with its parents."""
        row = SamPath.get_or_none(SamPath.path == directory)
        if row is not None:
            return row.ino, row.gen
        ino, gen = self._new_inode()
        SamInode.create(
            ino=ino,
            gen=gen,
            type=TYPE_DIRECTORY,
            size=4096,
            online=ONLINE,
            create_time=int(time.time()),
            modify_time=int(time.time()),
        )
        SamPath.create(ino=ino, gen=gen, path=directory)
        parent, slash, name = directory.rstrip("/").rpartition("/")
        if name:  # not a root
            p_ino, p_gen = self._directory(parent + slash)
            SamFile.create(ino=ino, gen=gen, p_ino=p_ino, p_gen=p_gen, name=name, name_hash=zlib.crc32(name.encode()))
        return ino, gen

    def _entry(self, path):
        directory, _, name = self.db_path(path).rpartition("/")
        p_ino, p_gen = self._directory(directory + "/")
        return SamFile.get_or_none((SamFile.p_ino == p_ino) & (SamFile.p_gen == p_gen) & (SamFile.name == name)), (
            p_ino,
            p_gen,
            name,
        )

    def record(self, path, *, online=True, size=None, mtime=None, ctime=None):
        """Record the file ``path`` (its size and times from the file system unless given)."""
        st = os.stat(path)
        size = st.st_size if size is None else size
        mtime = int(st.st_mtime) if mtime is None else mtime
        ctime = int(st.st_ctime) if ctime is None else ctime

        def work():
            entry, (p_ino, p_gen, name) = self._entry(path)
            if entry is not None:
                SamInode.delete().where((SamInode.ino == entry.ino) & (SamInode.gen == entry.gen)).execute()
                SamFile.delete().where((SamFile.ino == entry.ino) & (SamFile.gen == entry.gen)).execute()
            ino, gen = self._new_inode()
            SamInode.create(
                ino=ino,
                gen=gen,
                type=TYPE_FILE,
                size=size,
                online=ONLINE if online else OFFLINE,
                create_time=ctime,
                modify_time=mtime,
                uid=os.getuid(),
                gid=os.getgid(),
            )
            SamFile.create(ino=ino, gen=gen, p_ino=p_ino, p_gen=p_gen, name=name, name_hash=zlib.crc32(name.encode()))
            return ino, gen

        return self._run(work)

    def rows(self):
        """Every ``(sam_path.path, sam_file.name)`` pair recorded (the original's join)."""
        db = self.mariadb.root(self.schema)
        try:
            sql = "SELECT p.path, f.name FROM sam_path p JOIN sam_file f ON f.p_ino = p.ino"
            return set(db.execute_sql(sql).fetchall())
        finally:
            db.close()

    def set_online(self, path, online):
        def work():
            entry, _ = self._entry(path)
            assert entry is not None, f"{path} is not recorded"
            SamInode.update(online=ONLINE if online else OFFLINE).where(
                (SamInode.ino == entry.ino) & (SamInode.gen == entry.gen)
            ).execute()

        self._run(work)

    def forget(self, path):
        def work():
            entry, _ = self._entry(path)
            if entry is not None:
                SamInode.delete().where((SamInode.ino == entry.ino) & (SamInode.gen == entry.gen)).execute()
                SamFile.delete().where((SamFile.ino == entry.ino) & (SamFile.gen == entry.gen)).execute()

        self._run(work)


def started(base):
    """A private MariaDB under ``base``, installed and started; fails the test (pytest.fail) when
    none is installed.  The caller stops it."""
    import pytest  # here: the benchmarks import this module without pytest's fixtures

    try:
        db = MariaDB(base)
    except MariaDBMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    db.install()
    try:
        db.start()
    except BaseException:
        db.stop()
        raise
    return db


def start_mariadb(base):
    """An installed, started MariaDB with the sideband schema (fails the test when there is none)."""
    db = started(base)
    try:
        db.create_schema()
    except BaseException:
        db.stop()
        raise
    return db


class SidebandPool(ServerPool):
    """Servers with -t hsmsideband, each by default with ``sam_qfs_prefix`` = its own prefix:
    the database names each file by its real path, which ``SamDB`` writes without being told more."""

    def __init__(self, base, mariadb, impl="c"):
        super().__init__(base, impl, "hsmsideband")
        self.base.mkdir(parents=True, exist_ok=True)
        self.mariadb = mariadb

    def start(self, name="sb", **settings):
        prefix = settings.pop("PAI_PREFIX", None) or str(self.base / f"{name}-{secrets.token_hex(4)}-prefix")
        defaults = {
            "PAI_PREFIX": prefix,
            "PAI_SAM_QFS_PREFIX": os.path.realpath(prefix),
            "PAI_USE_ID2FILENAME": "true",  # where Server.stored_path looks (the backend always uses it)
            **self.mariadb.settings(),
        }
        defaults.update(settings)
        return super().start(name, **defaults)
