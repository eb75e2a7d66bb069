"""peewee models of the stage requests' store, bound at run time (``store.Store``).

A request is one ``StageRequest`` row and one ``StageFile`` row per distinct
path.  A file row is also the unit of execution: the worker process that
claims it writes its name in ``lease_owner`` until ``lease_until``, and renews
that while it watches the stage; a claim not renewed (its process died) is
taken over by any other process after it expires.  ``pinned_until`` and
``released`` are the file's pin (``diskLifetime``), which release drops.
Every column a query matches on is indexed (``target_key`` stands for the
unindexable TEXT ``target``); ``store`` adds indexes a table made by an older
version lacks.
"""

from typing import Tuple, Type

from peewee import (
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DoubleField,
    IntegerField,
    Model,
    TextField,
)

database = DatabaseProxy()

SUBMITTED, STARTED, COMPLETED, FAILED, CANCELLED = "SUBMITTED", "STARTED", "COMPLETED", "FAILED", "CANCELLED"
RUNNING = (SUBMITTED, STARTED)  # not terminal
TERMINAL = (COMPLETED, FAILED, CANCELLED)


class TapeModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class StageRequest(TapeModel):
    id = CharField(primary_key=True, max_length=36)  # a uuid4: not guessable
    owner = CharField(max_length=64, index=True)  # who may see and change it (see service.owner_of)
    created_at = BigIntegerField(index=True)  # epoch seconds; indexed for the expiry's sweep

    class Meta:
        table_name = "tape_stage_request"


class StageFile(TapeModel):
    id = AutoField()  # the primary key peewee would add anyway, named so that its type is known
    request_id = CharField(max_length=36, index=True)
    position = IntegerField()  # submission order within the request
    path = TextField()  # as the client sent it, duplicate slashes collapsed
    target = TextField(null=True)  # the backend's path; None when the path names no id
    target_key = CharField(max_length=64, null=True, index=True)  # sha256 of target: indexable everywhere
    state = CharField(max_length=12, index=True)
    error = TextField(null=True)
    started_at = BigIntegerField(null=True)
    finished_at = BigIntegerField(null=True)
    pinned_until = BigIntegerField()
    released = BooleanField(default=False)
    lease_owner = CharField(max_length=96, null=True)
    lease_until = DoubleField(default=0.0)  # DOUBLE: MySQL's FLOAT would round epoch seconds to minutes

    class Meta:
        table_name = "tape_stage_file"


MODELS: Tuple[Type[TapeModel], ...] = (StageRequest, StageFile)
