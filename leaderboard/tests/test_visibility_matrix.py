"""Every URL pattern of the site and the API, for every role: nothing private reaches who may not see it.

The test walks Django's URL resolver. Each pattern outside the admin must have a case in
``CASES`` (the URLs that exercise it, with every hidden object's id or key, the downloads and
the filters); a new route without one fails ``test_every_route_has_a_case``. Admin patterns get
their URLs generically from the model each one serves. The world (``privacy.build_world``) holds
private, held, rejected, failed and queued submissions, unpublished and failed runs, a method
without results and published ones, all written through the services; every response body is
searched for the markers of what its role may not see (names, keys, usernames, tokens, error
texts, internal paths, values as printed). Hidden objects answer 404, never 403 (no existence
leak); signed-in users' answers are ``Cache-Control: no-store, private``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from leaderboard.models import Method, Result, Submission

from .conftest import METRICS
from .privacy import World, build_world

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "owner", "other", "staff")
ROLE_USER = {"owner": "alice", "other": "carol", "staff": "staff"}


def url_patterns() -> list[tuple[str, URLPattern]]:
    """``(route, pattern)`` of every endpoint: the resolver walked, prefixes joined."""
    found: list[tuple[str, URLPattern]] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                found.append((prefix + str(pattern.pattern), pattern))

    walk(get_resolver().url_patterns, "")
    return found


# The cases: route -> URLs (GET) or ("POST", url, data) for a world ----------------------------


def _every(world: World, kind: str) -> list:
    return list(getattr(world, kind).values())


def _method_urls(world: World, template: str, *suffixes: str) -> list[str]:
    return [template.format(m.key) + s for m in _every(world, "methods") for s in ("", *suffixes)]


def _pl_results() -> list[int]:
    return list(Result.objects.filter(metric="pl").order_by("pk").values_list("pk", flat=True))


def _downloads(url: str) -> list[str]:
    sep = "&" if "?" in url else "?"
    return [url, f"{url}{sep}format=csv", f"{url}{sep}format=json"]


def _hidden_name_uploads(world: World, url: str, field: str) -> list:
    """Uploads whose method name looks like each hidden method's: the refusal must not name it."""
    posts = []
    for method in _every(world, "methods"):
        look_alike = method.name.replace("o", "\u043e").upper()  # Cyrillic o, other case
        posts.append(("POST", url, {field: look_alike, "suite": "vadi", "visibility": "public"}))
    return posts


#: django-allauth's pages (sign-in, sign-up, e-mail, password, social): one URL each.
ALLAUTH_PAGES = {
    "accounts/login/": "/accounts/login/",
    "accounts/logout/": "/accounts/logout/",
    "accounts/inactive/": "/accounts/inactive/",
    "accounts/signup/": "/accounts/signup/",
    "accounts/reauthenticate/": "/accounts/reauthenticate/",
    "accounts/reauthenticate/code/": "/accounts/reauthenticate/code/",
    "accounts/reauthenticate/code/confirm/": "/accounts/reauthenticate/code/confirm/",
    "accounts/email/": "/accounts/email/",
    "accounts/confirm-email/": "/accounts/confirm-email/",
    "accounts/^confirm-email/(?P<key>[-:\\w]+)/$": "/accounts/confirm-email/zq-no-such-key/",
    "accounts/password/change/": "/accounts/password/change/",
    "accounts/password/set/": "/accounts/password/set/",
    "accounts/password/reset/": "/accounts/password/reset/",
    "accounts/password/reset/done/": "/accounts/password/reset/done/",
    "accounts/password/reset/key/done/": "/accounts/password/reset/key/done/",
    "accounts/^password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$": "/accounts/password/reset/key/1-zq/",
    "accounts/login/code/confirm/": "/accounts/login/code/confirm/",
    "accounts/3rdparty/": "/accounts/3rdparty/",
    "accounts/3rdparty/login/cancelled/": "/accounts/3rdparty/login/cancelled/",
    "accounts/3rdparty/login/error/": "/accounts/3rdparty/login/error/",
    "accounts/3rdparty/signup/": "/accounts/3rdparty/signup/",
    "accounts/social/connections/": "/accounts/social/connections/",
    "accounts/social/login/cancelled/": "/accounts/social/login/cancelled/",
    "accounts/social/login/error/": "/accounts/social/login/error/",
    "accounts/social/signup/": "/accounts/social/signup/",
}


def _fixed(url: str) -> Callable[[World], list]:
    return lambda world: [url]


CASES: dict[str, Callable[[World], list]] = {
    # Pages
    "": lambda w: [
        *_downloads("/"),
        *_downloads("/?suite=vadi&sort=image_auroc"),
        "/?suite=synthetic",
        "/?provenance=server_scored",
        "/?provenance=reproduced&dataset=visa",
        "/?evaluator=test-eval",
    ],
    "datasets/<slug:key>/": lambda w: [*_downloads("/datasets/mvtec/"), *_downloads("/datasets/visa/?sort=pl")],
    "blind/": lambda w: _downloads("/blind/"),
    "blind/<slug:name>/<slug:split>.zip": lambda w: ["/blind/woven/test.zip", "/blind/woven/train.zip"],
    "suites/<slug:suite>/categories/": lambda w: (
        [u for m in METRICS for u in _downloads(f"/suites/vadi/categories/?metric={m}")]
        + ["/suites/vadi/categories/?provenance=server_scored&dataset=mvtec"]
    ),
    "suites/<slug:suite>/evidence/<slug:method>/<slug:metric>/": lambda w: [
        u for m in _every(w, "methods") for u in _downloads(f"/suites/vadi/evidence/{m.key}/pl/")
    ],
    "categories/<path:key>/": lambda w: [*_downloads("/categories/mvtec/bottle/"), "/categories/visa/candle/"],
    "methods/": lambda w: ["/methods/"],
    "compare/": lambda w: [
        "/compare/",
        *[f"/compare/?suite=vadi&a={m.key}&b=patch-core-public" for m in _every(w, "methods")],
    ],
    "results/<int:pk>/localisation/": lambda w: [f"/results/{pk}/localisation/" for pk in _pl_results()],
    "results/<int:pk>/localisation/<int:index>.png": lambda w: [
        f"/results/{pk}/localisation/0.png" for pk in _pl_results()
    ],
    "methods/<slug:key>/": lambda w: [u for m in _every(w, "methods") for u in _downloads(f"/methods/{m.key}/")],
    "submissions/<int:pk>/": lambda w: [f"/submissions/{s.pk}/" for s in _every(w, "submissions")],
    "submissions/<int:pk>/status.json": lambda w: [
        f"/submissions/{s.pk}/status.json" for s in _every(w, "submissions")
    ],
    "runs/<int:pk>/": lambda w: [f"/runs/{r.pk}/" for r in _every(w, "runs")],
    "runs/<int:pk>/status.json": lambda w: [f"/runs/{r.pk}/status.json" for r in _every(w, "runs")],
    "runs/<int:pk>/spec.json": lambda w: [f"/runs/{r.pk}/spec.json" for r in _every(w, "runs")],
    "submit/": lambda w: ["/submit/", *_hidden_name_uploads(w, "/submit/", "method")],
    "submit/login/": lambda w: ["/submit/login/"],
    "submit/logout/": lambda w: ["/submit/logout/"],
    "submit/token/": lambda w: ["/submit/token/"],
    # Accounts: the user's own pages (leaderboard/urls_account.py) and django-allauth's
    "accounts/me/": lambda w: ["/accounts/me/"],
    "accounts/me/token/": lambda w: ["/accounts/me/token/"],
    "accounts/me/methods/<slug:key>/edit/": lambda w: [
        *_method_urls(w, "/accounts/me/methods/{}/edit/"),
        *[
            ("POST", "/accounts/me/methods/bob-public-net/edit/", {"name": m.name.replace("o", "\u043e").upper()})
            for m in _every(w, "methods")
        ],
    ],
    "accounts/me/submissions/<int:pk>/withdraw/": lambda w: (
        [
            ("POST", f"/accounts/me/submissions/{s.pk}/withdraw/", {"next": "/accounts/me/"})
            for s in _every(w, "submissions")
            if s.status == "done" and not s.withdrawn_at and s.owner.username != "alice-zqowner"
        ]
        + [f"/accounts/me/submissions/{s.pk}/withdraw/" for s in _every(w, "submissions")]
    ),
    **{route: _fixed(url) for route, url in ALLAUTH_PAGES.items()},
    # API
    "api/v1/schema/": lambda w: ["/api/v1/schema/"],
    "api/v1/docs/": lambda w: ["/api/v1/docs/"],
    "api/v1/redoc/": lambda w: ["/api/v1/redoc/"],
    "api/v1/": lambda w: ["/api/v1/"],
    "api/v1/health/": lambda w: ["/api/v1/health/"],
    "api/v1/leaderboard/<slug:suite>/": lambda w: [
        "/api/v1/leaderboard/vadi/",
        "/api/v1/leaderboard/vadi/?provenance=server_scored",
        "/api/v1/leaderboard/mvtec/?metric=aupro",
    ],
    "api/v1/datasets/": lambda w: ["/api/v1/datasets/"],
    "api/v1/datasets/<slug:key>/": lambda w: ["/api/v1/datasets/mvtec/"],
    "api/v1/suites/": lambda w: ["/api/v1/suites/"],
    "api/v1/suites/<slug:key>/": lambda w: ["/api/v1/suites/vadi/"],
    "api/v1/categories/": lambda w: ["/api/v1/categories/", "/api/v1/categories/?suite=vadi"],
    "api/v1/categories/<path:key>/test-ids": lambda w: ["/api/v1/categories/mvtec/bottle/test-ids"],
    "api/v1/categories/<path:key>/test-files": lambda w: ["/api/v1/categories/mvtec/bottle/test-files"],
    "api/v1/categories/<path:key>/": lambda w: ["/api/v1/categories/mvtec/bottle/"],
    "api/v1/methods/": lambda w: ["/api/v1/methods/", "/api/v1/methods/?limit=1000"],
    "api/v1/methods/<slug:key>/": lambda w: [f"/api/v1/methods/{m.key}/" for m in _every(w, "methods")],
    "api/v1/results/": lambda w: [
        "/api/v1/results/?limit=1000",
        "/api/v1/results/?current=false&limit=1000",
        "/api/v1/results/?provenance=server_scored&current=false&limit=1000",
        *[f"/api/v1/results/?method={m.key}&current=false" for m in _every(w, "methods")],
        *[f"/api/v1/results/?submission={s.pk}&current=false" for s in _every(w, "submissions")],
    ],
    "api/v1/submissions/": lambda w: [
        "/api/v1/submissions/?limit=1000",
        *[f"/api/v1/submissions/?method={m.key}" for m in _every(w, "methods")],
        *_hidden_name_uploads(w, "/api/v1/submissions/", "method"),
    ],
    "api/v1/submissions/<int:pk>/": lambda w: [f"/api/v1/submissions/{s.pk}/" for s in _every(w, "submissions")],
    "api/v1/submissions/validate/": lambda w: [
        "/api/v1/submissions/validate/",
        *_hidden_name_uploads(w, "/api/v1/submissions/validate/", "method"),
    ],
    "api/v1/benchmark-runs/": lambda w: [
        "/api/v1/benchmark-runs/?limit=1000",
        *[f"/api/v1/benchmark-runs/?method={m.key}" for m in _every(w, "methods")],
    ],
    "api/v1/benchmark-runs/<int:pk>/": lambda w: [f"/api/v1/benchmark-runs/{r.pk}/" for r in _every(w, "runs")],
    "api/v1/staff/benchmark-runs/": lambda w: ["/api/v1/staff/benchmark-runs/"],
    "api/v1/staff/benchmark-runs/<int:run_id>/": lambda w: [
        f"/api/v1/staff/benchmark-runs/{r.pk}/" for r in _every(w, "runs")
    ],
    "^api/": lambda w: ["/api/v1/no-such-endpoint/", "/api/v2/methods/"],
}

#: Routes whose hidden objects must answer 404 to who may not see them: route -> (kind, URL template).
DETAIL_ROUTES = {
    "submissions/<int:pk>/": "/submissions/{pk}/",
    "submissions/<int:pk>/status.json": "/submissions/{pk}/status.json",
    "api/v1/submissions/<int:pk>/": "/api/v1/submissions/{pk}/",
    "runs/<int:pk>/": "/runs/{pk}/",
    "runs/<int:pk>/status.json": "/runs/{pk}/status.json",
    "runs/<int:pk>/spec.json": "/runs/{pk}/spec.json",
    "api/v1/benchmark-runs/<int:pk>/": "/api/v1/benchmark-runs/{pk}/",
    "methods/<slug:key>/": "/methods/{key}/",
    "accounts/me/methods/<slug:key>/edit/": "/accounts/me/methods/{key}/edit/",
    "api/v1/methods/<slug:key>/": "/api/v1/methods/{key}/",
    "suites/<slug:suite>/evidence/<slug:method>/<slug:metric>/": "/suites/vadi/evidence/{key}/pl/",
}


# Admin: URLs from the model each pattern serves -----------------------------------------------


def _admin_object_id(world: World, model) -> str:
    chosen = {
        Submission: world.submissions["private"].pk,
        Method: world.methods["private"].pk,
        type(world.runs["running"]): world.runs["running"].pk,
        Result: Result.objects.filter(submission=world.submissions["private"]).values_list("pk", flat=True).first(),
        type(world.users["alice"]): world.users["alice"].pk,
        type(world.tokens["alice"]): world.tokens["alice"].pk,
    }
    if model in chosen:
        return str(chosen[model])
    first = model.objects.order_by("pk").values_list("pk", flat=True).first()
    return str(first if first is not None else 1)


def admin_urls(world: World, route: str, pattern: URLPattern) -> list[str]:
    model_admin = getattr(pattern.callback, "model_admin", None)
    model = model_admin.model if model_admin is not None else None
    values = {
        "object_id": _admin_object_id(world, model) if model is not None else "1",
        "id": str(world.users["alice"].pk),
        "content_type_id": str(ContentType.objects.get_for_model(Submission).pk),
        "app_label": "leaderboard",
        "url": "zq-nowhere/",
    }
    if route.startswith("admin/r/"):
        values["object_id"] = str(world.submissions["private"].pk)
    url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], route)
    url = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values[m.group(1)], url)
    url = "/" + url.replace("^", "").replace("$", "")
    urls = [url]
    if pattern.name and pattern.name.endswith("_changelist"):
        urls += [f"{url}?q=zq", f"{url}?q=alice"]
    return urls


# The checks ----------------------------------------------------------------------------------


def _client(world: World, role: str) -> Client:
    client = Client()
    if role in ROLE_USER:
        client.force_login(world.users[ROLE_USER[role]])
    return client


def _request(client: Client, case):
    if isinstance(case, tuple):
        _method, url, data = case
        return url, client.post(url, data)
    return case, client.get(case)


def _body(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8", "replace")
    return response.content.decode("utf-8", "replace")


def _found(marker: str, lowered: str) -> bool:
    """A marker in the body; a number only as a whole number, not inside a longer one.

    ``0.726`` must not be found in a timestamp's ``...:30.726519Z`` (a flaky false alarm), but is
    found as ``0.726``, ``0.7261`` or ``"0.726",``.
    """
    if re.fullmatch(r"[\d.]+", marker):
        return re.search(rf"(?<![\d.]){re.escape(marker)}", lowered) is not None
    return marker.lower() in lowered


def _leaks(world: World, role: str, body: str) -> list[str]:
    lowered = body.lower()
    return [marker for marker, seen_by in world.secrets.items() if role not in seen_by and _found(marker, lowered)]


def test_a_value_marker_is_not_found_inside_a_timestamp():
    assert not _found("0.726", '"created": "2026-11-30t15:18:30.726519z"')
    assert _found("0.726", '{"value": 0.7261}') and _found("0.726", "<td>0.726</td>")


@pytest.fixture
def world(catalog) -> World:
    return build_world(catalog)


def test_every_route_has_a_case():
    missing = [route for route, _ in url_patterns() if not route.startswith("admin/") and route not in CASES]
    assert not missing, f"routes without a case in the visibility matrix: {missing}"
    stale = set(CASES) - {route for route, _ in url_patterns()}
    assert not stale, f"cases for routes that no longer exist: {sorted(stale)}"


def test_nothing_private_reaches_who_may_not_see_it(world):
    problems: list[str] = []
    routes = url_patterns()
    checked = 0
    for role in ROLES:
        client = _client(world, role)
        for route, pattern in routes:
            if route.startswith("admin/"):
                cases = admin_urls(world, route, pattern)
            else:
                cases = CASES[route](world)
            assert cases, f"no URL for {route}"
            for case in cases:
                url, response = _request(client, case)
                checked += 1
                if response.status_code >= 500:
                    problems.append(f"{role} {url}: {response.status_code}")
                    continue
                leaked = _leaks(world, role, _body(response))
                if leaked:
                    problems.append(f"{role} {url} ({response.status_code}) shows {leaked}")
                if role != "anonymous":
                    cache_control = response.get("Cache-Control", "")
                    if "no-store" not in cache_control or "private" not in cache_control:
                        problems.append(f"{role} {url}: Cache-Control {cache_control!r}")
                gate = route == "admin/login/" or response.status_code in (302, 404, 405)
                if route.startswith("admin/") and role != "staff" and not gate:
                    problems.append(f"{role} {url}: the admin answered {response.status_code}")
    assert checked > 4 * 150
    assert not problems, "\n".join(problems)


def _hidden_from(world: World, role: str) -> dict[str, list]:
    """The objects ``role`` may not see: submissions, runs, methods (by the rule, independently of the selectors)."""
    from leaderboard.models import JobStatus, ReviewStatus, Visibility

    def sub_visible(s) -> bool:
        if role == "staff" or (role == "owner" and s.owner_id == world.users["alice"].pk):
            return True
        return (
            s.status == JobStatus.DONE
            and s.visibility == Visibility.PUBLIC
            and s.review_status in (ReviewStatus.NONE, ReviewStatus.APPROVED)
            and s.withdrawn_at is None
        )

    return {
        "submissions": [s for s in _every(world, "submissions") if not sub_visible(s)],
        "runs": [r for r in _every(world, "runs") if role != "staff" and not r.is_published],
        "methods": [
            m
            for m in _every(world, "methods")
            if role != "staff"
            and not (role == "owner" and m.owner_id == world.users["alice"].pk)
            and m.key not in ("patch-core-public", "bob-public-net")
        ],
    }


@pytest.mark.parametrize("role", ROLES)
def test_hidden_objects_answer_404_like_missing_ones(world, role):
    for obj in _every(world, "submissions") + _every(world, "runs"):
        obj.refresh_from_db()
    client = _client(world, role)
    hidden = _hidden_from(world, role)
    problems = []
    for route, template in DETAIL_ROUTES.items():
        kind = "methods" if "{key}" in template else ("runs" if "run" in route else "submissions")
        for obj in hidden[kind]:
            url = template.format(pk=obj.pk, key=getattr(obj, "key", ""))
            status = client.get(url).status_code
            if status != 404:
                problems.append(f"{role} {url}: {status}")
    visible_counts = {kind: len(_every(world, kind)) - len(objs) for kind, objs in hidden.items()}
    assert not problems, problems
    if role == "staff":
        assert all(not objs for objs in hidden.values())
    assert visible_counts["submissions"] >= 1 and visible_counts["runs"] >= 1 and visible_counts["methods"] >= 1


def test_the_matrix_can_fail(world):
    """The markers are real: staff and owners do see them where they should."""
    staff, owner = _client(world, "staff"), _client(world, "owner")
    private = world.submissions["private"]
    assert "0.813" in _body(owner.get(f"/submissions/{private.pk}/"))
    assert "zq-failure-text" in _body(owner.get(f"/api/v1/submissions/{world.submissions['failed'].pk}/"))
    assert "ZQ Private Method" in _body(owner.get("/methods/"))
    assert "ZQ Lonely Method" in _body(staff.get("/methods/"))
    running_pl = Result.objects.get(benchmark_run=world.runs["running"], metric="pl").pk
    assert "zq-running-defect" in _body(staff.get(f"/results/{running_pl}/localisation/"))  # PL explained
    assert _client(world, "other").get(f"/results/{running_pl}/localisation/").status_code == 404
    running = _body(staff.get(f"/runs/{world.runs['running'].pk}/"))
    assert "zq-running-progress" in running and "zq-secret-root" not in running  # progress messages are public text
    detail = _body(staff.get(f"/admin/leaderboard/submission/{world.submissions['failed'].pk}/change/"))
    assert "zq-secret-root" in detail and "DatasetError" in detail  # the detail is for staff, in the admin
    # and the anonymous view of the same leaks is what the matrix would report
    assert _leaks(world, "anonymous", detail)
