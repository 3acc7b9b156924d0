"""factory_boy factories for the leaderboard models (results go through the services instead)."""

from __future__ import annotations

import factory
from django.conf import settings
from django.contrib.auth import get_user_model

from algorithms.data import opaque_id_table
from leaderboard import models


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-123456")


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Dataset
        django_get_or_create = ("key",)

    key = factory.Sequence(lambda n: f"ds{n}")
    name = factory.LazyAttribute(lambda o: o.key.upper())


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Category

    dataset = factory.SubFactory(DatasetFactory)
    name = factory.Sequence(lambda n: f"cat{n:02d}")
    key = factory.LazyAttribute(lambda o: f"{o.dataset.key}/{o.name}")
    # Opaque ids, as catalog_sync publishes them (algorithms.data.ids), and their file names.
    test_files = factory.LazyAttribute(
        lambda o: opaque_id_table(settings.VADI_TEST_ID_KEY, o.key, ["test/good/000.png", "test/crack/001.png"])
    )
    test_ids = factory.LazyAttribute(lambda o: list(o.test_files))


class SuiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Suite
        django_get_or_create = ("key",)

    key = factory.Sequence(lambda n: f"suite{n}")
    name = factory.LazyAttribute(lambda o: f"Suite {o.key}")


class MethodFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Method
        django_get_or_create = ("key",)

    key = factory.Sequence(lambda n: f"method-{n:03d}")
    name = factory.LazyAttribute(lambda o: o.key.replace("-", " ").title())


class BenchmarkRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.BenchmarkRun

    method = factory.SubFactory(MethodFactory)
    status = models.JobStatus.DONE
    progress = 1.0


class SubmissionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Submission

    owner = factory.SubFactory(UserFactory)
    method = factory.SubFactory(MethodFactory)
    suite = factory.SubFactory(SuiteFactory)
    archive = factory.LazyAttribute(lambda o: f"submissions/{o.owner.pk}/bundle.zip")
    status = models.JobStatus.DONE
    progress = 1.0
