"""Where an HPSS file's checksums are kept: its user-defined attributes (UDAs).

Two sets of keys, both written in one ``hpss_UserAttrSetAttrs``:

- pyai's, every algorithm: ``/hpss/user/pyai/algorithms`` (the names kept,
  space-separated), ``/hpss/user/pyai/filesize`` (bytes) and
  ``/hpss/user/pyai/<algorithm>`` (hex digest) for each name listed;
- the Globus HPSS connector's, when md5 is kept, so other HPSS tools see it:
  ``/hpss/user/cksum/algorithm`` (``md5``), ``checksum`` (hex),
  ``lastupdate`` (epoch seconds), ``errors`` (``0``), ``state`` (``Valid``),
  ``app`` (``pyai``) and ``filesize``.

Reading believes pyai's keys only when their filesize is the file's; a file
that has none of them (stored by another tool) gets the connector's checksum
when its ``state`` is ``Valid``, its filesize matches and pyai knows the
algorithm.  A file PATCH moves in gets pyai's keys emptied (``algorithms``
set to nothing): what it carried was not computed here, and an empty pyai
record also means the connector's keys are not believed for it.
"""

import errno
import logging

from pyai.archive import checksums as digests
from pyai.errors import describe

PYAI = "/hpss/user/pyai/"
GLOBUS = "/hpss/user/cksum/"
APP = "pyai"
GLOBUS_ALGORITHM = "md5"  # the one the connector reads
log = logging.getLogger("pyai")


def keys_for(size, checksums, now):
    """The attributes that record ``checksums`` of a file of ``size`` bytes."""
    attrs = {PYAI + "algorithms": " ".join(name for name in digests.ALGORITHMS if name in checksums)}
    attrs[PYAI + "filesize"] = str(size)
    for name, digest in checksums.items():
        attrs[PYAI + name] = digest.hex()
    if GLOBUS_ALGORITHM in checksums:
        attrs.update(
            {
                GLOBUS + "algorithm": GLOBUS_ALGORITHM,
                GLOBUS + "checksum": checksums[GLOBUS_ALGORITHM].hex(),
                GLOBUS + "lastupdate": str(int(now)),
                GLOBUS + "errors": "0",
                GLOBUS + "state": "Valid",
                GLOBUS + "app": APP,
                GLOBUS + "filesize": str(size),
            }
        )
    return attrs


def write(hpss, path, size, checksums, now):
    """Record ``checksums`` (all the file has) on ``path`` in one call."""
    hpss.set_user_attrs(path, keys_for(size, checksums, now))


def read(hpss, path, size):
    """The ``{algorithm: digest}`` recorded for ``path`` (a file of ``size`` bytes), {} when none."""
    try:
        head = hpss.get_user_attrs(path, [PYAI + "algorithms", PYAI + "filesize"])
        if PYAI + "algorithms" not in head:
            return _read_globus(hpss, path, size)
        if head.get(PYAI + "filesize") != str(size):
            return {}
        names = [name for name in head[PYAI + "algorithms"].split() if name in digests.DIGEST_SIZES]
        values = hpss.get_user_attrs(path, [PYAI + name for name in names]) if names else {}
    except OSError as exc:
        if exc.errno != errno.ENOENT:  # ENOENT: gone meanwhile, no checksum
            log.warning("could not read the checksum attributes of %s: %s", path, describe(exc))
        return {}
    found = {}
    for name in names:
        digest = _digest(name, values.get(PYAI + name))
        if digest is not None:
            found[name] = digest
    return found


def _read_globus(hpss, path, size):
    keys = [GLOBUS + key for key in ("algorithm", "checksum", "state", "filesize")]
    attrs = hpss.get_user_attrs(path, keys)
    if len(attrs) < len(keys) or attrs[GLOBUS + "state"] != "Valid" or attrs[GLOBUS + "filesize"] != str(size):
        return {}
    name = attrs[GLOBUS + "algorithm"].strip().lower()
    digest = _digest(name, attrs[GLOBUS + "checksum"])
    return {name: digest} if digest is not None else {}


def _digest(name, text):
    if name not in digests.DIGEST_SIZES or text is None:
        return None
    try:
        digest = bytes.fromhex(text.strip())
    except ValueError:
        return None
    return digest if len(digest) == digests.DIGEST_SIZES[name] else None


def add(hpss, path, size, computed, now):
    """Record ``computed`` beside what ``path`` has; the whole set after.

    HPSS has no lock to hold across the read and the write: two processes
    adding different algorithms at once may each list only its own beside the
    old ones -- a digest lost that way is computed again when next asked for."""
    stored = read(hpss, path, size)
    merged = {**computed, **stored}
    if merged != stored:
        write(hpss, path, size, merged, now)
    return merged


def forget(hpss, path, size):
    """Make pyai's record of ``path`` empty (a file PATCH moves in: nothing here hashed it)."""
    try:
        hpss.set_user_attrs(path, {PYAI + "algorithms": "", PYAI + "filesize": str(size)})
    except OSError as exc:
        log.warning("could not reset the checksum attributes of %s: %s", path, describe(exc))
