"""``ctx.activities.wait_for_signal(name, schema=None)``: wait (no worker held) for a signal sent from outside.

Signals come from ``POST /api/runs/{id}/signals/{name}``, the run page or ``manage.py signal_run``
(runs.services.signals.signal_send). A signal sent before the run waits for it is kept and delivered
then, oldest first; ``schema`` (a JSON Schema) is checked when a signal is delivered, and a signal
that does not match is refused (API: 422) or, if it was kept, left undelivered with an event saying why.
"""

from __future__ import annotations

from typing import Any

from runs.engine.errors import Suspend
from runs.engine.plugins import ActivityKind, Call
from runs.services.signals import SIGNAL, signal_deliver_kept, signal_take


def _build(ctx: Any, seq: int, name: str, schema: dict[str, Any] | None = None) -> Call:
    request: dict[str, Any] = {"name": name}
    if schema is not None:
        request["schema"] = schema
    run_id = ctx.run.run_id

    def effect() -> Any:
        found, payload = signal_take(run_id=run_id, name=name, schema=schema)
        if not found:  # one sent meanwhile (before the wait was recorded) is delivered once it is
            raise Suspend(f"waiting for signal {name!r}", after_record=lambda: signal_deliver_kept(run_id=run_id))
        return payload

    return Call(request=request, effect=effect)


KINDS = [ActivityKind(name=SIGNAL, method="wait_for_signal", build=_build)]
