"""Caching of the public tables and pages, in one place: the generation, the keys, the page cache.

Every cached value is keyed under the current *generation*; every write that changes a table
bumps it (:func:`leaderboard_cache_invalidate`, called by the services), so a stale table is
never served after a write. With a shared cache (Redis, Memcached) a write anywhere bumps the
generation that every process reads. With a process-local cache (local memory, as in the demo
and the tests) a write made by another process (a Celery worker, a management command) cannot
bump this process's generation, so the key also carries :func:`data_stamp`, a fingerprint of
the rows that tables depend on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.cache import cache, caches
from django.db import transaction
from django.db.models import Count, Max, Subquery
from django.http import HttpResponse

from .models import Result, Submission

#: Cache key whose value names the current generation of every cached table.
CACHE_GENERATION_KEY = "leaderboard:generation"
#: How long a cached table lives even if nothing invalidates it (writes invalidate it at once).
CACHE_TIMEOUT_S = 60 * 60


def leaderboard_cache_invalidate() -> None:
    """Move cached tables to a new generation, now and again when the transaction commits.

    Bumping now makes the writer's own later reads fresh; bumping after commit drops anything
    that a concurrent reader cached from the pre-commit state in between.
    """

    def bump() -> None:
        try:
            cache.incr(CACHE_GENERATION_KEY)
        except ValueError:  # not set yet (or evicted): any new value differs from what readers saw
            cache.set(CACHE_GENERATION_KEY, time.time_ns(), timeout=None)

    bump()
    transaction.on_commit(bump)


def cache_generation() -> int:
    """The current cache generation (bumped by every write that changes a table)."""
    value = cache.get(CACHE_GENERATION_KEY)
    if value is None:
        cache.add(CACHE_GENERATION_KEY, 1, timeout=None)
        value = cache.get(CACHE_GENERATION_KEY, 1)
    return int(value)


def cache_is_process_local() -> bool:
    """True for a cache that other processes cannot see (local memory, dummy)."""
    return type(caches["default"]).__name__ in ("LocMemCache", "DummyCache")


def data_stamp() -> str:
    """A fingerprint of the rows that tables depend on (one aggregate query).

    Used only with a process-local cache: a write made by another process cannot bump this
    process's generation, but it changes this stamp. ``results_publish`` touches ``updated_at``
    of every row whose currency it changes.
    """
    latest_submission = Submission.objects.order_by("-updated_at").values("updated_at")[:1]
    row = Result.objects.aggregate(t=Max("updated_at"), n=Count("id"), s=Max(Subquery(latest_submission)))
    return f"{row['t']}|{row['n']}|{row['s']}"


def cache_key(name: str, **kwargs: Any) -> str:
    """The cache key of ``name`` with ``kwargs`` under the current generation (and data stamp)."""
    parts = [f"{k}={kwargs[k]}" for k in sorted(kwargs)]
    stamp = data_stamp() if cache_is_process_local() else ""
    raw = f"{cache_generation()}:{stamp}:{name}:" + "&".join(parts)
    return "leaderboard:" + hashlib.sha256(raw.encode()).hexdigest()


def cached(name: str, builder: Callable[..., Any], **kwargs: Any) -> Any:
    """``builder(**kwargs)``, cached under :func:`cache_key` (invalidated by every write)."""
    key = cache_key(name, **kwargs)
    value = cache.get(key)
    if value is None:
        value = builder(**kwargs)
        cache.set(key, value, timeout=CACHE_TIMEOUT_S)
    return value


def cached_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Serve a public page from the cache while no write has changed the tables.

    The pages wrapped here show nothing user-specific, so one copy per URL (path + query string)
    serves everyone; the key follows the same generation and data stamp as the tables', so a new
    result shows at once. Only successful answers are cached.
    """

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        key = cache_key("page", path=request.path, query=request.GET.urlencode())
        hit = cache.get(key)
        if hit is not None:
            content, headers = hit
            response = HttpResponse(content)
            for name, value in headers.items():
                response[name] = value
            return response
        response = view(request, *args, **kwargs)
        if response.status_code == 200 and not response.streaming:
            headers = {k: v for k, v in response.items() if k in ("Content-Type", "Content-Disposition")}
            cache.set(key, (response.content, headers), timeout=CACHE_TIMEOUT_S)
        return response

    return wrapper
