"""The specialist registry: who nodes may call."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from cmo_site.shared.permissions import ADMIN
from runs.engine.errors import CMOError
from runs.engine.specialists import SPECIALISTS
from runs.models import Specialist
from runs.services.audit import audit_record

log = logging.getLogger(__name__)


def specialist_refusal(name: str) -> str:
    """Why ``name`` may not be called, or "" if it may. Unknown in-process specialists are allowed
    until synced; a row that says unregistered or disabled wins."""
    row = Specialist.objects.filter(name=name).values("registered", "enabled", "transport", "last_heartbeat_at").first()
    if row is None:
        return "" if name in SPECIALISTS else f"specialist {name!r} is not registered"
    if not row["registered"]:
        return f"specialist {name!r} is not registered"
    if not row["enabled"]:
        return f"specialist {name!r} is disabled"
    if row["transport"] != Specialist.TRANSPORT_INPROCESS and specialist_status(row["last_heartbeat_at"]) == "offline":
        return f"specialist {name!r} is offline (no heartbeat for {OFFLINE_AFTER_SECONDS} s)"
    return ""


STALE_AFTER_SECONDS = 30
OFFLINE_AFTER_SECONDS = 120


def specialist_status(last_heartbeat_at: dt.datetime | None) -> str:
    """online, stale or offline, from the age of the last heartbeat."""
    if last_heartbeat_at is None:
        return "offline"
    age = (timezone.now() - last_heartbeat_at).total_seconds()
    return "online" if age < STALE_AFTER_SECONDS else "stale" if age < OFFLINE_AFTER_SECONDS else "offline"


def specialist_sync_inprocess() -> list[Specialist]:
    """Create rows for in-process specialists (keeping an admin's registered/enabled choice).

    A specialist that a ``run_specialist`` process registered on Redis Streams keeps that transport.
    """
    rows = []
    for spec in SPECIALISTS.values():
        row, created = Specialist.objects.get_or_create(
            name=spec.name,
            defaults={
                "version": spec.version,
                "capabilities": spec.capabilities,
                "transport": Specialist.TRANSPORT_INPROCESS,
                "address": "in-process",
                "last_heartbeat_at": timezone.now(),
            },
        )
        if not created and row.transport == Specialist.TRANSPORT_INPROCESS:
            Specialist.objects.filter(pk=row.pk).update(
                version=spec.version, capabilities=spec.capabilities, last_heartbeat_at=timezone.now()
            )
        rows.append(row)
    return rows


class SpecialistChangeRefused(CMOError):
    """The caller may not register (or heartbeat) this specialist; the message names who may."""

    status, code = 403, "forbidden"


@dataclass(frozen=True)
class RegistryCaller:
    """Who changes the registry over the API: the user, their role, and the name their token is bound to."""

    user: AbstractBaseUser
    role: str
    bound_to: str = ""
    via: str = "session"


def specialist_change_refusal(*, name: str, row: Specialist | None, caller: RegistryCaller | None) -> str:
    """Why ``caller`` may not register or heartbeat ``name``, or "" if they may.

    Calls are routed by name, and the policies trust the name (selector history is the healer's),
    so a name is not for anyone to take over: an admin may change any specialist; a token bound to
    a name may change that one (and no other); anyone else who may manage specialists may register a
    new name, and then only change the ones they registered. The command line (no caller) is trusted.
    """
    if caller is None or caller.role == ADMIN:
        return ""
    if caller.bound_to:
        return "" if caller.bound_to == name else f"this token is bound to specialist {caller.bound_to!r}, not {name!r}"
    if row is None or (row.owner_id is not None and row.owner_id == caller.user.pk):
        return ""
    who = row.owner.get_username() if row.owner is not None else "this installation"
    return (
        f"specialist {name!r} is registered by {who}: only an admin or a token bound to {name!r} may change it "
        f"(api_token create --role specialist --specialist {name})"
    )


def specialist_register(
    *,
    name: str,
    version: str,
    capabilities: list[str],
    transport: str,
    address: str,
    caller: RegistryCaller | None = None,
) -> Specialist:
    """A specialist process announces itself (and then heartbeats with specialist_heartbeat).

    ``caller`` is who asks over the API (None: the command line or a process with database access);
    SpecialistChangeRefused unless they may (see specialist_change_refusal). A change of what the
    row says (transport, address, version, capabilities) is recorded in the audit log.
    """
    with transaction.atomic():
        row = Specialist.objects.select_for_update(of=("self",)).select_related("owner").filter(name=name).first()
        refusal = specialist_change_refusal(name=name, row=row, caller=caller)
        if refusal:
            raise SpecialistChangeRefused(refusal)
        after = {"version": version, "capabilities": capabilities, "transport": transport, "address": address}
        before = {key: getattr(row, key) for key in after} if row is not None else None
        if row is None:
            row = Specialist.objects.create(  # type: ignore[misc]
                name=name, owner=caller.user if caller else None, last_heartbeat_at=timezone.now(), **after
            )
        else:
            for key, value in after.items():
                setattr(row, key, value)
            row.last_heartbeat_at = timezone.now()
            row.save(update_fields=[*after, "last_heartbeat_at", "updated_at"])
        if before != after:
            audit_record(
                actor=caller.user.get_username() if caller else "",
                action="specialist_registered",
                target=f"specialist:{name}",
                detail={"before": before, "after": after, "via": caller.via if caller else "command line"},
            )
    return row


def specialist_heartbeat(*, name: str, caller: RegistryCaller | None = None) -> bool:
    """Mark ``name`` alive; False if it is not registered. SpecialistChangeRefused for a caller who may not
    change it (a heartbeat keeps a specialist "online", so calls keep going to its stream)."""
    row = Specialist.objects.select_related("owner").filter(name=name).first()
    if row is None:
        return False
    refusal = specialist_change_refusal(name=name, row=row, caller=caller)
    if refusal:
        raise SpecialistChangeRefused(refusal)
    return Specialist.objects.filter(name=name).update(last_heartbeat_at=timezone.now()) == 1


def specialist_set_registered(*, names: list[str], registered: bool) -> int:
    return Specialist.objects.filter(name__in=names).update(registered=registered, updated_at=timezone.now())


def _streams() -> Any:
    """The Redis Streams transport, or None in the embedded mode (no REDIS_URL)."""
    if not settings.REDIS_URL:
        return None
    from runs.specialists.a2a import transport

    return transport()


def specialist_stream_stats(*, names: list[str]) -> dict[str, dict[str, int]]:
    """Depth, unacknowledged, in flight, held over the cap and DLQ size per Redis specialist (admin, metrics).

    Specialists without a stream are left out; so is everything when Redis is unreachable.
    """
    streams = _streams()
    if streams is None:
        return {}
    remote = Specialist.objects.filter(name__in=names, transport=Specialist.TRANSPORT_REDIS).values_list(
        "name", flat=True
    )
    try:
        return {name: streams.stats(name) for name in remote}
    except redis.RedisError as exc:
        log.warning("could not read stream stats: %s", exc)
        return {}


def specialist_dead_letters(*, name: str, count: int = 200) -> list[dict[str, Any]]:
    """The specialist's dead letters, oldest first, with the reason each was dead-lettered."""
    streams = _streams()
    if streams is None:
        return []
    letters = streams.dead_letters(name, count=count)
    for letter in letters:
        try:
            letter["envelope"] = json.loads(letter.get("body", ""))
        except json.JSONDecodeError:
            letter["envelope"] = None
    return letters


def specialist_redrive(*, name: str, ids: list[str]) -> int:
    """Publish dead letters to the specialist's stream again (after a fix); returns how many moved."""
    streams = _streams()
    if streams is None:
        return 0
    moved = 0
    for dlq_id in ids:
        try:
            streams.redrive(name, dlq_id)
            moved += 1
        except KeyError:
            continue  # already re-driven (another admin, a double submit)
    return moved


def specialist_caps() -> list[dict[str, Any]]:
    """Capped Redis specialists with their invocations in flight and held (runs waiting on the cap)."""
    capped = dict(
        Specialist.objects.filter(transport=Specialist.TRANSPORT_REDIS, max_in_flight__isnull=False).values_list(
            "name", "max_in_flight"
        )
    )
    stats = specialist_stream_stats(names=list(capped))
    return [
        {"name": name, "cap": cap, "in_flight": stats[name]["in_flight"], "held": stats[name]["held"]}
        for name, cap in sorted(capped.items())
        if name in stats
    ]
