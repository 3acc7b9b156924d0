"""The OpenAPI schema's own promises: errors, examples, parameters; and the server keeps them.

Schemathesis (``test_api_contract.py``) checks answers against the schema with generated
requests; this file pins what the schema must say (every error in the ``Error`` component,
an example request and answer for every operation, each example valid against its schema)
and the strictness the schema declares for query parameters, request by request.
"""

# The shared fixtures are imported; pytest injects them by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import copy

import jsonschema
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from evaluation.tests.bundle_corpus import write_valid
from evaluation.tests.test_submissions import SUITE_KEY, make_catalog, spec_for, tiny_data_root  # noqa: F401

from .factories import UserFactory

pytestmark = pytest.mark.django_db

ERROR_REF = "#/components/schemas/Error"


@pytest.fixture
def schema():
    response = APIClient().get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def _json_schema(node):
    """OpenAPI 3.0 schema -> JSON Schema (draft 2020-12): ``nullable`` becomes a null alternative."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _json_schema(value) for key, value in node.items() if key not in ("example", "readOnly")}
    if node.pop("nullable", False):
        if isinstance(node.get("type"), str) and "enum" not in node:
            node["type"] = [node["type"], "null"]
        else:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


def _validator(schema, subschema):
    root = {**_json_schema(subschema), "components": _json_schema(copy.deepcopy(schema["components"]))}
    return jsonschema.Draft202012Validator(root, format_checker=jsonschema.FormatChecker())


def test_every_error_answer_uses_the_error_component(schema):
    for name, operation in _operations(schema):
        statuses = set(operation["responses"])
        assert "401" in statuses, name  # a token that is not valid is refused everywhere
        if "{" in name:
            assert "404" in statuses, name
        if any(p["in"] == "query" for p in operation.get("parameters", [])) or "requestBody" in operation:
            assert "400" in statuses, name
        for status, response in operation["responses"].items():
            if status.startswith("4"):
                assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (name, status)


def test_every_operation_has_an_example_request_and_answer(schema):
    for name, operation in _operations(schema):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert "example" in parameter, (name, parameter["name"])
        if "requestBody" in operation:
            for media_type, body in operation["requestBody"]["content"].items():
                assert body.get("examples"), (name, media_type)
        for status, response in operation["responses"].items():
            assert response["content"]["application/json"].get("examples"), (name, status)


def test_examples_are_valid_against_their_schemas(schema):
    checked = 0
    for name, operation in _operations(schema):
        for parameter in operation.get("parameters", []):
            if "example" in parameter:
                _validator(schema, parameter["schema"]).validate(parameter["example"])
                checked += 1
        for status, response in operation["responses"].items():
            content = response["content"]["application/json"]
            validator = _validator(schema, content["schema"])
            for example in content["examples"].values():
                errors = [e.message for e in validator.iter_errors(example["value"])]
                assert not errors, (name, status, errors)
                checked += 1
        if "requestBody" in operation:
            content = operation["requestBody"]["content"]
            json_body = content.get("application/json")
            if json_body:
                for example in json_body["examples"].values():
                    _validator(schema, json_body["schema"]).validate(example["value"])
                    checked += 1
    assert checked > 60


def test_lists_say_they_are_paginated(schema):
    listed = {name: op for name, op in _operations(schema) if op["operationId"].endswith("_list")}
    for name, operation in listed.items():
        answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
        if name.startswith("GET /api/v1/staff/"):
            assert answer["type"] == "array"  # the latest 100 runs, not paginated
            continue
        component = schema["components"]["schemas"][answer["$ref"].rsplit("/", 1)[1]]
        assert set(component["required"]) == {"count", "next", "previous", "results"}, name
        names = {p["name"]: p for p in operation["parameters"]}
        assert names["limit"]["schema"]["minimum"] == 1 and names["limit"]["schema"]["maximum"] == 1000
        assert names["offset"]["schema"]["minimum"] == 0


def test_upload_is_multipart_with_a_binary_archive_and_links_to_its_status(schema):
    upload = schema["paths"]["/api/v1/submissions/"]["post"]
    assert list(upload["requestBody"]["content"]) == ["multipart/form-data"]
    ref = upload["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert body["properties"]["archive"] == {"type": "string", "format": "binary", "description": "The bundle zip."}
    assert set(upload["responses"]) >= {"201", "400", "401", "403", "413", "415", "429"}
    link = upload["responses"]["201"]["links"]["GetSubmission"]
    assert link == {
        "operationId": "submissions_retrieve",
        "parameters": {"id": "$response.body#/id"},
        "description": link["description"],
    }
    assert {"tokenAuth": []} in upload["security"] and {} not in upload["security"]
    staff = schema["paths"]["/api/v1/staff/benchmark-runs/"]["post"]
    assert list(staff["requestBody"]["content"]) == ["application/json"]
    assert staff["responses"]["201"]["links"]["GetBenchmarkRun"]["parameters"] == {"run_id": "$response.body#/0/id"}


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/api/v1/results/", {"method": ""}, "method"),  # empty: the schema says minLength 1
        ("/api/v1/submissions/", {"method": ""}, "method"),
        ("/api/v1/results/", {"metric": "0"}, "metric"),  # an enum
        ("/api/v1/results/", {"method": "a b"}, "method"),  # a key pattern
        ("/api/v1/results/", {"method": "abc\n"}, "method"),  # a whole-value pattern, as in JSON Schema
        ("/api/v1/results/", {"method": "x" * 81}, "method"),
        ("/api/v1/results/", {"evaluator_version": "v\x01"}, "evaluator_version"),  # control characters
        ("/api/v1/results/", {"current": "1"}, "current"),  # true or false only
        ("/api/v1/results/", {"limit": "0"}, "limit"),
        ("/api/v1/results/", {"limit": "1001"}, "limit"),
        ("/api/v1/results/", {"limit": "ten"}, "limit"),
        ("/api/v1/results/", {"offset": "-1"}, "offset"),
        ("/api/v1/datasets/", {"offset": "1.5"}, "offset"),
        ("/api/v1/categories/", {"dataset": ["mvtec", "visa"]}, "dataset"),  # repeated
        ("/api/v1/leaderboard/vadi/", {"provenance": ""}, "provenance"),
    ],
)
def test_the_server_refuses_what_the_schema_refuses(url, params, field):
    response = APIClient().get(url, params)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["details"], error


def test_the_server_accepts_what_the_schema_allows(catalog):
    api = APIClient()
    assert api.get("/api/v1/results/", {"current": "false", "limit": "1000", "offset": "0"}).status_code == 200
    spaced = {"evaluator_version": "  spaced  ", "category": "mvtec/x y"}  # taken as given, matching nothing
    assert api.get("/api/v1/results/", spaced).json()["count"] == 0
    assert api.get("/api/v1/categories/", {"dataset": "mvtec", "limit": "1"}).json()["count"] == 3
    assert api.get("/api/v1/categories/mvtec%2Fbottle/").status_code == 200  # the key's slash, encoded
    assert api.get("/api/v1/categories/mvtec/no%00pe/").status_code == 404


def test_staff_errors_use_the_format(catalog):
    api = APIClient()
    staff = UserFactory(is_staff=True)
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff).key}")
    response = api.post("/api/v1/staff/benchmark-runs/", {"methods": ["nope"]}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and "nope" in error["message"] and error["details"] == [error["message"]]
    form = api.post("/api/v1/staff/benchmark-runs/", {"methods": "random"})  # multipart: JSON only
    assert form.status_code == 415 and form.json()["error"]["code"] == "unsupported_media_type"
    odd_digit = api.post("/api/v1/staff/benchmark-runs/", {"methods": ["random"], "device": "cuda:٣"}, format="json")
    assert odd_digit.json()["error"]["details"] == {"device": ["Enter auto, cpu, mps, cuda or cuda:N."]}


def _follow(schema, link, answer, api):
    """GET the operation a link names, with its parameters read from ``answer`` (JSON pointers)."""
    path, _ = next((p, op) for p, item in schema["paths"].items() for op in item.values()
                   if op["operationId"] == link["operationId"])  # fmt: skip
    for name, expression in link["parameters"].items():
        pointer = expression.removeprefix("$response.body#")
        value = answer
        for part in pointer.strip("/").split("/"):
            value = value[int(part)] if isinstance(value, list) else value[part]
        path = path.replace("{" + name + "}", str(value))
    return api.get(path)


def test_the_links_lead_from_a_create_to_what_it_created(schema, settings, tiny_data_root, tmp_path):
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(tiny_data_root)}
    make_catalog(tiny_data_root)
    bundle = write_valid(tmp_path / "bundle.zip", spec_for(tiny_data_root, method="Linked net"))
    api = APIClient()
    api.force_authenticate(UserFactory(is_staff=True))
    with open(bundle, "rb") as archive:
        created = api.post("/api/v1/submissions/", {"method": "Linked net", "suite": SUITE_KEY, "archive": archive})
    assert created.status_code == 201, created.content
    link = schema["paths"]["/api/v1/submissions/"]["post"]["responses"]["201"]["links"]["GetSubmission"]
    read = _follow(schema, link, created.json(), api)
    assert read.status_code == 200 and read.json()["id"] == created.json()["id"]

    from leaderboard.services import method_sync_from_registry

    method_sync_from_registry()
    body = {"methods": ["random"], "suites": [SUITE_KEY], "config": "tiny", "device": "cpu"}
    started = api.post("/api/v1/staff/benchmark-runs/", body, format="json")
    assert started.status_code == 201, started.content
    link = schema["paths"]["/api/v1/staff/benchmark-runs/"]["post"]["responses"]["201"]["links"]["GetBenchmarkRun"]
    read = _follow(schema, link, started.json(), api)
    assert read.status_code == 200 and read.json()["id"] == started.json()[0]["id"]
