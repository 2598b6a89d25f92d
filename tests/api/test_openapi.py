"""The OpenAPI document is valid, served, and lists exactly the routes the application has."""
import json

import pytest
import tornado.web

from vmpooler.api.routes import OPENAPI_FILE

METHODS = ("get", "post", "put", "delete", "patch", "options")


def app_routes(app) -> set:
    """(method, path) of every route of the application (HEAD is implied by GET)."""
    routes = set()
    for rule in app.wildcard_router.rules:
        handler = rule.target
        for method in METHODS:
            if getattr(handler, method) is not getattr(tornado.web.RequestHandler, method):
                routes.add((method, rule.name))
    return routes


def document_routes(document) -> set:
    routes = set()
    for path, item in document["paths"].items():
        if "$ref" in item:
            item = document["paths"][item["$ref"].split("/")[-1].replace("~1", "/").replace("~0", "~")]
        routes.update((method, path) for method in item if method in METHODS)
    return routes


def test_document_is_valid_openapi():
    validate = pytest.importorskip("openapi_spec_validator").validate  # in the [test] extra
    with open(OPENAPI_FILE, encoding="utf-8") as handle:
        validate(json.load(handle))


def test_document_and_routes_do_not_drift(api):
    with open(OPENAPI_FILE, encoding="utf-8") as handle:
        document = json.load(handle)
    in_app, in_document = app_routes(api.app), document_routes(document)
    assert in_app, "no routes found"
    assert in_app - in_document == set(), "routes missing from openapi.json"
    assert in_document - in_app == set(), "openapi.json lists routes the application lacks"


def test_document_is_served(api):
    response = api.get("/api/v1/openapi.json")
    assert response.status == 200 and response.json()["openapi"].startswith("3.")
