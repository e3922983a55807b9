import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("runs", "0012_composition"),
    ]

    operations = [
        migrations.CreateModel(
            name="Schedule",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.SlugField(max_length=100, unique=True)),
                ("description", models.CharField(blank=True, max_length=500)),
                ("graph_name", models.CharField(max_length=100)),
                ("version", models.PositiveIntegerField(blank=True, help_text="empty: the latest version at each slot", null=True)),
                ("input", models.JSONField(blank=True, default=dict)),
                ("cron", models.CharField(blank=True, help_text='e.g. "*/15 * * * *"; or an interval', max_length=200)),
                ("interval_seconds", models.PositiveIntegerField(blank=True, null=True)),
                ("timezone", models.CharField(default="UTC", max_length=64)),
                ("jitter_seconds", models.PositiveIntegerField(default=0)),
                ("overlap", models.CharField(choices=[("skip", "skip the slot while a run of the schedule is active"), ("buffer_one", "start one buffered run when the active one ends"), ("allow_all", "start every slot's run"), ("cancel_other", "abort the active run and start the new one")], default="skip", max_length=20)),
                ("catchup", models.CharField(choices=[("all", "fire every missed slot within the window, once each"), ("latest", "fire only the latest missed slot within the window")], default="all", max_length=10)),
                ("catchup_window_seconds", models.PositiveIntegerField(default=60)),
                ("paused", models.BooleanField(default=False)),
                ("note", models.CharField(blank=True, help_text="why it was paused, by whom", max_length=500)),
                ("owner_role", models.CharField(blank=True, help_text="the role its runs execute with", max_length=20)),
                ("next_slot_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("owner", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "ordering": ["name"],
                "indexes": [models.Index(fields=["paused", "next_slot_at"], name="schedule_due")],
            },
        ),
        migrations.CreateModel(
            name="ScheduleFire",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("slot", models.DateTimeField()),
                ("kind", models.CharField(choices=[("slot", "slot"), ("trigger", "triggered now"), ("backfill", "backfill")], default="slot", max_length=10)),
                ("outcome", models.CharField(choices=[("started", "started"), ("skipped", "skipped"), ("buffered", "buffered"), ("failed", "failed"), ("missed", "missed")], max_length=10)),
                ("actor", models.CharField(blank=True, help_text="who the run runs as", max_length=150)),
                ("reason", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("run", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="runs.run")),
                ("schedule", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="fires", to="schedules.schedule")),
            ],
            options={
                "ordering": ["-slot"],
                "indexes": [models.Index(fields=["outcome", "schedule"], name="schedulefire_outcome")],
                "constraints": [models.UniqueConstraint(fields=("schedule", "slot"), name="one_fire_per_slot")],
            },
        ),
    ]
