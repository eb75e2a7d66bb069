"""peewee models of the Oracle HSM / SAM-QFS "sideband" database (samdb).

The HSM keeps one row per directory in ``sam_path``, one row per directory
entry in ``sam_file`` and one row per inode in ``sam_inode``; ``sam_archive``
records the archive (tape) copies and ``sam_version`` the schema version.
Table and column names are the original's.  pyai only reads these tables (the
HEAD query joins sam_path -> sam_file -> sam_inode); the tests create them and
write fixture rows through the same models.

The models are bound to no database: the backend runs its queries on the
connection pool of its worker (``query.execute(database)``), and the tests
bind them to their own connection (``database.bind(MODELS)``).

Paths: ``sam_path.path`` is a directory as the HSM names it, with a trailing
``/``; ``sam_file.name`` is the entry's name in it.  Which directory holds an
id's file is the backend's rule (``pyai.backends.sideband``).
"""

from peewee import BigIntegerField, CharField, CompositeKey, IntegerField, Model, SmallIntegerField

# sam_inode.type
TYPE_FILE = 0
TYPE_DIRECTORY = 1
TYPE_SEGMENT = 2
TYPE_SYMLINK = 3
# sam_inode.online: 1 when the data is on the disk cache, 0 when only archive (tape) copies hold it
OFFLINE = 0
ONLINE = 1

# InnoDB keys are at most 3072 bytes: 760 utf8mb4 characters keeps sam_path.path indexable.
PATH_LENGTH = 760
NAME_LENGTH = 255


class SamModel(Model):
    class Meta:
        database = None


class InodeRow(SamModel):
    """A table whose rows belong to an inode ``(ino, gen)``, their key (sam_archive's: with the copy).
    No table of its own: its columns come first in each subclass's."""

    ino = BigIntegerField()
    gen = IntegerField()

    class Meta:
        primary_key = CompositeKey("ino", "gen")


class SamInode(InodeRow):
    """One inode of the HSM file system: size, times, and whether its data is online."""

    type = SmallIntegerField(default=TYPE_FILE)
    size = BigIntegerField(default=0)
    create_time = BigIntegerField(default=0)  # epoch seconds
    modify_time = BigIntegerField(default=0)  # epoch seconds
    online = SmallIntegerField(default=ONLINE)
    uid = IntegerField(default=0)
    gid = IntegerField(default=0)
    csum = CharField(max_length=64, null=True)

    class Meta:
        table_name = "sam_inode"


class SamFile(InodeRow):
    """A directory entry: the inode ``(ino, gen)`` is named ``name`` in directory ``(p_ino, p_gen)``."""

    p_ino = BigIntegerField()
    p_gen = IntegerField()
    name = CharField(max_length=NAME_LENGTH)
    name_hash = BigIntegerField(default=0)

    class Meta:
        table_name = "sam_file"
        indexes = (
            (("p_ino", "p_gen", "name_hash"), False),
            (("name",), False),
        )


class SamPath(InodeRow):
    """A directory ``(ino, gen)`` and its path, ending in ``/``."""

    path = CharField(max_length=PATH_LENGTH, index=True)

    class Meta:
        table_name = "sam_path"


class SamArchive(InodeRow):
    """One archive copy (1-4) of an inode, in ``seq`` order on the volume ``vsn``."""

    copy = SmallIntegerField()
    seq = IntegerField(default=0)
    media_type = CharField(max_length=4, default="li")
    vsn = CharField(max_length=32)
    position = BigIntegerField(default=0)
    offset = BigIntegerField(default=0)
    size = BigIntegerField(default=0)
    create_time = BigIntegerField(default=0)
    stale = SmallIntegerField(default=0)

    class Meta:
        table_name = "sam_archive"
        primary_key = CompositeKey("ino", "gen", "copy", "seq")


class SamVersion(SamModel):
    """The schema version of the sideband database."""

    version = CharField(max_length=32, primary_key=True)

    class Meta:
        table_name = "sam_version"


MODELS = (SamVersion, SamPath, SamFile, SamInode, SamArchive)
