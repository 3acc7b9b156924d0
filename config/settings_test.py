"""Settings for the test suite: the base settings plus speed-ups.

The database comes from ``DATABASE_URL`` as usual (PostgreSQL in CI, SQLite by default).
Tasks run eagerly unless a test asks for the real worker (see the ``celery_worker`` fixture
in ``conftest.py``), which is started only when ``CELERY_BROKER_URL`` is set.
"""

from .settings import *  # noqa: F403
from .settings import CELERY_BROKER_URL

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = CELERY_BROKER_URL or None
# The admin's re-benchmark form dispatches eager tasks from a thread; its own test turns it on.
VADI_ADMIN_BACKGROUND_DISPATCH = False
VADI_CATALOG_ON_MIGRATE = False  # tests build the catalog they need (a test covers migrate's own)
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "vadi-test"}}
