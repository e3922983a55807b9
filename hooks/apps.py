from django.apps import AppConfig


class HooksConfig(AppConfig):
    name = "hooks"
    verbose_name = "Webhook triggers"

    def ready(self) -> None:
        """Have the scheduler's sweep prune old audit rows."""
        from hooks.services import audit_prune
        from runs.scheduler import register_sweep_task

        register_sweep_task("hook_audit_pruned", audit_prune)
