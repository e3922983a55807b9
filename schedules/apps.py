from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "schedules"
    verbose_name = "Schedules"

    def ready(self) -> None:
        """Have the scheduler's tick fire due schedule slots (runs.scheduler.register_tick_task)."""
        from runs.scheduler import register_tick_task
        from schedules.services import schedules_fire_due

        register_tick_task("schedules", schedules_fire_due)
