"""Owners look after their methods: edit, withdraw, history; who may do it; accounts' settings."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from leaderboard.models import Method, MethodChange, MethodChangeKind, Result, Visibility
from leaderboard.selectors.leaderboard import suite_leaderboard
from leaderboard.selectors.ownership import method_can_edit, method_change_list, submission_can_withdraw
from leaderboard.selectors.visibility import ANONYMOUS, method_visible_q, viewer_of
from leaderboard.services.ownership import method_update, submission_withdraw

from .conftest import publish_submission, uniform
from .factories import MethodFactory, SubmissionFactory, UserFactory

pytestmark = pytest.mark.django_db


def vadi(catalog):
    return catalog["categories"]["mvtec"] + catalog["categories"]["visa"]


@pytest.fixture
def owned(catalog):
    """Alice's method ``owned-net`` with one published submission on the VADI suite."""
    alice = UserFactory(username="alice")
    method = MethodFactory(key="owned-net", name="Owned net", owner=alice)
    submission = publish_submission(
        method, vadi(catalog), uniform(0.8, 5), owner=alice, suite=catalog["suites"]["vadi"]
    )
    return alice, method, submission


def board_names(suite="vadi"):
    return [row.method.name for row in suite_leaderboard(suite_key=suite).rows]


# Permission rules -----------------------------------------------------------------------------


def test_only_the_owner_or_staff_may_edit_and_never_a_registered_algorithm(owned):
    alice, method, _ = owned
    assert method_can_edit(method=method, user=alice)
    assert method_can_edit(method=method, user=UserFactory(username="root", is_staff=True))
    assert not method_can_edit(method=method, user=UserFactory(username="bob"))
    assert not method_can_edit(method=method, user=None)
    assert not method_can_edit(method=method, user=UserFactory(username="gone", is_active=False))
    registered = MethodFactory(key="patchcore", name="PatchCore", algorithm_key="patchcore")
    assert not method_can_edit(method=registered, user=UserFactory(username="root2", is_staff=True))


def test_only_scored_unwithdrawn_submissions_of_the_owner_may_be_withdrawn(owned):
    alice, method, submission = owned
    assert submission_can_withdraw(submission=submission, user=alice)
    assert not submission_can_withdraw(submission=submission, user=UserFactory(username="bob"))
    queued = SubmissionFactory(owner=alice, method=method, status="queued")
    assert not submission_can_withdraw(submission=queued, user=alice)


# method_update -------------------------------------------------------------------------------


def test_an_owner_edits_the_description_and_the_history_records_it(owned):
    alice, method, _ = owned
    method_update(
        method=method,
        actor=alice,
        data={"name": "Owned Net v2", "authors": "A. Liddell, B. Carroll", "paper_url": "https://arxiv.org/abs/1"},
    )
    method.refresh_from_db()
    assert (method.name, method.authors, method.key) == ("Owned Net v2", "A. Liddell, B. Carroll", "owned-net")
    change = MethodChange.objects.get()
    assert change.kind == MethodChangeKind.EDITED and change.actor == alice and change.created_at
    assert change.changes == {
        "name": ["Owned net", "Owned Net v2"],
        "authors": ["", "A. Liddell, B. Carroll"],
        "paper_url": ["", "https://arxiv.org/abs/1"],
    }
    assert change.changed_fields == ["display name", "authors or team", "paper link"]
    assert board_names() == ["Owned Net v2"]  # the cached table shows the new name
    # saving the same values again records nothing
    method_update(method=method, actor=alice, data={"name": "Owned Net v2"})
    assert MethodChange.objects.count() == 1


def test_others_may_not_edit_and_bad_values_are_refused(owned):
    alice, method, _ = owned
    with pytest.raises(PermissionDenied):
        method_update(method=method, actor=UserFactory(username="bob"), data={"name": "Hijacked"})
    MethodFactory(key="other-net", name="Other Net", owner=alice)  # hers: she may see it, so it is named
    with pytest.raises(ValidationError) as err:
        method_update(method=method, actor=alice, data={"name": "OTHER-net"})  # a look-alike
    assert "'Other Net'" in str(err.value)
    with pytest.raises(ValidationError):
        method_update(method=method, actor=alice, data={"code_url": "not a url"})
    with pytest.raises(ValidationError):
        method_update(method=method, actor=alice, data={"owner": "bob"})
    method.refresh_from_db()
    assert method.name == "Owned net" and not MethodChange.objects.exists()


# submission_withdraw -------------------------------------------------------------------------


def test_withdrawing_takes_the_results_off_the_board_and_restores_the_earlier_ones(owned, catalog):
    alice, method, first = owned
    second = publish_submission(method, vadi(catalog), uniform(0.9, 5), owner=alice, suite=catalog["suites"]["vadi"])
    assert {r.submission_id for r in Result.objects.filter(is_current=True)} == {second.pk}
    board = suite_leaderboard(suite_key="vadi")
    assert board.rows[0].metrics["pl"].mean == pytest.approx(0.9)

    submission_withdraw(submission=second, actor=alice, note="wrong ids")
    second.refresh_from_db()
    assert second.withdrawn_at is not None
    assert {r.submission_id for r in Result.objects.filter(is_current=True)} == {first.pk}
    assert suite_leaderboard(suite_key="vadi").rows[0].metrics["pl"].mean == pytest.approx(0.8)
    change = MethodChange.objects.get()
    assert (change.kind, change.submission, change.note, change.is_public) == ("withdrawn", second, "wrong ids", True)

    with pytest.raises(ValidationError, match="already withdrawn"):
        submission_withdraw(submission=second, actor=alice)
    submission_withdraw(submission=first, actor=alice)
    assert board_names() == [] and not Result.objects.filter(is_current=True).exists()
    # hidden from others (the method has no published result left); still the owner's
    assert method_can_edit(method=method, user=alice)
    assert not Method.objects.filter(method_visible_q(ANONYMOUS), pk=method.pk).exists()


def test_others_may_not_withdraw_and_private_withdrawals_stay_private(owned, catalog):
    alice, method, published = owned
    bob = UserFactory(username="bob")
    with pytest.raises(PermissionDenied):
        submission_withdraw(submission=published, actor=bob)
    private = SubmissionFactory(owner=alice, method=method, visibility=Visibility.PRIVATE)
    submission_withdraw(submission=private, actor=alice)
    assert list(method_change_list(method=method, viewer=viewer_of(alice))) != []
    assert list(method_change_list(method=method, viewer=viewer_of(bob))) == []
    assert list(method_change_list(method=method, viewer=ANONYMOUS)) == []


# Pages -----------------------------------------------------------------------------------------


def test_edit_page_answers_owner_200_other_403_hidden_404(owned, client):
    alice, method, _ = owned
    hidden = MethodFactory(key="secret-net", name="Secret net", owner=alice)  # no published result
    url = reverse("account:method-edit", args=[method.key])
    assert client.get(url).status_code == 302  # sign in first
    client.force_login(UserFactory(username="bob"))
    assert client.get(url).status_code == 403
    response = client.get(reverse("account:method-edit", args=[hidden.key]))
    assert response.status_code == 404 and b"Secret net" not in response.content
    assert client.post(url, {"name": "Hijacked"}).status_code == 403
    client.force_login(alice)
    response = client.post(url, {"name": "Owned net", "authors": "Team A", "description": "Better."})
    assert response.status_code == 302 and response["Location"] == reverse(
        "leaderboard:method-detail", args=[method.key]
    )
    page = client.get(response["Location"]).content.decode()
    assert "By Team A" in page and "authors or team, description edited" in page and 'id="method-edit"' in page
    assert "Cache-Control" in client.get(url) and "no-store" in client.get(url)["Cache-Control"]
    bad = client.post(url, {"name": "", "paper_url": "nope"})
    assert bad.status_code == 400 and b"Enter a valid URL" in bad.content


def test_withdraw_view_answers_other_403_hidden_404_and_owner_withdraws(owned, client):
    alice, method, submission = owned
    private = SubmissionFactory(owner=alice, method=method, visibility=Visibility.PRIVATE)
    url = reverse("account:submission-withdraw", args=[submission.pk])
    client.force_login(UserFactory(username="bob"))
    assert client.post(url).status_code == 403
    assert client.post(reverse("account:submission-withdraw", args=[private.pk])).status_code == 404
    assert client.get(url).status_code == 405
    client.force_login(alice)
    response = client.post(url, {"next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == reverse("account:home")
    submission.refresh_from_db()
    assert submission.withdrawn_at is not None
    home = client.get(reverse("account:home")).content.decode()
    assert "Withdrawn" in home and "Owned net" in home
    page = client.get(reverse("leaderboard:method-detail", args=[method.key])).content.decode()
    assert f"submission #{submission.pk} withdrawn by its owner" in page
    detail = client.get(reverse("leaderboard:submission-detail", args=[submission.pk])).content.decode()
    assert "<dt>Withdrawn</dt>" in detail
    client.force_login(UserFactory(username="carol"))  # a withdrawn submission is not published: hidden
    assert client.get(reverse("leaderboard:submission-detail", args=[submission.pk])).status_code == 404


def test_account_page_creates_and_rotates_the_token(client):
    from rest_framework.authtoken.models import Token

    user = UserFactory(username="dana")
    client.force_login(user)
    assert b"no API token yet" in client.get(reverse("account:home")).content
    client.post(reverse("account:token"))
    first = Token.objects.get(user=user).key
    client.post(reverse("account:token"))
    second = Token.objects.get(user=user).key
    assert first != second and second in client.get(reverse("account:home")).content.decode()


# Accounts' wiring ------------------------------------------------------------------------------


def test_submit_offers_sign_up_and_social_login_only_when_configured(client, catalog):
    response = client.get(reverse("submissions:new"), follow=True)
    page = response.content.decode()
    assert response.redirect_chain[-1][0].startswith(reverse("account_login"))
    assert reverse("account_signup") in page and "github" not in page.lower() and "orcid" not in page.lower()
    assert client.get("/submit/login/?next=/submit/")["Location"] == reverse("account_login") + "?next=/submit/"


def test_social_providers_come_from_the_environment(monkeypatch):
    import importlib

    import config.settings as base

    monkeypatch.setenv("VADI_GITHUB_CLIENT_ID", "gh-id")
    monkeypatch.setenv("VADI_GITHUB_SECRET", "gh-secret")
    monkeypatch.delenv("VADI_ORCID_CLIENT_ID", raising=False)
    try:
        fresh = importlib.reload(base)
        assert list(fresh.SOCIALACCOUNT_PROVIDERS) == ["github"]
        assert "allauth.socialaccount.providers.github" in fresh.INSTALLED_APPS
        assert fresh.ACCOUNT_EMAIL_VERIFICATION == "mandatory"
    finally:
        monkeypatch.undo()
        importlib.reload(base)


def test_a_rename_never_names_a_method_the_owner_may_not_see(owned):
    alice, method, _ = owned
    MethodFactory(key="hidden-gem", name="Hidden Gem", owner=UserFactory(username="erin"))  # not public yet
    with pytest.raises(ValidationError) as err:
        method_update(method=method, actor=alice, data={"name": "HIDDEN-gem"})
    assert "Hidden Gem" not in str(err.value) and "taken" in str(err.value)


@pytest.mark.slow
def test_social_sign_in_is_offered_when_configured(client, tmp_path):
    """With GitHub's and ORCID's variables set, the sign-in page offers both (settings are read at start-up:
    the check runs in a child pytest with those variables, on a throw-away SQLite database)."""
    import os
    import subprocess
    import sys

    if os.environ.get("VADI_GITHUB_CLIENT_ID"):  # the child
        page = client.get(reverse("account_login") + "?next=/submit/").content.decode()
        assert "/accounts/github/login/" in page and "/accounts/orcid/login/" in page
        return
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "CACHE_URL")},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'social.sqlite3'}",
        "VADI_GITHUB_CLIENT_ID": "gh-id",
        "VADI_GITHUB_SECRET": "gh-secret",
        "VADI_ORCID_CLIENT_ID": "orcid-id",
        "VADI_ORCID_SECRET": "orcid-secret",
    }
    child = subprocess.run(
        [sys.executable, "-m", "pytest", f"{__file__}::test_social_sign_in_is_offered_when_configured", "-q",
         "-p", "no:cacheprovider", "--create-db"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-2000:]


def test_an_account_made_before_sign_up_existed_confirms_its_address_on_first_sign_in(client, mailoutbox):
    """Users made with ``createsuperuser`` or the shell have no confirmed address: the site asks for one."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("olduser", email="old@example.org", password="an-old-Passphrase-9")
    response = client.post(reverse("account_login"), {"login": "olduser", "password": "an-old-Passphrase-9"})
    assert response.status_code == 302 and response["Location"] == reverse("account_email_verification_sent")
    assert mailoutbox and mailoutbox[-1].to == ["old@example.org"]
    assert client.get(reverse("submissions:new")).status_code == 302  # not signed in yet
