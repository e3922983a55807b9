"""When a schedule's slots fall: a cron expression in a time zone (cronsim, the parser healthchecks uses) or a
fixed interval aligned to the Unix epoch, and each slot's deterministic jitter. Pure functions of the fields."""

from __future__ import annotations

import datetime as dt
import hashlib
import zoneinfo
from collections.abc import Iterator

from cronsim import CronSim, CronSimError

MIN_INTERVAL_SECONDS = 1
MAX_INTERVAL_SECONDS = 366 * 86400
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TINY = dt.timedelta(microseconds=1)


class TimingError(ValueError):
    """The timing fields do not describe a schedule; ``field`` names the one at fault."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise TimingError("timezone", f"unknown time zone {name!r} (an IANA name such as 'Europe/Berlin')") from None


def check(*, cron: str, interval_seconds: int | None, timezone: str) -> None:
    """Raise TimingError unless exactly one of ``cron`` and ``interval_seconds`` is set, and valid."""
    zone(timezone)
    if bool(cron) == (interval_seconds is not None):
        raise TimingError("cron", "give either a cron expression or an interval in seconds, not both or neither")
    if cron:
        try:
            CronSim(cron, dt.datetime.now(zone(timezone)))
        except CronSimError as exc:
            raise TimingError("cron", f"not a cron expression {cron!r}: {exc}") from None
        return
    assert interval_seconds is not None
    if not MIN_INTERVAL_SECONDS <= interval_seconds <= MAX_INTERVAL_SECONDS:
        raise TimingError(
            "interval_seconds", f"an interval is {MIN_INTERVAL_SECONDS} to {MAX_INTERVAL_SECONDS} seconds"
        )


def slots_from(*, cron: str, interval_seconds: int | None, timezone: str, start: dt.datetime) -> Iterator[dt.datetime]:
    """The slots at or after ``start``, in order, as UTC datetimes (an endless iterator)."""
    if interval_seconds:
        step = dt.timedelta(seconds=interval_seconds)
        periods = -((EPOCH - start) // step)  # ceil((start - EPOCH) / step)
        slot = EPOCH + periods * step
        while True:
            yield slot
            slot += step
    for moment in CronSim(cron, (start - _TINY).astimezone(zone(timezone))):
        yield moment.astimezone(dt.UTC)


def jitter(*, key: str, slot: dt.datetime, seconds: int) -> dt.timedelta:
    """A slot's delay in [0, seconds], the same for every scheduler (a hash of the schedule and the slot)."""
    if seconds <= 0:
        return dt.timedelta(0)
    digest = hashlib.sha256(f"{key}|{slot.isoformat()}".encode()).digest()
    return dt.timedelta(milliseconds=int.from_bytes(digest[:8], "big") % (seconds * 1000 + 1))
