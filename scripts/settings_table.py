"""Print (or, with --update-readme, rewrite) the README's settings table from `shared.settings.Settings`;
a test keeps the README in step."""

from __future__ import annotations

from pydantic import SecretStr

from shared.settings import PROJECT_ROOT, Settings

PREFIX = "PORTRAITS_"


def _default(value: object) -> str:
    if isinstance(value, SecretStr):
        return "(empty)" if not value.get_secret_value() else "(set)"
    if value is None:
        return "(none)"
    text = str(value)
    text = text.replace(str(PROJECT_ROOT), ".")
    return f"`{text}`" if text else "(empty)"


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{PREFIX}{name.upper()}` | {_default(field.default)} | {field.description} |")
    return "\n".join(rows)


def update_readme() -> None:
    """Replace the README's table (from its header row to the next blank line) with the current one."""
    readme = PROJECT_ROOT / "README.md"
    text = readme.read_text()
    start = text.index("| variable | default | meaning |")
    end = text.index("\n\n", start)
    readme.write_text(text[:start] + settings_table() + text[end:])


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--update-readme"]:
        update_readme()
    else:
        print(settings_table())
