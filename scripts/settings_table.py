"""Print (or, with --update, rewrite) the settings table in docs/settings.md from `shared.settings.Settings`;
a test keeps the page in step."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from shared.settings import PROJECT_ROOT, Settings

PREFIX = "PORTRAITS_"
DOC = PROJECT_ROOT / "docs" / "settings.md"
HEADER = "| variable | default | meaning |"


def _default(value: object) -> str:
    if isinstance(value, SecretStr):
        return "(empty)" if not value.get_secret_value() else "(set)"
    if value is None:
        return "(none)"
    text = str(value)
    text = text.replace(str(PROJECT_ROOT), ".")
    return f"`{text}`" if text else "(empty)"


def settings_table() -> str:
    rows = [HEADER, "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{PREFIX}{name.upper()}` | {_default(field.default)} | {field.description} |")
    return "\n".join(rows)


def update_doc(doc: Path = DOC) -> None:
    """Replace the page's table (from its header row to the next blank line or the end) with the current one."""
    text = doc.read_text()
    start = text.index(HEADER)
    end = text.find("\n\n", start)
    if end == -1:
        end = len(text.rstrip("\n"))
    doc.write_text(text[:start] + settings_table() + text[end:])


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--update"]:
        update_doc()
    else:
        print(settings_table())
