"""UTC times as the API writes and reads them: `2021-01-21T17:12:35Z`, fractions of a second where allowed."""
from __future__ import annotations

import calendar
import re
import time

_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z")


def iso_time(epoch_seconds: float) -> str:
    """UTC ISO 8601 to the second, ending in Z: `2021-01-21T17:12:35Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


def iso_time_ms(epoch_seconds: float | None = None) -> str:
    """UTC ISO 8601 to the millisecond: `2021-01-21T17:12:35.042Z` (now, if no time is given)."""
    moment = time.time() if epoch_seconds is None else epoch_seconds
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03d}Z"


def parse_utc(text: object, fractions: bool = True) -> float | None:
    """Seconds since the epoch of a UTC time like `2021-01-30T12:51:33Z` (`.123` fractions only if allowed),
    or None for anything else."""
    if not isinstance(text, str):
        return None
    found = _TIME.fullmatch(text)
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction = found.groups()
    if fraction and not fractions:
        return None
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31 and int(hour) <= 23 and int(minute) <= 59 and int(second) <= 60):
        return None
    moment = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second)))
    return moment + (float("0." + fraction) if fraction else 0.0)
