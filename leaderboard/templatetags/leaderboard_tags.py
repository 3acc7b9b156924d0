"""Template helpers: number formatting, query-string links, dictionary look-ups."""

from __future__ import annotations

import re

from django import template
from django.http import QueryDict

register = template.Library()


@register.filter
def fmt(value, digits: int = 3) -> str:
    """A metric value with ``digits`` decimals; an en dash for a missing value."""
    if value is None or value == "":
        return "–"
    return f"{float(value):.{int(digits)}f}"


@register.filter
def pct(value) -> str:
    if value is None:
        return "–"
    return f"{100.0 * float(value):.0f}%"


@register.filter
def get(mapping, key):
    """``mapping[key]`` or ``None`` (for dicts keyed by metric or id)."""
    if mapping is None:
        return None
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.simple_tag
def query(params: QueryDict | None, **changes) -> str:
    """The current query string with ``changes`` applied (``None``/empty removes a key); starts with ``?``."""
    q = params.copy() if params is not None else QueryDict(mutable=True)
    q._mutable = True
    for key, value in changes.items():
        if value is None or value == "":
            q.pop(key, None)
        else:
            q[key] = value
    encoded = q.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.filter
def seconds(value) -> str:
    """A duration in seconds, readable: 0.012 s, 3.4 s, 2 min 5 s, 1 h 3 min."""
    if value is None or value == "":
        return "–"
    s = float(value)
    if s < 10:
        return f"{s:.3g} s"
    if s < 120:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int((s % 3600) // 60)} min"


@register.filter
def params(value) -> str:
    """A parameter count, readable: 950, 12.3 k, 4.56 M, 1.2 G; an en dash when missing."""
    if value is None or value == "":
        return "–"
    n = float(value)
    for threshold, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if n >= threshold:
            return f"{n / threshold:.3g}{suffix}"
    return f"{n:.0f}"


@register.filter
def megabytes(value) -> str:
    """A memory size in MiB, rounded: 812 MiB, 1.3 GiB; an en dash when missing."""
    if value is None or value == "":
        return "–"
    mb = float(value)
    return f"{mb / 1024:.3g} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


@register.filter
def ms(value) -> str:
    """Seconds shown in milliseconds: 0.0123 -> '12.3 ms'; an en dash when missing."""
    if value is None or value == "":
        return "–"
    ms = 1000.0 * float(value)
    return f"{ms:.3g} ms" if ms < 100 else f"{ms:,.0f} ms"


@register.filter
def anchor(value) -> str:
    """A category key as an HTML id fragment: ``synthetic/grid`` -> ``synthetic-grid``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(value)).strip("-")
