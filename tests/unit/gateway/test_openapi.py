"""The OpenAPI document matches the app: same routes and methods, the error envelope, every error code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from services.gateway import errors, openapi
from services.gateway.app import create_app
from shared.errors import InvalidStrength, UnknownStyle
from shared.imaging import CorruptImage, ImageTooLarge, ImageTooSmall, UnsupportedType

GATEWAY_SOURCES = sorted((Path(errors.__file__).parent).glob("*.py"))
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}  # added by Flask to every rule; not documented per operation
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def app() -> Flask:
    # Nothing connects at construction: clients are lazy. The rate limiter is on, as in production.
    return create_app(redis_url="redis://127.0.0.1:1/0", s3_endpoint_url="http://127.0.0.1:1")


@pytest.fixture(scope="module")
def document(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/v1/openapi.json")
    assert response.status_code == 200
    return response.json


def app_routes(app: Flask) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("site."):
            continue  # the website (services/gateway/site.py, #10): the page and its files, not the JSON API
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes |= {(path, method) for method in rule.methods - IMPLICIT_METHODS}
    return routes


def document_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper()) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS
    }


def test_document_describes_exactly_the_apps_routes(app: Flask, document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    assert document_routes(document) == app_routes(app)


def test_route_conversion_is_not_vacuous(app: Flask) -> None:
    assert ("/v1/portraits/{id}", "DELETE") in app_routes(app)
    assert ("/v1/portraits", "POST") in app_routes(app)


def test_path_parameters_are_declared(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        declared = {parameter["name"] for parameter in item.get("parameters", [])}
        assert set(re.findall(r"{([^}]+)}", path)) == declared, path


def test_envelope_schema(document: dict[str, Any]) -> None:
    envelope = document["components"]["schemas"]["Error"]
    assert envelope["required"] == ["error"]
    inner = envelope["properties"]["error"]
    assert set(inner["required"]) == {"code", "message"}
    assert set(inner["properties"]["code"]["enum"]) == set(errors.CODES)


def test_every_error_response_uses_the_envelope(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            assert "500" in operation["responses"], (path, method)
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert {"$ref": openapi.ENVELOPE_REF} in schema["allOf"], (path, method, status)
                    for code in schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]:
                        assert errors.CODES[code].status == int(status), (path, method, code)


def _emitted_codes() -> set[str]:
    """Every code the gateway can put in an envelope: literals passed to ApiError in its source, Werkzeug's
    errors as mapped, and the image errors from shared/ that uploads pass through."""
    literals = set()
    for source in GATEWAY_SOURCES:
        literals |= set(re.findall(r'ApiError\(\s*"([a-z_]+)"', source.read_text()))
    assert {"missing_image", "unavailable", "not_found", "internal_error"} <= literals  # the scan works
    image_errors = {
        cls.code for cls in (CorruptImage, ImageTooLarge, ImageTooSmall, UnsupportedType, UnknownStyle, InvalidStrength)
    }
    return literals | set(errors.HTTP_ERROR_CODES.values()) | errors.IMAGE_ERROR_CODES | image_errors


def test_every_emitted_code_is_documented(document: dict[str, Any]) -> None:
    documented = set(document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    assert _emitted_codes() <= documented


def test_every_code_appears_in_some_response(document: dict[str, Any]) -> None:
    text = str(document["paths"]) + str(document["components"]["responses"])
    assert {code for code in errors.CODES if f"`{code}`" not in text and f"'{code}'" not in text} == set()


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if "$ref" in node else []
            return own + [ref for value in node.values() for ref in refs(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in refs(value)]
        return []

    for ref in refs(document):
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict)
