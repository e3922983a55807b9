"""``ctx.activities.request_approval(action, preview)`` and ``require_approval``: a human decision, recorded.

``action`` describes what the node is about to do: ``files``, ``commands``, ``code``, ``api_calls``
(lists) and ``amount``. The risk engine (``approvals.risk``, rules in admin) scores it. Low risk is
auto-approved at once: ``{"approved": True, "auto": True, ...}``. Otherwise an ApprovalRequest
waits and the run suspends (WAITING, no worker held) until an approver decides or it expires
(critical/high 4 h, medium 8 h, low 24 h; ``CMO_APPROVAL_EXPIRY_HOURS``). The step then
re-executes, earlier activities return their records, and the call returns ``{"approved": True,
"by": user, "reason": ...}`` or, on rejection or expiry, ``{"approved": False, "reason": ...}``: a
decision the node may route on with an edge.

``require_approval`` is the same call, but a rejection or expiry raises
ActivityError("request_approval", "rejected: <reason>"), so the run fails with the reason. While a
request waits, either call raises the engine's Suspend signal (a BaseException): never catch it; a
node that wants to act on a rejection routes on ``request_approval``'s answer instead.
"""

from __future__ import annotations

from typing import Any

from approvals.policy import PolicyEngine
from approvals.services import approval_activity_effect
from runs.engine.errors import ActivityError
from runs.engine.plugins import PLUGINS, ActivityKind, Call

KIND = "request_approval"


def _build(ctx: Any, seq: int, action: dict[str, Any], preview: str = "") -> Call:
    def effect() -> Any:
        return approval_activity_effect(
            run_id=ctx.run.run_id, step=ctx.step, seq=seq, node=ctx.node, action=action, preview=preview
        )

    return Call(request={"action": action, "preview": preview}, effect=effect)


def _required(decision: Any) -> dict[str, Any]:
    if not decision.get("approved"):
        raise ActivityError(KIND, f"rejected: {decision.get('reason') or 'no reason given'}")
    return dict(decision)


def register() -> None:
    """The two activities and the Rego policy engine (approvals.policy), for every executor a worker makes."""
    PLUGINS.register_activity(ActivityKind(name=KIND, method="request_approval", build=_build, answer=dict))
    PLUGINS.register_activity(ActivityKind(name=KIND, method="require_approval", build=_build, answer=_required))
    PLUGINS.register_policy(PolicyEngine)
