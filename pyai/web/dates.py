"""Reading the Last-Modified a client sends, and writing HTTP dates.

Clients send every date format ever used on the web: RFC 1123, RFC 850,
asctime without a zone (what Pacifica ingest sends, meaning UTC), ISO 8601 and
plain epoch seconds.  An upload is never refused over its date.
"""

import calendar
import datetime
import re
import time
from typing import Optional, Tuple

_EPOCH = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
# strptime formats without a zone: read as UTC (a trailing "GMT"/"UTC" is stripped first)
_FORMATS = (
    "%a, %d %b %Y %H:%M:%S",  # RFC 1123
    "%A, %d-%b-%y %H:%M:%S",  # RFC 850
    "%a %b %d %H:%M:%S %Y",  # asctime
    "%d %b %Y %H:%M:%S",  # RFC 1123 without the weekday
)
# The instants an HTTP date can name (0001-01-01 to 9999-12-31 UTC): GET writes
# the stored time back as one, so a Last-Modified outside them is no date to keep.
EARLIEST = -62135596800.0
LATEST = 253402300800.0  # exclusive


def parse_http_date(text: str) -> Optional[float]:
    """Return epoch seconds (float) for ``text`` in any format we accept, or None."""
    text = text.strip()
    if not text:
        return None
    stamp: Optional[float]
    if _EPOCH.fullmatch(text):
        stamp = float(text)
    else:
        stamp = _parse_formats(text)
        if stamp is None:
            stamp = _parse_iso(text)
    if stamp is None or not EARLIEST <= stamp < LATEST:
        return None
    return stamp


def _parse_formats(text: str) -> Optional[float]:
    bare = re.sub(r"\s+(GMT|UTC|UT|Z|\+0000|-0000)$", "", text)
    for fmt in _FORMATS:
        try:
            parsed = time.strptime(bare, fmt)
        except ValueError:
            continue
        return float(calendar.timegm(parsed))
    return None


def _parse_iso(text: str) -> Optional[float]:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(stamp: float) -> str:
    """Format epoch seconds as an RFC 9110 date (``Sun, 06 Nov 1994 08:49:37 GMT``).

    Written out here: email.utils.formatdate builds a datetime and a timetuple on the
    way, a third of a small GET's app time."""
    t = time.gmtime(stamp)
    return "%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday],
        t.tm_mday,
        _MONTHS[t.tm_mon],
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def mtime_from(header: Optional[str]) -> Tuple[float, Optional[str]]:
    """The mtime to store for an upload's Last-Modified ``header`` (None: now), and a
    warning for the client when its date could not be read."""
    if header is None:
        return time.time(), None
    stamp = parse_http_date(header)
    if stamp is None:
        return time.time(), f"Last-Modified {header[:64]!r} is not a date; the file's time is the upload time"
    return stamp, None
