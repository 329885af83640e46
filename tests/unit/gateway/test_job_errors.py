"""The OpenAPI document is held to the job error vocabulary (#12): every code of shared/errors.py in, nothing
else, and no code a job can carry outside the vocabulary — not a PortraitError subclass anywhere in the engine,
not a literal code in the services' source."""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Any

import pytest

from services.gateway import errors, openapi
from services.janitor import sweeper
from shared.errors import JOB_ERRORS, JobErrorCode, PortraitError
from shared.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    openapi.document.cache_clear()  # built from the vocabulary, not from whatever happens to be imported
    return openapi.document()


def _job_error_schema(document: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"]["JobError"]
    return schema


def test_the_document_lists_every_job_error_code_and_nothing_else(document: dict[str, Any]) -> None:
    code = _job_error_schema(document)["properties"]["code"]
    assert set(code["enum"]) == {member.value for member in JobErrorCode}
    assert len(code["enum"]) == len(JobErrorCode)
    # Each code explained in its description, once, with its default message.
    for member, row in JOB_ERRORS.items():
        assert code["description"].count(f"`{member}`") == 1
        assert row.message in code["description"]
    # The five the subclass walk used to miss (#12).
    assert {"source_expired", "source_unreadable", "unavailable", "timeout", "device_unavailable"} <= set(code["enum"])


def test_every_job_error_in_the_document_is_the_vocabulary(document: dict[str, Any]) -> None:
    ref = {"$ref": openapi.JOB_ERROR_REF}
    portrait_error = document["components"]["schemas"]["Portrait"]["properties"]["error"]
    assert portrait_error["oneOf"] == [{"type": "null"}, ref]
    webhook = document["webhooks"]["portraitFinished"]["post"]["requestBody"]["content"]["application/json"]
    assert webhook["schema"]["properties"]["data"]["properties"]["error"]["oneOf"] == [{"type": "null"}, ref]
    assert openapi.JOB_ERROR_REF == "#/components/schemas/JobError"


def _import_all(package: str) -> None:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
        importlib.import_module(info.name)


def _subclasses(cls: type[PortraitError]) -> set[type[PortraitError]]:
    found: set[type[PortraitError]] = set()
    pending = list(cls.__subclasses__())
    while pending:
        sub = pending.pop()
        found.add(sub)
        pending.extend(sub.__subclasses__())
    return found


def test_every_portrait_error_anywhere_carries_a_code_of_the_vocabulary() -> None:
    # A test may import the worker (the gateway may not): every engine module, so no subclass hides.
    _import_all("services.worker.engine")
    _import_all("shared")
    subclasses = _subclasses(PortraitError)
    assert {cls.__name__ for cls in subclasses} >= {"RuntimeUnavailable", "ModelFilesError", "NoFace"}  # it walked
    for cls in {PortraitError, *subclasses}:
        assert isinstance(cls.code, JobErrorCode), cls
        assert cls.code in JOB_ERRORS, cls


_LITERAL_CODES = (
    re.compile(r'(?:JobFailure|Failure)\(\s*"([a-z_]+)"'),  # the runner's constants, before #12
    re.compile(r'error_code\s*=\s*"([a-z_]+)"'),  # a transition written with a literal (the sweeper's, before)
    re.compile(r'\bcode\s*=\s*"([a-z_]+)"'),  # a PortraitError subclass's class attribute
)


def test_no_literal_job_error_code_outside_the_vocabulary() -> None:
    """Codes still spelled out in the worker (runner.py until its constants use the vocabulary) are at least in
    it. Webhook URL errors (`code = "invalid_callback_url"`) are upload refusals, not job errors: in CODES."""
    literals: set[str] = set()
    for source in [*(PROJECT_ROOT / "services").rglob("*.py"), *(PROJECT_ROOT / "shared").rglob("*.py")]:
        text = source.read_text(encoding="utf-8")
        for pattern in _LITERAL_CODES:
            literals |= set(pattern.findall(text))
    assert literals - {member.value for member in JobErrorCode} - set(errors.CODES) == set()


def test_the_gateway_answers_job_codes_with_the_vocabularys_status() -> None:
    for member, row in JOB_ERRORS.items():
        if row.status is not None:
            assert errors.CODES[member].status == row.status, member
    for code in errors.IMAGE_ERROR_CODES:
        assert JOB_ERRORS[code].status == errors.CODES[code].status


def test_the_janitor_fails_an_expired_source_as_the_worker_does() -> None:
    assert sweeper.SOURCE_EXPIRED == JobErrorCode.SOURCE_EXPIRED.failure
    assert not hasattr(sweeper, "SOURCE_EXPIRED_MESSAGE")  # one message, whoever notices (#12)
