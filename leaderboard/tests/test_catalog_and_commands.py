"""catalog_sync (from algorithms.data), method_sync_from_registry, charts."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from algorithms.data import SUITES, list_categories
from leaderboard import charts
from leaderboard.models import Category, Method, Suite
from leaderboard.selectors.leaderboard import category_breakdown, suite_leaderboard
from leaderboard.services.catalog import catalog_sync, method_sync_from_registry

from .conftest import METRICS, publish_run
from .factories import MethodFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_catalog_sync_without_datasets_on_disk(tmp_path):
    missing = {"mvtec": tmp_path / "no-mvtec", "visa": tmp_path / "no-visa", "synthetic": tmp_path / "no-syn"}
    catalog_sync(roots=missing)
    assert set(Suite.objects.values_list("key", flat=True)) == set(SUITES)
    vadi = Suite.objects.get(key="vadi")
    assert vadi.categories.count() == 27 == len(list_categories("vadi"))
    assert Suite.objects.get(key="mvtec").categories.count() == 15
    assert Category.objects.get(key="mvtec/bottle").dataset.name == "MVTec AD"
    assert all(c.test_ids == [] for c in Category.objects.all())
    catalog_sync(roots=missing)  # idempotent
    assert Category.objects.filter(key="visa/pcb1").count() == 1


def test_catalog_sync_reads_test_ids_where_a_root_exists(tmp_path):
    from algorithms.data.synthetic import generate_suite

    root = tmp_path / "synthetic"
    name = list_categories("synthetic")[0]
    generate_suite(root, categories=[name], image_size=32, n_train=2, n_test_good=2, n_test_defect=2, workers=1)
    catalog_sync(suites=["synthetic"], roots={"synthetic": root})
    category = Category.objects.get(key=name)
    assert len(category.test_ids) == 4 and all(len(i) == 32 and "/" not in i for i in category.test_ids)  # opaque
    assert sorted(category.test_files) == category.test_ids
    assert all(path.startswith("test/") for path in category.test_files.values())


def test_catalog_sync_rejects_unknown_suite():
    with pytest.raises(ValueError, match="unknown suite"):
        catalog_sync(suites=["nope"])
    assert not Suite.objects.exists()
    with pytest.raises(CommandError, match="unknown suite"):
        call_command("sync_catalog", "--suite", "nope")


def test_method_sync_from_registry():
    from algorithms import list_algorithms

    methods = method_sync_from_registry()
    assert {m.key for m in methods} == set(list_algorithms())
    assert all(m.algorithm_key == m.key for m in Method.objects.all())
    method_sync_from_registry()
    assert Method.objects.count() == len(list_algorithms())
    # every field is the AlgorithmInfo record's, the family one of the enum's values
    ead = Method.objects.get(key="efficient_ad")
    assert (ead.family, ead.secondary_family) == ("knowledge_distillation", "reconstruction")
    assert ead.get_family_display() == "Knowledge distillation" and ead.code_licence == "Apache-2.0"
    assert ead.schedule["iterations"] == 70_000 and ead.map_variants[0] == "combined"
    assert ead.schedule_summary.startswith("70,000 iterations, batch 1, 256 px; Adam")
    assert "10 % hold-out" in ead.deviations  # the record's text, shown on the method page


def test_method_pages_show_the_algorithm_record(client):
    from algorithms import list_algorithms

    method_sync_from_registry()
    assert client.get("/methods/fastflow/").status_code == 404  # public once it has a published result
    client.force_login(UserFactory(is_staff=True))
    listing = client.get("/methods/").content.decode()
    assert "Memory bank" in listing and "Normalizing flow" in listing and "memory_bank" not in listing
    # the library holds every algorithm the VisionAD paper benchmarks, and the page says so
    from algorithms.info import VISIONAD_PAPER_ALGORITHMS

    assert len(VISIONAD_PAPER_ALGORITHMS) == 16 and set(list_algorithms()) >= VISIONAD_PAPER_ALGORITHMS
    assert "reproduces <strong>all 16</strong>" in listing
    assert listing.count('data-tag="visionad"') == 16
    page = client.get("/methods/fastflow/").content.decode()
    for text in ("Normalizing flow", "Publication schedule", "500 epochs, batch 32, 256 px; Adam, lr 1e-3",
                 "licence: Apache-2.0", "Known deviations from the publication", "The authors released no code",
                 "<code>anomaly_map</code> (primary, ranked)"):  # fmt: skip
        assert text in page, text


def test_bar_and_heatmap_figures(catalog):
    cats = catalog["categories"]["mvtec"] + catalog["categories"]["visa"]
    for i in range(12):
        publish_run(MethodFactory(name=f"M{i:02d}"), cats, {m: [0.5 + 0.01 * i] * 5 for m in METRICS})
    board = suite_leaderboard(suite_key="vadi")
    fig = charts.suite_bar_figure(board)
    assert fig["layout"]["barmode"] == "group"
    assert len(fig["data"]) == 10 and fig["data"][0]["name"] == "M11"  # rank order, top 10
    assert fig["data"][0]["x"] == ["I-AUC", "P-AUC", "AUPRO", "PL"] or len(fig["data"][0]["x"]) == 4
    assert fig["data"][0]["y"] == [pytest.approx(0.61)] * 4
    assert fig["data"][0]["error_y"]["array"] == [0.0] * 4
    with pytest.raises(ValueError, match="max_methods"):
        charts.suite_bar_figure(board, max_methods=0)
    heat = charts.breakdown_heatmap_figure(category_breakdown(suite_key="vadi", metric="pl"))
    trace = heat["data"][0]
    assert trace["type"] == "heatmap" and len(trace["z"]) == 12 and len(trace["z"][0]) == 5
    assert trace["x"][0] == "bottle" and trace["zmin"] == 0.0 and trace["zmax"] == 1.0
