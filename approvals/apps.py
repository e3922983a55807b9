from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        """Plug the approval activities and the policy engine into the engine (runs.engine.plugins); have the
        scheduler expire pending requests, retention delete a run's requests with it, and the dashboard count them."""
        from approvals import activities
        from approvals.models import ApprovalRequest
        from approvals.selectors import pending_count
        from approvals.services import approval_expire_due
        from runs.retention import Dependent, register_dependent
        from runs.scheduler import register_sweep_task
        from runs.selectors import register_count, register_wait_link

        activities.register()
        register_sweep_task("approvals_expired", approval_expire_due)
        register_dependent(Dependent(key="approvals", model=ApprovalRequest))
        register_count("approvals_waiting", pending_count)
        register_wait_link(activities.KIND, _approval_link)


def _approval_link(run_id: int, step: int, seq: int) -> dict[str, str] | None:
    """A run waiting for an approval links to the request's page."""
    from django.urls import reverse

    from approvals.models import ApprovalRequest

    pk = ApprovalRequest.objects.filter(run_id=run_id, step=step, seq=seq).values_list("pk", flat=True).first()
    return {"label": f"approval #{pk}", "url": reverse("approvals:detail", args=[pk])} if pk else None
