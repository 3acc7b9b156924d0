"""BenchmarkJob.dispatched_at: when the job's task was last sent to the broker (null: waiting for its turn)."""

from django.db import migrations, models
from django.db.models import F


def mark_existing_jobs_dispatched(apps, schema_editor):
    """Jobs created before fair dispatch were all enqueued when they were created: say so."""
    BenchmarkJob = apps.get_model("leaderboard", "BenchmarkJob")
    BenchmarkJob.objects.filter(dispatched_at__isnull=True).update(dispatched_at=F("created_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("leaderboard", "0003_method_name_keys_job_error_detail"),
    ]

    operations = [
        migrations.AddField(
            model_name="benchmarkjob",
            name="dispatched_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.RunPython(mark_existing_jobs_dispatched, migrations.RunPython.noop),
    ]
