"""What the Tape API's clients send: the JSON bodies, checked, and the paths, read as ids.

Every malformed body is a BadRequest naming what is wrong.  A path is the path
of an id's URL, ``/<id>``: duplicate slashes are collapsed (the spec's
sanitising) and the id is decoded exactly as the data plane decodes a request
target (``pyai.request_target.id_from_uri``).  A path that names no id is not a
malformed body: it is that file's error.  A path no UTF-8 can carry (a lone
surrogate, which JSON's ``\\ud800`` makes) is malformed: no store, log or answer
could hold it.  A list of paths is bounded: cancel and release refuse more than
``max_files`` (as stage does), archiveinfo reads only the first ones it answers.
"""

import json
import re
from typing import Dict, List, Optional, Tuple, Union
from urllib.parse import unquote_to_bytes

from pyai.archive.ids import InvalidId
from pyai.backends.base import Backend
from pyai.errors import ArchiveError, BadRequest
from pyai.request_target import id_from_uri
from pyai.tape.durations import parse_duration

MAX_PATH = 4096
_SLASHES = re.compile(r"/{2,}")


def parse_json(data: Union[str, bytes, bytearray]) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise BadRequest("the body must be a JSON document", detail="body is not JSON") from None


def _check_path(path: object, where: str) -> str:
    if not isinstance(path, str):
        raise BadRequest(f"{where} must be a string", detail="path is not a string")
    if not path or len(path) > MAX_PATH or "\0" in path:
        raise BadRequest(f"{where} must be a non-empty path of at most {MAX_PATH} characters", detail="bad path")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{where} must be valid Unicode (no lone surrogate)", detail="bad path") from None
    return sanitise(path)


def sanitise(path: str) -> str:
    """The path with duplicate slashes collapsed (the form every answer gives back)."""
    return _SLASHES.sub("/", path)


def stage_files(document: object) -> List[Tuple[str, Optional[float]]]:
    """[(path, diskLifetime seconds or None)] of a stage body ``{"files": [{"path": ...}, ...]}``.

    ``targetedMetadata`` and any other key are accepted and ignored (pyai needs none).
    """
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, list) or not files:
        raise BadRequest(
            'the body must be {"files": [{"path": "/<id>"}, ...]} with at least one file', detail="no files"
        )
    parsed: List[Tuple[str, Optional[float]]] = []
    for number, entry in enumerate(files):
        if not isinstance(entry, dict):
            raise BadRequest(f"files[{number}] must be an object with a path", detail="file entry is not an object")
        path = _check_path(entry.get("path"), f"files[{number}].path")
        lifetime = entry.get("diskLifetime")
        parsed.append((path, None if lifetime is None else parse_duration(lifetime)))
    return parsed


def paths_of(document: object, limit: int, *, truncate: bool = False) -> List[str]:
    """The paths of a ``{"paths": [...]}`` body (cancel, release, archiveinfo), each once, in order.

    More than ``limit`` distinct paths is a BadRequest, or with ``truncate`` the first ``limit``
    (archiveinfo: the spec wants an answer for those it could); the rest are not even checked.
    """
    paths = document.get("paths") if isinstance(document, dict) else None
    if not isinstance(paths, list) or not paths:
        raise BadRequest('the body must be {"paths": ["/<id>", ...]} with at least one path', detail="no paths")
    kept: Dict[str, None] = {}  # a dict: each path once, in order
    for number, path in enumerate(paths):
        if truncate and len(kept) == limit:
            break
        path = _check_path(path, f"paths[{number}]")
        if path in kept:
            continue
        if len(kept) == limit:
            raise BadRequest(f"too many paths: a request may name at most {limit}", detail="too many paths")
        kept[path] = None
    return list(kept)


def ident_of(path: str, nested: bool = False) -> str:
    """The id a (sanitised) path names; ValueError with the reason when it names none.
    ``nested``: ``namespace = paths``, where an id may be a path (``/a/b/name``)."""
    if not path.startswith("/"):
        raise ValueError("a path is /<id>")
    try:
        decoded = unquote_to_bytes(path).decode("latin-1")  # as a WSGI server hands PATH_INFO over
        return id_from_uri({"RAW_URI": path, "PATH_INFO": decoded}, nested)
    except ArchiveError as exc:
        raise ValueError(exc.message) from None


def target_of(backend: Backend, path: str, nested: bool = False) -> str:
    """The backend's path of the file a client path names; ValueError with the reason when none."""
    ident = ident_of(path, nested)
    try:
        return backend.path_for(ident)
    except InvalidId as exc:
        raise ValueError(f"invalid id: {exc}") from None
