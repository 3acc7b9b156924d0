"""Issue 12's leaks, one test each: private methods, failed submissions in the API, held values,
look-alike method names, cacheable secrets, deployment secrets, and internal detail in messages."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from leaderboard.failures import PATH_PLACEHOLDER, SETTING_PLACEHOLDER, failure_from_exception, public_message
from leaderboard.models import JobStatus, Method, Submission, Visibility
from leaderboard.names import method_name_keys
from leaderboard.services.submissions import method_for_user

from .conftest import publish_run, publish_submission, uniform
from .factories import MethodFactory, SubmissionFactory, UserFactory
from .privacy import _fail, _finish, _per_category

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def vadi(catalog):
    return catalog["categories"]["mvtec"] + catalog["categories"]["visa"]


# Private becomes public ------------------------------------------------------------------------


def test_a_private_submissions_method_is_not_public(client, catalog):
    owner = UserFactory(username="xowner")
    method = method_for_user(owner=owner, name="X Private")
    submission = SubmissionFactory(
        owner=owner, method=method, suite=catalog["suites"]["vadi"], visibility=Visibility.PRIVATE
    )
    for stage in ("queued", "scored"):
        if stage == "scored":
            _finish(submission, _per_category(vadi(catalog), 0.4242))
        assert "X Private" not in client.get("/methods/").content.decode(), stage
        assert client.get("/methods/x-private/").status_code == 404
        assert client.get("/api/v1/methods/x-private/").status_code == 404
        assert "x-private" not in client.get("/api/v1/methods/").content.decode()
        client.force_login(UserFactory())
        assert client.get("/methods/x-private/").status_code == 404
        client.force_login(owner)
        assert client.get("/methods/x-private/").status_code == 200
        assert "X Private" in client.get("/methods/").content.decode()
        client.force_login(UserFactory(is_staff=True))
        assert client.get("/methods/x-private/").status_code == 200
        client.logout()
    # the owner sees the private values on the method page, marked as not published
    client.force_login(owner)
    page = client.get("/methods/x-private/").content.decode()
    assert "0.424" in page and "Not published" in page


def test_a_method_is_public_once_it_has_a_published_result(client, catalog):
    method = MethodFactory(key="later", name="Later", algorithm_key="later")
    assert client.get("/methods/later/").status_code == 404
    publish_run(method, vadi(catalog), uniform(0.5, 5))
    assert client.get("/methods/later/").status_code == 200


def test_anonymous_submission_list_has_no_failed_submission(catalog):
    owner = UserFactory(username="failing-owner")
    failed = SubmissionFactory(owner=owner, method=MethodFactory(owner=owner), status=JobStatus.QUEUED)
    _fail(failed, "Server error while scoring (DatasetError: /data/mvtec/x.png: the failure text)")
    published = publish_submission(MethodFactory(), vadi(catalog), uniform(0.5, 5))
    api = APIClient()
    body = api.get("/api/v1/submissions/").content.decode()
    assert [s["id"] for s in api.get("/api/v1/submissions/").json()["results"]] == [published.pk]
    assert "failing-owner" not in body and "failure text" not in body
    api.force_authenticate(owner)
    mine = api.get(f"/api/v1/submissions/{failed.pk}/").json()
    assert mine["status"] == "failed" and "the failure text" in mine["error_message"]
    assert "/data/mvtec" not in mine["error_message"] and "DatasetError" not in mine["error_message"]


def test_a_held_submissions_values_are_shown_to_its_owner_and_staff_only(client, catalog):
    owner = UserFactory()
    held = SubmissionFactory(owner=owner, method=MethodFactory(owner=owner), suite=catalog["suites"]["vadi"])
    _finish(held, _per_category(vadi(catalog), 0.3131), flagged="maps match the ground truth too well")
    url = f"/submissions/{held.pk}/"
    assert client.get(url).status_code == 404
    assert client.get(f"/submissions/{held.pk}/status.json").status_code == 404
    client.force_login(UserFactory())
    assert client.get(url).status_code == 404
    for viewer in (owner, UserFactory(is_staff=True)):
        client.force_login(viewer)
        page = client.get(url)
        assert page.status_code == 200 and "0.313" in page.content.decode()


# Impersonation -----------------------------------------------------------------------------------

LOOK_ALIKES = [
    "PatchC\u043ere",  # Cyrillic o
    "P\u0430tchCore",  # Cyrillic a
    "\u0420atchCore",  # Cyrillic capital Er
    "PatchCor\u0435",  # Cyrillic e
    "patchcore",
    "PATCHCORE",
    "\uff30\uff41\uff54\uff43\uff48\uff23\uff4f\uff52\uff45",  # full-width
    "Patch Core",
    "Patch-Core",
    "Patch_Core",
    "Patch\u2010Core",  # hyphen
    "PatchC0re",  # digit zero
    "  PatchCore  ",
    "\U0001d40f\U0001d41a\U0001d42d\U0001d41c\U0001d421\U0001d402\U0001d428\U0001d42b\U0001d41e",  # bold maths
]


@pytest.fixture
def patchcore(catalog):
    method = MethodFactory(key="patchcore", name="PatchCore", algorithm_key="patchcore")
    publish_run(method, vadi(catalog), uniform(0.5, 5))
    return method


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_look_alike_names_are_refused_naming_the_existing_method(patchcore, name):
    with pytest.raises(ValidationError) as info:
        method_for_user(owner=UserFactory(), name=name)
    assert "'PatchCore'" in str(info.value)
    assert Method.objects.count() == 1


@pytest.mark.parametrize("name", ["PatchCore+", "PatchCore v2", "PaDiM", "Patch", "CoreNet"])
def test_different_names_are_accepted(patchcore, name):
    assert method_for_user(owner=UserFactory(), name=name).name == name


def test_names_are_stored_in_nfkc_and_invisible_characters_refused(patchcore):
    owner = UserFactory()
    assert method_for_user(owner=owner, name="\uff2d\uff59  Net").name == "My Net"
    with pytest.raises(ValidationError, match="U\\+200B ZERO WIDTH SPACE"):
        method_for_user(owner=owner, name="Patch\u200bCore")
    with pytest.raises(ValidationError, match="RIGHT-TO-LEFT OVERRIDE"):
        method_for_user(owner=owner, name="Net\u202eten")


def test_a_different_name_with_a_taken_key_gets_its_own_method(patchcore):
    owner = UserFactory()
    plus = method_for_user(owner=owner, name="PatchCore+")
    assert plus != patchcore and plus.key == "patchcore-2" and plus.owner == owner
    assert method_for_user(owner=owner, name="PatchCore+") == plus


def test_capital_i_and_small_l_clash_too(catalog):
    owner = UserFactory()
    method_for_user(owner=owner, name="Input Net")
    assert method_for_user(owner=owner, name="lnput Net").name == "Input Net"  # the owner's own method
    with pytest.raises(ValidationError):
        method_for_user(owner=UserFactory(), name="lnput Net")


def test_an_owner_reuses_their_method_under_a_look_alike_name(catalog):
    owner = UserFactory()
    mine = method_for_user(owner=owner, name="My Method")
    assert method_for_user(owner=owner, name="my meth\u043ed") == mine


def test_a_hidden_method_is_not_named_to_another_user(catalog):
    method_for_user(owner=UserFactory(), name="Secret Sauce")
    with pytest.raises(ValidationError) as info:
        method_for_user(owner=UserFactory(), name="SECRET SAUCE")
    assert "Secret Sauce" not in str(info.value) and "is taken" in str(info.value)


def _zip_upload():
    return SimpleUploadedFile("b.zip", b"PK\x03\x04" + b"\0" * 64, content_type="application/zip")


def test_form_api_admin_and_database_refuse_a_look_alike(client, patchcore):
    user = UserFactory()
    client.force_login(user)
    form = client.post("/submit/", {"method": "PatchC\u043ere", "suite": "vadi", "visibility": "public",
                                    "archive": _zip_upload()})  # fmt: skip
    assert form.status_code == 400 and "PatchCore" in form.content.decode()
    api = APIClient()
    api.force_authenticate(user)
    response = api.post("/api/v1/submissions/", {"method": "PatchC\u043ere", "suite": "vadi",
                                                 "archive": _zip_upload()}, format="multipart")  # fmt: skip
    assert response.status_code == 400 and "'PatchCore'" in response.json()["error"]["message"]
    assert not Submission.objects.exists()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    admin = client.post("/admin/leaderboard/method/add/", {"key": "patchcore-2", "name": "PatchC\u043ere"})
    assert admin.status_code == 200 and "PatchCore" in admin.content.decode() and "look" in admin.content.decode()
    with pytest.raises(IntegrityError), transaction.atomic():
        Method.objects.create(key="patchcore-3", name="PATCHCORE")  # no validation: the database refuses
    assert Method.objects.count() == 1


def test_name_keys_follow_tr39():
    assert method_name_keys("PatchC\u043ere") == method_name_keys("PatchCore")
    assert method_name_keys("PADIM")[0] == method_name_keys("PaDiM")[0]
    assert method_name_keys("PatchCore") != method_name_keys("PatchCore+")


def test_migration_fills_keys_and_makes_old_messages_public(catalog):
    migration = importlib.import_module("leaderboard.migrations.0003_method_name_keys_job_error_detail")
    first = MethodFactory(key="old-a", name="Old Net")
    second = MethodFactory(key="old-b", name="Other Net")
    Method.objects.filter(pk=second.pk).update(name="OLD NET", name_skeleton="", name_skeleton_cased="")
    Method.objects.filter(pk=first.pk).update(name_skeleton="", name_skeleton_cased="")
    raw = "Server error while scoring (DatasetError: /srv/data/x.png: bad mask)"
    submission = SubmissionFactory()
    Submission.objects.filter(pk=submission.pk).update(status=JobStatus.FAILED, error_message=raw)
    migration.method_keys_fill(django_apps, None)
    migration.error_messages_make_public(django_apps, None)
    first.refresh_from_db(), second.refresh_from_db(), submission.refresh_from_db()
    assert first.name_skeleton == "oldnet" and second.name_skeleton == ""  # the older one keeps the key
    assert "/srv/data" not in submission.error_message and "DatasetError" not in submission.error_message
    assert submission.error_detail == raw


# Cacheable secrets -------------------------------------------------------------------------------


def test_pages_with_a_token_or_private_data_are_not_cached(client, catalog):
    user = UserFactory()
    token = Token.objects.create(user=user)
    assert client.get("/submit/login/")["Cache-Control"].count("no-store") == 1
    client.force_login(user)
    submit = client.get("/submit/")
    assert token.key in submit.content.decode()
    for url in ("/submit/", "/methods/", "/"):
        cache_control = client.get(url)["Cache-Control"]
        assert "no-store" in cache_control and "private" in cache_control, url
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    cache_control = api.get("/api/v1/submissions/")["Cache-Control"]
    assert "no-store" in cache_control and "private" in cache_control
    client.logout()
    public = client.get("/methods/")
    assert "no-store" not in public.get("Cache-Control", "") and "Cookie" in public["Vary"]


# Known secret key ------------------------------------------------------------------------------


def test_deployment_files_hold_no_secret():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "change-me" not in compose
    for name in ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD"):
        for value in re.findall(rf"^\s*{name}:\s*(.+)$", compose, flags=re.M):
            assert value.startswith(f"${{{name}:?"), f"{name} has a default in docker-compose.yml: {value}"
    assert "postgres://vadi:vadi@" not in compose
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "DJANGO_SECRET_KEY=build-only" not in dockerfile


@pytest.mark.parametrize(
    ("key", "problem"),
    [("change-me-to-a-long-random-string", "placeholder"), ("short-key", "too short"), ("a" * 60, "too simple")],
)
def test_production_settings_refuse_a_weak_secret_key(key, problem):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": key,
            "VADI_VAR_DIR": str(ROOT / "var"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "ImproperlyConfigured" in proc.stderr and problem in proc.stderr


# Internal detail in messages ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "public"),
    [
        ("Server error (DatasetError: /srv/x/gt.png: grey levels)", f"Server error ({PATH_PLACEHOLDER}: grey levels)"),
        ("set VADI_MVTEC_ROOT or $HOME", f"set {SETTING_PLACEHOLDER} or {SETTING_PLACEHOLDER}"),
        ('Traceback (most recent call last):\n  File "/a.py", line 1, in f\nKeyError: boom', "boom"),
        ("cannot reach 10.0.0.7:5432", "cannot reach <address>"),
        ("django.db.utils.OperationalError: timeout", "timeout"),
        ("mvtec/bottle/maps.npy: shape (3, 64) does not match 4 ids", "mvtec/bottle/maps.npy: shape (3, 64) does "
         "not match 4 ids"),
        ("scored 3/5 categories (visa/pcb1)", "scored 3/5 categories (visa/pcb1)"),
    ],
)
def test_public_message(raw, public):
    assert public_message(raw) == public
    assert public_message(public_message(raw)) == public_message(raw)


def test_an_internal_exception_becomes_a_fixed_message_with_staff_detail():
    try:
        raise FileNotFoundError(2, "No such file", "/var/media/submissions/1/x.zip")
    except FileNotFoundError as exc:
        failure = failure_from_exception(exc, public="Server error while scoring")
    assert failure.message == "Server error while scoring"
    assert "FileNotFoundError" in failure.detail and "/var/media/submissions/1/x.zip" in failure.detail
