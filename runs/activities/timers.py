"""Durable timers: ``ctx.activities.sleep(seconds)`` and ``ctx.activities.sleep_until(when)``.

The run waits with no worker held; a row (runs.models.Timer) remembers when it is due, so the wait
survives worker and database restarts, and the scheduler's timer loop answers it within a second of
its time. A timer that is already due answers at once; on replay and verify the record answers.
The node gets ``{"due_at", "woke_at"}`` (ISO 8601, UTC).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from runs.engine.errors import Suspend
from runs.engine.plugins import ActivityKind, Call
from runs.models import Timer

KIND = "timer"


def _arm(ctx: Any, seq: int, due: dt.datetime) -> Any:
    timer, _ = Timer.objects.get_or_create(run_id=ctx.run.run_id, step=ctx.step, seq=seq, defaults={"due_at": due})
    now = timezone.now()
    if timer.due_at <= now:
        return {"due_at": timer.due_at.isoformat(), "woke_at": now.isoformat()}
    raise Suspend(f"waiting until {timer.due_at:%Y-%m-%d %H:%M:%S} UTC (timer)")


def _sleep(ctx: Any, seq: int, seconds: float) -> Call:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise ValueError(f"sleep takes a number of seconds >= 0, not {seconds!r}")
    return Call(
        request={"seconds": seconds}, effect=lambda: _arm(ctx, seq, timezone.now() + dt.timedelta(seconds=seconds))
    )


def _sleep_until(ctx: Any, seq: int, when: dt.datetime | str) -> Call:
    due = dt.datetime.fromisoformat(when) if isinstance(when, str) else when
    if not isinstance(due, dt.datetime):
        raise ValueError(f"sleep_until takes a datetime or an ISO 8601 string, not {when!r}")
    if due.tzinfo is None:
        due = due.replace(tzinfo=dt.UTC)
    return Call(request={"until": due.astimezone(dt.UTC).isoformat()}, effect=lambda: _arm(ctx, seq, due))


KINDS = [
    ActivityKind(name=KIND, method="sleep", build=_sleep, answer=dict),
    ActivityKind(name=KIND, method="sleep_until", build=_sleep_until, answer=dict),
]
