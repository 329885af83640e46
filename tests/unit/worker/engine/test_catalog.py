"""The engine's catalog and the public style contract (shared/styles.py) name exactly the same styles (#12)."""

from __future__ import annotations

import pytest

from services.worker.engine import catalog
from services.worker.engine.catalog import CATALOG, PROFILES, RECIPES, get_style, painter_of_recipe
from shared import styles
from shared.errors import UnknownStyle


def test_recipes_profiles_and_contract_cover_the_same_names() -> None:
    names = [style.name for style in styles.STYLES]
    assert len(set(names)) == len(names)
    assert set(RECIPES) == set(PROFILES) == set(names)
    assert [style.name for style in CATALOG] == names  # in the contract's order: families open with their GAN


def test_each_style_is_the_contracts_with_the_engines_recipe() -> None:
    for style in CATALOG:
        assert style.public is styles.public_style(style.name)
        assert (style.recipe, style.suits) == (RECIPES[style.name], PROFILES[style.name])
        # The painter /v1/styles publishes is the one the recipe implies.
        assert style.painter is painter_of_recipe(style.recipe), style.name
        assert style.as_dict() == style.public.as_dict()


def test_the_engine_shares_the_contracts_family_and_choices() -> None:
    assert catalog.Family is styles.Family
    assert catalog.is_known_choice is styles.is_known_choice
    for family in styles.Family:
        assert [s.name for s in catalog.styles_in(family)] == [s.name for s in styles.styles_in(family)]


def test_unknown_names_are_refused_alike() -> None:
    with pytest.raises(UnknownStyle) as engine:
        get_style("no-such-style")
    with pytest.raises(UnknownStyle) as contract:
        styles.public_style("no-such-style")
    assert engine.value.message == contract.value.message
    assert ", ".join(styles.choices()) in engine.value.message
