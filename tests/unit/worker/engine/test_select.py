"""Style selection: deterministic, explained, overridable, and different for clearly different photos."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.worker.engine.catalog import CATALOG, Family, GanRecipe, get_style, is_known_choice
from services.worker.engine.features import PhotoFeatures
from services.worker.engine.select import choose_style
from shared.errors import InvalidStrength, UnknownStyle

NEUTRAL = PhotoFeatures(key=0.5, contrast=0.2, warmth=0.08, saturation=0.25, face_fraction=0.1, face_offset=0.1)


def test_same_photo_same_choice():
    assert choose_style(NEUTRAL) == choose_style(NEUTRAL)


@pytest.mark.parametrize(
    ("features", "family", "phrase"),
    [
        (replace(NEUTRAL, saturation=0.03), Family.INK, "colourless"),
        (replace(NEUTRAL, key=0.3, warmth=0.2), Family.OIL, "low-key light"),
        (replace(NEUTRAL, contrast=0.34), Family.INK, "hard contrast"),
        (replace(NEUTRAL, key=0.7, contrast=0.18), Family.WATERCOLOR, "high-key"),
        (replace(NEUTRAL, warmth=0.2), Family.OIL, "warm skin"),
        (replace(NEUTRAL, warmth=0.0), Family.WATERCOLOR, "cool light"),
    ],
)
def test_light_decides_the_family_and_the_reason_says_so(features, family, phrase):
    choice = choose_style(features)
    assert choice.style.family is family
    assert phrase in choice.reason
    assert choice.reason.endswith(f"{choice.style.title.lower()} {family.value}")


VARIANTS = [
    replace(NEUTRAL, key=k, warmth=w, saturation=s, contrast=c)
    for k in (0.3, 0.5, 0.7)
    for w in (0.0, 0.2)
    for s in (0.05, 0.3)
    for c in (0.15, 0.35)
]


def test_each_family_is_painted_by_its_face_gan_by_default():
    chosen = {choose_style(f).style for f in VARIANTS}
    assert {style.family for style in chosen} == set(Family)
    assert all(isinstance(style.recipe, GanRecipe) for style in chosen)


def test_without_the_face_gan_different_photos_get_different_styles():
    def style_transfer_only(style):
        return not isinstance(style.recipe, GanRecipe)

    chosen = {choose_style(f, paintable=style_transfer_only).style for f in VARIANTS}
    assert len(chosen) >= 5 and not any(isinstance(style.recipe, GanRecipe) for style in chosen)


def test_named_style_overrides_selection():
    choice = choose_style(NEUTRAL, "sumi-e", strength=0.4)
    assert choice.style.name == "sumi-e" and choice.strength == 0.4
    assert "requested" in choice.reason


def test_family_request_chooses_within_the_family():
    for family in Family:
        assert choose_style(NEUTRAL, family.value).style.family is family


def test_unknown_style_and_bad_strength():
    with pytest.raises(UnknownStyle) as raised:
        choose_style(NEUTRAL, "cubism")
    assert "chiaroscuro" in raised.value.message  # the message lists what is available
    with pytest.raises(InvalidStrength):
        choose_style(NEUTRAL, "auto", strength=1.5)


def test_catalog_is_well_formed():
    names = [style.name for style in CATALOG]
    assert len(names) == len(set(names))
    assert {style.family for style in CATALOG} == set(Family)
    for style in CATALOG:
        assert 0 < style.strength <= 1
        assert is_known_choice(style.name) and get_style(style.name) is style
    assert is_known_choice("auto") and is_known_choice("ink") and not is_known_choice("cubism")


def test_a_face_the_gan_cannot_redraw_gets_a_style_transfer_style_and_the_reason_says_why():
    faithful = replace(NEUTRAL, redraw_error=0.08)
    lost = replace(NEUTRAL, redraw_error=0.21)
    assert isinstance(choose_style(faithful).style.recipe, GanRecipe)
    for requested in ("auto", "oil", "watercolor", "ink"):
        choice = choose_style(lost, requested)
        assert not isinstance(choice.style.recipe, GanRecipe)
        assert choice.reason.count("could not redraw this face faithfully (redraw error 0.21 > 0.15)") == 1
    # A GAN style asked for by name is painted as asked.
    assert choose_style(lost, "oil-portrait").style.name == "oil-portrait"
