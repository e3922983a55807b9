from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        """Plug the approval activities and the policy engine into the engine (runs.engine.plugins)."""
        from approvals import activities

        activities.register()
