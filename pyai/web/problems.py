"""RFC 7807 problem documents: the error answers of the Tape REST API's routes.

The failure is classified exactly as for the Pacifica routes (``error_answer``:
the same statuses, messages and headers, never a traceback or a server path);
only the document differs: ``{"type", "title", "status", "detail"}`` as
``application/problem+json``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Mapping, Optional

from werkzeug.exceptions import HTTPException

from pyai.web.answers import REASONS, Answer, error_answer

if TYPE_CHECKING:
    from pyai.backends.base import Backend

CONTENT_TYPE = "application/problem+json"


def problem_answer(exc: Exception, method: str, path: str, storage: Optional[Backend] = None) -> Answer:
    """The answer to a Tape API request that failed with ``exc``."""
    if isinstance(exc, HTTPException) and exc.code is not None:  # Flask's own 404 and 405
        headers = {name: value for name, value in exc.get_headers() if name.lower() == "allow"}
        return problem(exc.code, exc.description or exc.name, headers)
    status, headers, body = error_answer(exc, method, path, storage)
    message = json.loads(b"".join(body))["message"]
    headers = {name: value for name, value in headers.items() if name not in ("Content-Type", "Content-Length")}
    return problem(status, message, headers)


def problem(status: int, detail: str, headers: Optional[Mapping[str, str]] = None) -> Answer:
    """``(status, headers, body)`` of one problem document."""
    document = {"type": "about:blank", "title": REASONS.get(status, "Error"), "status": status, "detail": detail}
    body = json.dumps(document).encode()
    headers = dict(headers or {})
    headers["Content-Type"] = CONTENT_TYPE
    headers["Content-Length"] = str(len(body))
    return status, headers, [body]
