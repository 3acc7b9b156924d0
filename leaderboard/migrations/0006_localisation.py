"""Localisation: what PL decided, anomaly by anomaly, for one PL result (issue 14, PL explained)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("leaderboard", "0005_submission_dispatch_quota_exempt"),
    ]

    operations = [
        migrations.CreateModel(
            name="Localisation",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("iou_limit", models.FloatField()),
                ("threshold", models.FloatField()),
                ("threshold_index", models.PositiveSmallIntegerField()),
                ("thresholds", models.JSONField(blank=True, default=list)),
                ("size", models.PositiveIntegerField(default=256)),
                ("seed", models.IntegerField(blank=True, null=True)),
                ("anomalies", models.JSONField(blank=True, default=list)),
                ("defect_summary", models.JSONField(blank=True, default=dict)),
                ("n_anomalies", models.PositiveIntegerField(default=0)),
                ("n_localised", models.PositiveIntegerField(default=0)),
                ("predictions", models.CharField(blank=True, max_length=500)),
                (
                    "result",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="localisation",
                        to="leaderboard.result",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("n_localised__lte", models.F("n_anomalies"))),
                        name="localisation_counts",
                    )
                ],
            },
        ),
    ]
