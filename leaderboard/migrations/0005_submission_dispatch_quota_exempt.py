"""Submission.dispatched_at (when its scoring task was last sent) and quota_exempt (our failure, not counted)."""

from django.db import migrations, models
from django.db.models import F, Q


def carry_over(apps, schema_editor):
    """Existing submissions were sent when created; failures not blamed on the bundle stay uncounted."""
    Submission = apps.get_model("leaderboard", "Submission")
    Submission.objects.filter(dispatched_at__isnull=True).update(dispatched_at=F("created_at"))
    Submission.objects.filter(Q(status="failed") & ~Q(error_message__startswith="Invalid bundle: ")).update(
        quota_exempt=True
    )


class Migration(migrations.Migration):
    dependencies = [
        ("leaderboard", "0004_benchmarkjob_dispatched_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="submission",
            name="dispatched_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.AddField(
            model_name="submission",
            name="quota_exempt",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(carry_over, migrations.RunPython.noop),
    ]
