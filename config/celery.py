"""The Celery application, wired the canonical way (Celery's Django example).

Settings come from Django settings under the ``CELERY_`` namespace; tasks are discovered in
each installed app's ``tasks`` module. With no ``CELERY_BROKER_URL`` the settings make every
task run eagerly in-process, so the demo needs no broker.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("vadi")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
