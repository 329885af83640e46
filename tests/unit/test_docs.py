"""The README stays true to the code it documents."""

from __future__ import annotations

from scripts.settings_table import settings_table
from services.worker.engine.catalog import CATALOG
from shared.settings import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def test_settings_table_is_current():
    assert settings_table() in README, "regenerate it: python -m scripts.settings_table --update-readme"


def test_every_style_is_documented():
    for style in CATALOG:
        assert f"`{style.name}`" in README


def test_the_two_commands_are_there():
    assert "make run" in README and "make test" in README
