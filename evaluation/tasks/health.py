"""Health check task: proves that a broker, a worker and the database are connected."""

from __future__ import annotations

import socket

from celery import shared_task

from leaderboard.tasknames import HEALTH_CHECK_TASK


@shared_task(name=HEALTH_CHECK_TASK)
def health_check(token: str = "") -> dict:
    """Round-trip check: returns the worker's host name, echoes the token and touches the DB."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        (db_ok,) = cursor.fetchone()
    return {
        "ok": True,
        "token": token,
        "hostname": socket.gethostname(),
        "db": db_ok == 1,
        "db_vendor": connection.vendor,
    }
