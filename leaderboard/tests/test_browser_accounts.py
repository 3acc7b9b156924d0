"""Headless Chromium: a newcomer signs up, confirms the e-mail, makes a token, uploads, sees the
scores; a password reset; an owner edits their method and withdraws a submission.

E-mail goes to Django's locmem backend during tests (``django.core.mail.outbox``); the live
server runs in this process, so the test reads the very message a user would get.
"""

# ruff: noqa: F811  (fixtures imported by name)

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail

from evaluation.tests.bundle_corpus import write_valid
from evaluation.tests.test_submissions import (  # noqa: F401  (fixtures)
    SUITE_KEY,
    expected_values,
    honest_categories,
    results_of,
    spec_for,
    tiny_data_root,
    tiny_suite,
)
from leaderboard.models import JobStatus, MethodChange, Submission

from .conftest import publish_submission, uniform
from .factories import MethodFactory, UserFactory
from .test_browser import browser, page, shot  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-Passphrase-42"


def link_in_last_mail(to: str) -> str:
    message = mail.outbox[-1]
    assert message.to == [to], message.to
    return re.search(r"https?://\S+", message.body).group(0)


def verified_user(username: str, email: str, password: str = PASSWORD):
    user = UserFactory(username=username, email=email, password=password)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


def sign_in(page, base: str, login: str, password: str) -> None:
    page.goto(base + "/accounts/login/")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", password)
    page.click("form button[type=submit]")
    page.wait_for_load_state()


def test_sign_up_confirm_token_upload_and_see_the_scores(page, live_server, tiny_suite, tiny_data_root, tmp_path):
    base = live_server.url
    mail.outbox.clear()
    page.goto(base + "/submit/")
    assert "/accounts/login/" in page.url  # /submit/ asks to sign in, and offers to sign up
    page.click("main a[href*='/accounts/signup/']")
    page.wait_for_url("**/accounts/signup/**")
    page.fill("input[name=email]", "newcomer@example.org")
    page.fill("input[name=username]", "newcomer")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url("**/accounts/confirm-email/")
    shot(page, "signup-verification-sent")
    # mandatory verification: not signed in before the address is confirmed
    page.goto(base + "/submit/")
    assert "/accounts/" in page.url and "Upload and score" not in page.content()

    page.goto(link_in_last_mail("newcomer@example.org"))
    page.click("main form button[type=submit]")  # "Confirm"
    page.wait_for_url("**/submit/")
    assert EmailAddress.objects.get(email="newcomer@example.org").verified

    page.goto(base + "/accounts/me/")
    page.click("#token-rotate")
    page.wait_for_selector("#api-token")
    token = page.inner_text("#api-token").strip()
    shot(page, "account-token")

    path = write_valid(tmp_path / "bundle.zip", spec_for(tiny_data_root, method="Newcomer net"),
                       honest_categories(tiny_data_root, seed=3))  # fmt: skip
    answer = page.request.post(
        base + "/api/v1/submissions/",
        headers={"Authorization": f"Token {token}"},
        multipart={
            "method": "Newcomer net",
            "suite": SUITE_KEY,
            "archive": {"name": "bundle.zip", "mimeType": "application/zip", "buffer": path.read_bytes()},
        },
    )
    assert answer.status == 201, answer.text()
    body = answer.json()
    assert body["owner"] == "newcomer"
    submission = Submission.objects.get(pk=body["id"])
    assert submission.status == JobStatus.DONE, submission.error_message  # eager scoring, on commit
    page.goto(body["status_url"])
    page.wait_for_selector("text=Done")
    content = page.content()
    for key, values in results_of(submission).items():
        assert key in content
        assert f"{values['image_auroc']:.3f}" in content
    shot(page, "signup-upload-result")
    assert page.console_errors == []


def test_password_reset_by_e_mail(page, live_server):
    base = live_server.url
    verified_user("forgetful", "forgetful@example.org", password="the-old-Passphrase-1")
    mail.outbox.clear()
    page.goto(base + "/accounts/login/")
    page.click("main a[href*='/accounts/password/reset/']")
    page.fill("input[name=email]", "forgetful@example.org")
    page.click("main form button[type=submit]")
    page.wait_for_url("**/accounts/password/reset/done/")
    page.goto(link_in_last_mail("forgetful@example.org"))
    page.wait_for_selector("input[name=password1]")
    page.fill("input[name=password1]", "a-brand-new-Passphrase-2")
    page.fill("input[name=password2]", "a-brand-new-Passphrase-2")
    page.click("main form button[type=submit]")
    page.wait_for_url("**/accounts/password/reset/key/done/")
    sign_in(page, base, "forgetful", "the-old-Passphrase-1")
    assert "/accounts/login/" in page.url  # the old password no longer works
    sign_in(page, base, "forgetful@example.org", "a-brand-new-Passphrase-2")
    page.wait_for_url("**/submit/")
    shot(page, "password-reset-signed-in")


def test_owner_edits_the_method_and_withdraws_a_submission(browser, page, live_server, catalog):
    base = live_server.url
    alice = verified_user("alice", "alice@example.org")
    method = MethodFactory(key="alice-net", name="Alice net", owner=alice)
    cats = catalog["categories"]["mvtec"] + catalog["categories"]["visa"]
    submission = publish_submission(method, cats, uniform(0.7, 5), owner=alice, suite=catalog["suites"]["vadi"])

    # another user sees the method but no edit link, and the edit page refuses them
    verified_user("bob", "bob@example.org")
    sign_in(page, base, "bob", PASSWORD)
    page.goto(base + "/methods/alice-net/")
    assert page.locator("#method-edit").count() == 0 and page.locator("[data-withdraw]").count() == 0
    assert page.request.get(base + "/accounts/me/methods/alice-net/edit/").status == 403
    page.context.clear_cookies()

    sign_in(page, base, "alice", PASSWORD)
    page.goto(base + "/methods/alice-net/")
    page.click("#method-edit")
    page.fill("input[name=name]", "Alice Net 2")
    page.fill("input[name=authors]", "Alice Liddell, Wonderland Lab")
    page.fill("input[name=code_url]", "https://example.org/alice-net")
    page.fill("textarea[name=description]", "Rabbit-hole features.")
    page.click("main form button[type=submit]")
    page.wait_for_url("**/methods/alice-net/")
    assert page.inner_text("h1").startswith("Alice Net 2")
    assert "By Alice Liddell, Wonderland Lab" in page.content()
    history = page.inner_text("#method-changes")
    assert "display name, authors or team, code link, description edited" in history and "UTC" in history
    page.goto(base + "/")
    assert page.locator("#board tbody tr[data-method='alice-net']").count() == 1

    page.goto(base + "/methods/alice-net/")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click(f"[data-withdraw='{submission.pk}']")
    page.wait_for_load_state()
    assert f"Submission {submission.pk} was withdrawn" in page.content()
    assert f"submission #{submission.pk} withdrawn by its owner" in page.inner_text("#method-changes")
    shot(page, "owner-withdrew")
    page.goto(base + "/")
    assert page.locator("#board tbody tr[data-method='alice-net']").count() == 0
    assert [c.kind for c in MethodChange.objects.order_by("created_at")] == ["edited", "withdrawn"]
    assert page.console_errors == []
