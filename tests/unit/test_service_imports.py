"""Service boundaries (#12): the gateway and janitor images carry no torch, and no service imports another's code.

Importing the gateway (its app and its WSGI entry point) or the janitor must not pull in torch nor any
`services.worker` module; a static scan keeps imports of `services.worker` out of the gateway's and janitor's
source, and imports of `services.gateway` out of the worker's and janitor's, even where a function-local import
would not run at import time. What they share lives in `shared/` (the job error vocabulary, the style contract).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"


@pytest.mark.parametrize("module", ["services.gateway.app", "services.janitor.main", "services.cli"])
def test_no_torch(module):
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0, f"{module} imports torch"


@pytest.mark.parametrize("module", ["services.gateway.app", "services.gateway.wsgi", "services.janitor.main"])
def test_no_worker_module_is_imported(module):
    code = (
        f"import sys, {module}\n"
        "loaded = [name for name in sorted(sys.modules) if (name + '.').startswith('services.worker.')]\n"
        "sys.exit(', '.join(loaded) or None)"
    )
    result = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True, text=True)
    assert result.returncode == 0, f"{module} imports {result.stderr.strip()}"


def imported_modules(source: Path) -> set[str]:
    """Every module an `import` or `from ... import` names in the file, wherever it stands (functions too);
    relative imports resolved against the file's package."""
    package = ".".join(source.relative_to(SERVICES.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"), filename=str(source))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from services import worker`
    return found


def _crossings(service: str, forbidden: str) -> list[str]:
    sources = sorted((SERVICES / service).rglob("*.py"))
    assert sources, service
    return [
        f"{source.relative_to(SERVICES.parent)} imports {name}"
        for source in sources
        for name in sorted(imported_modules(source))
        if name == forbidden or name.startswith(f"{forbidden}.")
    ]


@pytest.mark.parametrize(
    ("service", "forbidden"),
    [
        ("gateway", "services.worker"),
        ("janitor", "services.worker"),
        ("worker", "services.gateway"),
        ("janitor", "services.gateway"),
    ],
)
def test_no_service_imports_another(service, forbidden):
    assert _crossings(service, forbidden) == []


def test_the_scan_sees_imports():
    # Not vacuous: the worker imports its own modules, the gateway its own (absolute and relative alike).
    assert any(name.startswith("services.worker.") for name in imported_modules(SERVICES / "worker" / "runner.py"))
    assert "services.gateway.errors" in imported_modules(SERVICES / "gateway" / "routes.py")
