"""Browser tests (#10): Playwright (pytest-playwright) drives Debian's chromium — `/usr/bin/chromium`, never a
browser downloaded by `playwright install` — against the real stack of scripts/chaos/stack.py: Redis, SeaweedFS,
the gateway under gunicorn, a prefork Celery worker and the janitor. `make test` installs chromium when it is
missing (scripts/install_deploy_tools.sh).

Screenshots of every screen, desktop (1280×800) and phone (375×812), land in var/screenshots/ (ignored)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from scripts.chaos.stack import ChaosStack
from shared.settings import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 375, "height": 812}}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not CHROMIUM.exists():  # as tests/deploy's tools: missing fails, it is never skipped in CI
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs it (scripts/install_deploy_tools.sh), or "
            "apt-get install --no-install-recommends chromium"
        )
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ChaosStack]:
    with ChaosStack(tmp_path_factory.mktemp("browser-stack"), upload_rate_limit="600/minute") as running:
        yield running


@pytest.fixture(scope="session")
def screenshots() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@dataclass
class Visit:
    """One browser context: its page, every request it made, and what went wrong in it."""

    page: Any
    viewport: str
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def origins(self) -> set[str]:
        return {
            f"{parts.scheme}://{parts.netloc}"
            for parts in map(urlsplit, self.requests)
            if parts.scheme not in {"data", "blob"}
        }


@pytest.fixture
def visit(browser: Any, stack: ChaosStack, screenshots: Path) -> Iterator[Callable[[str], Visit]]:
    contexts: list[Any] = []
    visits: list[Visit] = []

    def open_page(viewport: str) -> Visit:
        context = browser.new_context(
            viewport=VIEWPORTS[viewport],
            accept_downloads=True,
            is_mobile=viewport == "phone",
            has_touch=viewport == "phone",
            base_url=stack.gateway_url,
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        current = Visit(page, viewport)
        page.on("request", lambda request: current.requests.append(request.url))
        page.on("pageerror", lambda error: current.problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                current.problems.append(f"console {message.type}: {message.text}")
                if message.type == "error" and not _expected_console_error(message.text)
                else None
            ),
        )
        visits.append(current)
        return current

    yield open_page
    for context in contexts:
        context.close()


def _expected_console_error(text: str) -> bool:
    # Chromium logs every non-2xx fetch the page makes on purpose (a 404 after Delete now, a refused upload).
    return "Failed to load resource" in text
