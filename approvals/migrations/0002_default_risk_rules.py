"""Seed the default risk rules (approvals.risk.DEFAULT_RULES) and the deciding groups.

Rules that already exist by name are left as an admin edited them.
"""

from django.db import migrations


def seed(apps, schema_editor):
    from approvals.risk import DEFAULT_RULES

    RiskRule = apps.get_model("approvals", "RiskRule")
    Group = apps.get_model("auth", "Group")
    for rule in DEFAULT_RULES:
        RiskRule.objects.get_or_create(
            name=rule.name,
            defaults={
                "category": rule.category,
                "pattern": rule.pattern,
                "threshold": rule.threshold,
                "level": rule.level,
                "weight": rule.weight,
                "why": rule.why,
            },
        )
    for name in ("approver", "admin"):
        Group.objects.get_or_create(name=name)


def unseed(apps, schema_editor):
    from approvals.risk import DEFAULT_RULES

    RiskRule = apps.get_model("approvals", "RiskRule")
    RiskRule.objects.filter(name__in=[r.name for r in DEFAULT_RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(seed, unseed)]
