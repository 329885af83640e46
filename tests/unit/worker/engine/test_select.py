"""Style selection: deterministic, explained, overridable, and different for clearly different photos."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.worker.engine.catalog import CATALOG, Family, GanRecipe, get_style, is_known_choice
from services.worker.engine.features import PhotoFeatures
from services.worker.engine.select import MEDIUM_WORDS, choose_style, may_fall_back, unlike_sitter
from shared.errors import InvalidStrength, UnknownStyle

NEUTRAL = PhotoFeatures(key=0.5, contrast=0.2, warmth=0.08, saturation=0.25, face_fraction=0.1, face_offset=0.1)


def test_same_photo_same_choice():
    assert choose_style(NEUTRAL) == choose_style(NEUTRAL)


@pytest.mark.parametrize(
    ("features", "family", "phrase"),
    [
        (replace(NEUTRAL, saturation=0.03), Family.INK, "colourless"),
        (replace(NEUTRAL, key=0.3, warmth=0.2), Family.OIL, "low, dramatic light"),
        (replace(NEUTRAL, contrast=0.34), Family.INK, "hard contrast"),
        (replace(NEUTRAL, key=0.7, contrast=0.18), Family.WATERCOLOR, "bright, soft light"),
        (replace(NEUTRAL, warmth=0.2), Family.OIL, "warm skin"),
        (replace(NEUTRAL, warmth=0.0), Family.WATERCOLOR, "a cool cast"),
    ],
)
def test_light_decides_the_family_and_the_reason_says_so(features, family, phrase):
    choice = choose_style(features)
    assert choice.style.family is family
    assert phrase in choice.reason
    assert choice.reason.endswith(f"which suits {MEDIUM_WORDS[family]}: the {choice.style.title.lower()} style.")


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
    assert choice.reason == "You asked for the sumi-e style."


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


def test_a_portrait_unlike_the_sitter_falls_back_to_the_familys_style_transfer_and_says_so_in_words():
    for requested in ("auto", "oil", "watercolor", "ink"):
        choice = choose_style(NEUTRAL, requested)
        assert isinstance(choice.style.recipe, GanRecipe) and may_fall_back(requested)
        fallback = unlike_sitter(choice, NEUTRAL)
        assert fallback.style.family is choice.style.family and not isinstance(fallback.style.recipe, GanRecipe)
        assert fallback.reason.startswith(choice.reason)
        assert "did not look enough like you" in fallback.reason and fallback.style.title.lower() in fallback.reason
    assert unlike_sitter(choose_style(NEUTRAL), NEUTRAL, strength=0.3).strength == 0.3
    # A GAN style asked for by name is painted as asked.
    assert not may_fall_back("oil-portrait")


@pytest.mark.parametrize("requested", ["auto", "oil", "watercolor", "ink", "oil-portrait", "sumi-e"])
def test_no_reason_quotes_a_figure(requested):
    """Reasons are for people (#21): the measured key, warmth or distance stay in the job record and the logs."""
    odd = [
        replace(NEUTRAL, key=k, warmth=w, saturation=s, contrast=c)
        for k, w, s, c in [
            (0.123, 0.456, 0.05, 0.15),
            (0.3, 0.2, 0.3, 0.35),
            (0.7, 0.0, 0.3, 0.1),
            (0.5, 0.07, 0.3, 0.2),
        ]
    ]
    for features in odd:
        choice = choose_style(features, requested)
        for reason in (choice.reason, unlike_sitter(choice, features).reason):
            assert not any(ch.isdigit() for ch in reason), reason
            assert reason[0].isupper() and reason.endswith(".")
