"""Method names get their TR 39 comparison keys; job rows keep staff-only error detail.

Existing rows are brought in line: every method gets its keys (when two existing names look
alike, the older method keeps the folded key and the newer gets none, so the constraint can be
created: an admin should rename it, and its next save is refused until then); every error
message that holds internal detail (paths, setting names, tracebacks, exception classes) is
replaced by its public form, the original moving to ``error_detail``.
"""

from django.conf import settings
from django.db import migrations, models


def method_keys_fill(apps, schema_editor):
    from leaderboard.names import MethodNameError, method_name_keys

    Method = apps.get_model("leaderboard", "Method")
    taken: set[str] = set()
    for method in Method.objects.order_by("pk"):
        try:
            folded, cased = method_name_keys(method.name)
        except MethodNameError:
            folded, cased = "", ""
        if folded in taken:
            folded = ""
        taken.add(folded)
        Method.objects.filter(pk=method.pk).update(name_skeleton=folded, name_skeleton_cased=cased)


def error_messages_make_public(apps, schema_editor):
    from leaderboard.failures import failure_from_text

    for model in ("Submission", "BenchmarkRun", "BenchmarkJob"):
        rows = apps.get_model("leaderboard", model).objects.exclude(error_message="")
        for pk, message, detail in rows.values_list("pk", "error_message", "error_detail"):
            failure = failure_from_text(message, detail=detail)
            if failure.message != message:
                rows.filter(pk=pk).update(error_message=failure.message, error_detail=failure.detail)


class Migration(migrations.Migration):

    dependencies = [
        ('leaderboard', '0002_method_algorithm_info'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='benchmarkjob',
            name='error_detail',
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name='benchmarkrun',
            name='error_detail',
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name='method',
            name='name_skeleton',
            field=models.TextField(blank=True, default='', editable=False),
        ),
        migrations.AddField(
            model_name='method',
            name='name_skeleton_cased',
            field=models.TextField(blank=True, db_index=True, default='', editable=False),
        ),
        migrations.AddField(
            model_name='submission',
            name='error_detail',
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(method_keys_fill, migrations.RunPython.noop),
        migrations.RunPython(error_messages_make_public, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='method',
            constraint=models.UniqueConstraint(condition=models.Q(('name_skeleton', ''), _negated=True), fields=('name_skeleton',), name='method_unique_name_skeleton'),
        ),
    ]
