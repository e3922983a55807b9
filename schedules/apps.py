from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "schedules"
    verbose_name = "Schedules"

    def ready(self) -> None:
        """Have the scheduler's tick fire due schedule slots and its sweep prune old fires."""
        from runs.scheduler import register_sweep_task, register_tick_task
        from schedules.services import fires_prune, schedules_fire_due

        register_tick_task("schedules", schedules_fire_due)
        register_sweep_task("schedule_fires_pruned", fires_prune)
