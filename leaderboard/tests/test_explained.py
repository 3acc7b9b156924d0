"""PL explained, reported versus reproduced, and the comparison page (issue 14).

Fast tests on factory data whose localisation documents are real ``localisation_report``s of small
masks and maps: the stored records, the per-defect-type tables, PL as a function of the IoU limit
(equal to ``proportion_localised`` at every limit), the reported figures kept apart from the
numbers, the comparison's differences, and a constant number of queries as methods grow.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from evaluation.metrics import localisation_report, proportion_localised
from leaderboard.models import Localisation, Result
from leaderboard.selectors.localisation import IOU_LIMITS, gallery_choice, localisation_get, pl_curve
from leaderboard.selectors.reported import method_reported_comparison, reported_figures
from leaderboard.selectors.visibility import ANONYMOUS
from leaderboard.services.localisation import defect_summary, localisation_record

from .conftest import publish_run
from .factories import MethodFactory

pytestmark = pytest.mark.django_db

TYPES = ("crack", "scratch", "stain")


def make_case(seed: int, n: int = 6, size: int = 64) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Masks with one or two rectangles per anomalous image, noisy maps that roughly follow them."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n + 1, size, size), np.uint8)
    types = []
    for i in range(n):
        for _ in range(int(rng.integers(1, 3))):
            y, x = rng.integers(0, size - 16, 2)
            h, w = rng.integers(4, 16, 2)
            masks[i, y : y + h, x : x + w] = 1
        types.append(TYPES[i % len(TYPES)])
    types.append("good")
    maps = masks * rng.uniform(0.2, 1.0, (n + 1, 1, 1)) + rng.normal(0, 0.35, masks.shape)
    return masks, maps.astype(np.float32), types


def document(masks, maps, types) -> dict:
    """What the runner stores: the report with each anomaly's image id and defect type."""
    doc = localisation_report(masks, maps).to_dict()
    for a in doc["anomalies"]:
        a["image_id"] = f"id{a['image_index']:03d}"
        a["defect_type"] = types[a["image_index"]]
    doc["size"] = masks.shape[1]
    return doc


def values_with_pl(pl: float, n: int) -> dict:
    return {"image_auroc": [0.9] * n, "pixel_auroc": [0.95] * n, "aupro": [0.8] * n, "pl": [pl] * n}


def explain(method, categories, seed: int = 0) -> list[Localisation]:
    """Publish a run of ``method`` whose PL values are real, each with its localisation record."""
    cases = [make_case(seed + i) for i in range(len(categories))]
    docs = [document(*case) for case in cases]
    publish_run(method, categories, {**values_with_pl(0.5, len(categories)), "pl": [d["pl"] for d in docs]})
    out = []
    for category, doc in zip(categories, docs, strict=True):
        result = Result.objects.get(method=method, category=category, metric="pl", is_current=True)
        out.append(localisation_record(result=result, document=doc, seed=0))
    return out


def test_the_record_and_its_summary(catalog):
    cats = catalog["categories"]["synthetic"]
    (loc, _) = explain(MethodFactory(key="m1"), cats)
    assert loc.n_anomalies == len(loc.anomalies) > 0
    assert loc.n_localised == sum(a["localised"] for a in loc.anomalies)
    assert loc.threshold == loc.thresholds[loc.threshold_index] and len(loc.thresholds) == 25
    assert sum(total for _, total in loc.defect_summary.values()) == loc.n_anomalies
    assert list(loc.defect_summary) == sorted(loc.defect_summary)
    assert defect_summary([{"defect_type": "a", "localised": True}, {"defect_type": "a", "localised": False}]) == {
        "a": [1, 2]
    }
    # recording again updates the one row
    again = localisation_record(result=loc.result, document={**_doc_of(loc), "anomalies": loc.anomalies[:1]})
    assert again.pk == loc.pk and again.n_anomalies == 1


def _doc_of(loc: Localisation) -> dict:
    return {"iou_limit": loc.iou_limit, "thresholds": loc.thresholds, "threshold_index": loc.threshold_index,
            "anomalies": loc.anomalies, "size": loc.size}  # fmt: skip


def test_the_record_refuses_what_is_not_a_pl_explanation(catalog):
    cats = catalog["categories"]["synthetic"]
    (loc, _) = explain(MethodFactory(key="m1"), cats)
    other = Result.objects.filter(metric="aupro").first()
    with pytest.raises(ValidationError, match="explains a PL result"):
        localisation_record(result=other, document=_doc_of(loc))
    with pytest.raises(ValidationError, match="one IoU per threshold"):
        bad = {**_doc_of(loc), "anomalies": [{**loc.anomalies[0], "ious": []}]}
        localisation_record(result=loc.result, document=bad)
    with pytest.raises(ValidationError, match="threshold_index"):
        localisation_record(result=loc.result, document={**_doc_of(loc), "threshold_index": 25})


@pytest.mark.parametrize("seed", [1, 7, 19])
def test_pl_by_iou_limit_from_the_stored_ious_equals_proportion_localised(catalog, seed):
    """The chart's values, read back from the database, are PL itself at every limit 0.1 .. 0.9."""
    masks, maps, types = make_case(seed, n=8, size=96)
    method = MethodFactory(key="m1")
    category = catalog["categories"]["synthetic"][0]
    publish_run(method, [category], values_with_pl(proportion_localised(masks, maps), 1))
    result = Result.objects.get(method=method, metric="pl", is_current=True)
    localisation_record(result=result, document=document(masks, maps, types))
    detail = localisation_get(result_pk=result.pk, viewer=ANONYMOUS)
    assert [limit for limit, _ in detail.curve] == list(IOU_LIMITS)
    for limit, value in detail.curve:
        assert value == proportion_localised(masks, maps, iou_limit=limit), limit
    assert dict(detail.curve)[0.3] == result.value
    values = [v for _, v in detail.curve]
    assert values == sorted(values, reverse=True)  # a stricter limit never finds more


def test_gallery_choice_alternates_missed_and_found_on_distinct_images():
    anomalies = [{"image_index": i // 2, "localised": i % 3 == 0} for i in range(12)]
    chosen = gallery_choice(anomalies, size=4)
    assert len({a["image_index"] for a in chosen}) == len(chosen) == 4
    assert [a["localised"] for a in chosen][:2] == [False, True]
    assert pl_curve([]) == ()


def test_pages_show_the_defect_tables_the_curve_and_the_anomalies(client, catalog):
    cats = catalog["categories"]["synthetic"]
    method = MethodFactory(key="m1", name="Method One")
    woven, _ = explain(method, cats)
    page = client.get(reverse("leaderboard:category-detail", args=[cats[0].key])).content.decode()
    assert 'id="defect-table"' in page and 'data-method="m1"' in page
    for defect_type, (found, total) in woven.defect_summary.items():
        assert f'data-defect="{defect_type}">{found} of {total}</td>' in page
    assert reverse("leaderboard:result-localisation", args=[woven.result_id]) in page
    page = client.get(reverse("leaderboard:method-detail", args=["m1"])).content.decode()
    assert 'id="defect-table"' in page and f'data-category="{cats[1].key}"' in page
    response = client.get(reverse("leaderboard:result-localisation", args=[woven.result_id]))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="pl-iou-figure"' in html and 'id="anomaly-table"' in html
    assert html.count('data-found="') == woven.n_anomalies
    figure = json.loads(re.search(r'id="pl-iou-figure" type="application/json">(.*?)</script>', html).group(1))
    assert figure["data"][0]["x"] == list(IOU_LIMITS)
    # factory runs saved no predictions: the gallery says why it is empty, and its images are 404s
    assert "No maps were saved" in html
    assert client.get(reverse("leaderboard:result-localisation-image", args=[woven.result_id, 0])).status_code == 404


def test_an_unpublished_result_has_no_explanation_page(client, catalog):
    cats = catalog["categories"]["synthetic"]
    woven, _ = explain(MethodFactory(key="m1"), cats)
    woven.result.benchmark_run.is_published = False
    woven.result.benchmark_run.save()
    assert client.get(reverse("leaderboard:result-localisation", args=[woven.result_id])).status_code == 404


# Reported versus reproduced ------------------------------------------------------------------


def test_reported_figures_are_data_with_their_table():
    figures = reported_figures(method_key="patchcore")
    visionad = [f for f in figures if f.source == "visionad"]
    assert len(visionad) == (15 + 1) * 4 + (12 + 1) * 4  # every class and the mean, in all eight tables
    bottle = {f.metric: f for f in visionad if f.category == "mvtec/bottle"}
    assert bottle["image_auroc"].value == 1.0 and bottle["image_auroc"].table == "Table 2"
    means = {(f.dataset, f.metric): f.value for f in visionad if f.category is None}
    assert means[("mvtec", "image_auroc")] == 0.987 and means[("visa", "image_auroc")] == 0.928
    assert {f.table for f in visionad} == {f"Table {n}" for n in range(2, 10)}
    own = [f for f in figures if f.source == "own_paper"]
    assert own and all(f.cited and f.table for f in own)
    flagged = [f for f in reported_figures(method_key="cflow") if f.value > 1]
    assert flagged and all("misprint" in f.note for f in flagged)


def test_reported_figures_sit_beside_ours_and_never_in_the_numbers(client, catalog):
    cats = catalog["categories"]["mvtec"]  # bottle, cable, carpet: 3 of MVTec AD's 15
    method = MethodFactory(key="patchcore", name="PatchCore", algorithm_key="patchcore")
    publish_run(method, cats, values_with_pl(0.5, 3))
    comparison = method_reported_comparison(method_key="patchcore")
    mvtec = next(d for d in comparison.datasets if d.key == "mvtec")
    bottle = next(r for r in mvtec.rows if r.label == "mvtec/bottle")
    assert bottle.cells["pl"].ours == 0.5 and bottle.cells["pl"].visionad.table == "Table 5"
    assert bottle.cells["pl"].diff_visionad == pytest.approx(0.5 - bottle.cells["pl"].visionad.value)
    mean = mvtec.rows[-1]
    assert mean.is_mean and mean.n_ours == 3 and mean.cells["image_auroc"].ours is None  # 3 of 15: no mean
    assert mean.cells["image_auroc"].own_paper.value == 0.991
    assert Result.objects.filter(method=method).count() == 12  # nothing reported became a result
    html = client.get(reverse("leaderboard:method-detail", args=["patchcore"])).content.decode()
    assert 'id="reported-means"' in html and 'id="reported-mvtec"' in html and "reported (VisionAD)" in html
    assert "VisionAD Table 5" in html and "(3 of 15 categories)" in html and "PatchCore paper" in html
    home = client.get("/", {"suite": "mvtec"}).content.decode()
    assert "0.987" not in home and "reported" not in home.lower()  # never on the leaderboard
    unknown = MethodFactory(key="no_papers")
    publish_run(unknown, cats, values_with_pl(0.5, 3))
    html = client.get(reverse("leaderboard:method-detail", args=["no_papers"])).content.decode()
    assert 'id="reported-none"' in html


# Compare ---------------------------------------------------------------------------------------


def test_compare_sets_two_methods_side_by_side_with_differences(client, catalog):
    cats = catalog["categories"]["mvtec"] + catalog["categories"]["visa"]
    publish_run(MethodFactory(key="alpha", name="Alpha"), cats, values_with_pl(0.7, 5))
    beta_values = values_with_pl(0.4, 5)
    beta_values["aupro"] = [0.9, 0.9, 0.9, 0.9, 0.6]
    publish_run(MethodFactory(key="beta", name="Beta"), cats, beta_values)
    response = client.get(reverse("leaderboard:compare"), {"suite": "vadi", "a": "alpha", "b": "beta"})
    html = response.content.decode()
    assert response.status_code == 200 and 'id="compare-table"' in html
    assert html.count("<tr data-category=") == 5
    assert '<td class="num diff-pos" data-metric="pl">+0.300</td>' in html
    assert '<td class="num diff-neg" data-metric="aupro">-0.100</td>' in html
    assert '<td class="num diff-pos" data-metric="aupro">+0.200</td>' in html
    means = re.search(r'<tr data-metric="aupro">(.*?)</tr>', html).group(1)
    assert "0.800" in means and "0.840" in means and "-0.040" in means and "5 of 5" in means
    empty = client.get(reverse("leaderboard:compare"), {"suite": "vadi"}).content.decode()
    assert "Choose two methods." in empty and '<option value="alpha">Alpha</option>' in empty
    assert client.get(reverse("leaderboard:compare"), {"suite": "nope"}).status_code == 404


# Queries ----------------------------------------------------------------------------------------


def _queries(client, url: str, params=None) -> int:
    from django.core.cache import cache

    cache.clear()
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, params or {})
    assert response.status_code == 200, url
    return len(ctx.captured_queries)


def test_the_new_pages_keep_a_constant_number_of_queries_as_methods_grow(client, catalog):
    cats = catalog["categories"]["synthetic"]
    first = [MethodFactory(key=f"m{i}", name=f"M{i}") for i in range(2)]
    locs = [explain(m, cats, seed=3 * i) for i, m in enumerate(first)]
    pages = [
        (reverse("leaderboard:category-detail", args=[cats[0].key]), None),
        (reverse("leaderboard:method-detail", args=["m0"]), None),
        (reverse("leaderboard:compare"), {"suite": "synthetic", "a": "m0", "b": "m1"}),
        (reverse("leaderboard:result-localisation", args=[locs[0][0].result_id]), None),
    ]
    before = [_queries(client, url, params) for url, params in pages]
    for i in range(2, 8):
        explain(MethodFactory(key=f"m{i}", name=f"M{i}"), cats, seed=3 * i)
    after = [_queries(client, url, params) for url, params in pages]
    assert after == before, list(zip((p for p, _ in pages), before, after, strict=True))
    page = client.get(reverse("leaderboard:category-detail", args=[cats[0].key])).content.decode()
    assert page.count('<tr data-method="m') >= 8 * 2  # the results table and the defect table grew


def test_a_blind_suite_names_no_test_image_and_no_box(client, catalog):
    """A dataset whose ground truth is not public shows no PL explanation at all (issue 15: no
    per-anomaly or per-defect-type figure of a blind suite), even if a localisation was stored."""
    from leaderboard.models import Localisation

    from .factories import CategoryFactory, DatasetFactory

    blind = CategoryFactory(dataset=DatasetFactory(key="factory_x", name="Blind"), name="part")
    (loc,) = explain(MethodFactory(key="m1"), [blind])
    with pytest.raises(Localisation.DoesNotExist):
        localisation_get(result_pk=loc.result_id, viewer=ANONYMOUS)
    answer = client.get(reverse("leaderboard:result-localisation", args=[loc.result_id]))
    assert answer.status_code == 404 and "id000" not in answer.content.decode()
    assert client.get(reverse("leaderboard:result-localisation-image", args=[loc.result_id, 0])).status_code == 404
    page = client.get(reverse("leaderboard:category-detail", args=[blind.key])).content.decode()
    assert 'id="defect-table"' not in page  # no per-defect-type table for it either


def test_the_gallery_drawing_marks_found_and_missed_boxes_and_the_region():
    from leaderboard.gallery import FOUND_BGR, MISSED_BGR, PREDICTED_BGR, SCALE, draw_example

    image = np.full((64, 64, 3), 128, np.uint8)
    region = np.zeros((64, 64), bool)
    region[10:20, 10:20] = True
    box = {"center_x": 15.0, "center_y": 15.0, "width": 12.0, "height": 12.0, "angle": 0.0}
    drawn = draw_example(image, region, [{**box, "localised": True}, {**box, "center_x": 45.0, "localised": False}])
    assert drawn.shape == (64 * SCALE, 64 * SCALE, 3)
    colours = {tuple(int(c) for c in px) for px in drawn.reshape(-1, 3)}
    assert FOUND_BGR in colours and MISSED_BGR in colours and PREDICTED_BGR in colours
    assert tuple(drawn[0, 0]) == (128, 128, 128)  # outside everything: the image itself
