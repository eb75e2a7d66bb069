"""ISO 8601 durations (``PT1H``, ``P1D``, ``P1DT12H30M``), as ``diskLifetime`` gives them."""

import re

from pyai.errors import BadRequest

# Years and months have no fixed length: taken as 365 and 30 days, as dCache does.
_DURATION = re.compile(
    r"P(?:(?P<Y>\d+)Y)?(?:(?P<M>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:[.,]\d+)?)S)?)?"
)
_SECONDS = {"Y": 365 * 86400, "M": 30 * 86400, "W": 7 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: object) -> float:
    """Seconds (a float) of an ISO 8601 duration; BadRequest when ``text`` is not one."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) and len(text) <= 64 else None
    # match.string: the text, known there to be a str
    if match is None or not any(match.groupdict().values()) or match.string.endswith("T"):
        raise BadRequest(
            f"diskLifetime must be an ISO 8601 duration such as PT1H or P1D, not {str(text)[:40]!r}",
            detail="bad diskLifetime",
        )
    return sum(float(value.replace(",", ".")) * _SECONDS[unit] for unit, value in match.groupdict().items() if value)
