"""The page has a human sentence for every error code a person can meet (#10): the gateway's closed list
(errors.py CODES) and the codes a failed job carries (the job error vocabulary in shared/errors.py, which since
#12 holds the engine's PortraitErrors and the worker's own failures alike). A code added there without a sentence
here fails this test, not a person in front of the page."""

from __future__ import annotations

import re

from services.gateway.errors import CODES
from shared.errors import job_error_codes
from shared.settings import PROJECT_ROOT

STATIC = PROJECT_ROOT / "services" / "gateway" / "static"


def page_messages() -> set[str]:
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    block = script[script.index("const MESSAGES = {") :]
    block = block[: block.index("\n};")]
    return set(re.findall(r"^\s+([a-z_]+): \"", block, flags=re.M))


def test_every_error_code_has_a_sentence_on_the_page() -> None:
    codes = set(CODES) | set(job_error_codes())
    # The worker's own failures and the engine's device error are in the vocabulary now, not found by scanning
    # runner.py or named here by hand (tests/unit/gateway/test_job_errors.py keeps the source to it).
    assert set(job_error_codes()) >= {"source_expired", "timeout", "worker_lost", "device_unavailable"}
    assert codes - page_messages() == set()


def test_page_has_no_inline_script_or_style() -> None:
    # The CSP (site.py) forbids them: a slip would only show as a broken page in a browser.
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "<style" not in html and " style=" not in html and not re.search(r"\son[a-z]+=", html)
