"""Stage 4 — select a style: deterministic rules over measured photo properties, with a reason people can read.

First the light decides the family (the way a painter would choose a medium), then the style within the family
whose `Profile` is nearest to the photo. A style or family named in the request overrides the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.worker.engine.catalog import CATALOG, Family, GanRecipe, Style, get_style, is_known_choice, styles_in
from services.worker.engine.features import PhotoFeatures
from shared.errors import InvalidStrength


@dataclass(frozen=True)
class StyleChoice:
    style: Style
    strength: float
    reason: str


@dataclass(frozen=True)
class FamilyRule:
    applies: Callable[[PhotoFeatures], bool]
    family: Family
    because: Callable[[PhotoFeatures], str]


def _skin_and_light(f: PhotoFeatures) -> str:
    if f.warmth >= 0.12:
        return "warm skin tones"
    return "a cool cast" if f.warmth < 0.04 else "neutral skin tones"


# Checked in order; the first that applies wins. Thresholds were read off real photos (docs/engine.md,
# "Automatic selection"). The reasons are for the person who sent the photo: plain words, no figures — the
# figures are in the job's features and the worker's logs (#21).
FAMILY_RULES: tuple[FamilyRule, ...] = (
    FamilyRule(lambda f: f.saturation < 0.08, Family.INK, lambda f: "your photo is almost colourless"),
    FamilyRule(
        lambda f: f.key < 0.40, Family.OIL, lambda f: f"your photo has low, dramatic light and {_skin_and_light(f)}"
    ),
    FamilyRule(
        lambda f: f.contrast > 0.30, Family.INK, lambda f: "your photo has hard contrast between light and shadow"
    ),
    FamilyRule(
        lambda f: f.key > 0.58 and f.contrast < 0.24, Family.WATERCOLOR, lambda f: "your photo has bright, soft light"
    ),
    FamilyRule(lambda f: f.warmth >= 0.12, Family.OIL, lambda f: "your photo has even light and warm skin tones"),
    FamilyRule(lambda f: True, Family.WATERCOLOR, lambda f: f"your photo has even light and {_skin_and_light(f)}"),
)
# What each family is called in a reason.
MEDIUM_WORDS = {Family.OIL: "oil paint", Family.WATERCOLOR: "watercolour", Family.INK: "ink and pencil"}


def _distance(style: Style, f: PhotoFeatures) -> float:
    # Key and warmth matter most for how a palette sits on skin; saturation refines.
    return (
        (style.suits.key - f.key) ** 2
        + (style.suits.warmth - f.warmth) ** 2
        + 0.5 * (style.suits.saturation - f.saturation) ** 2
    )


Paintable = Callable[[Style], bool]


def _everything(style: Style) -> bool:
    return True


def _is_gan(style: Style) -> bool:
    return isinstance(style.recipe, GanRecipe)


def nearest_in(family: Family, f: PhotoFeatures, paintable: Paintable = _everything, *, gan: bool = True) -> Style:
    """The family's style for this photo: its face-GAN style first (it repaints the face instead of filtering
    the photo, #8), unless `gan` is False; among equals the nearest profile wins, ties on catalog order, so the
    choice is deterministic."""
    candidates = [style for style in styles_in(family) if paintable(style)]
    pool = [s for s in candidates if _is_gan(s) == gan] or candidates
    return min(pool, key=lambda s: (_distance(s, f), CATALOG.index(s)))


def check_request(requested: str, strength: float | None) -> None:
    """Refuse a bad style or strength before any work is done on the photo."""
    if strength is not None and not 0.0 <= strength <= 1.0:
        raise InvalidStrength(f"strength must be between 0 and 1, got {strength}")
    if not is_known_choice(requested):
        get_style(requested)  # raises UnknownStyle listing the choices


def choose_style(
    features: PhotoFeatures, requested: str = "auto", strength: float | None = None, paintable: Paintable = _everything
) -> StyleChoice:
    check_request(requested, strength)
    if requested == "auto":
        rule = next(rule for rule in FAMILY_RULES if rule.applies(features))
        style = nearest_in(rule.family, features, paintable)
        because = rule.because(features)
        reason = f"{because[0].upper()}{because[1:]}, which suits {MEDIUM_WORDS[style.family]}: {_named(style)}."
    elif requested in {family.value for family in Family}:
        style = nearest_in(Family(requested), features, paintable)
        reason = (
            f"You asked for {MEDIUM_WORDS[style.family]}; for {_skin_and_light(features)} in this light we chose "
            f"{_named(style)}."
        )
    else:
        style = get_style(requested)
        reason = f"You asked for {_named(style)}."
    return StyleChoice(style=style, strength=style.strength if strength is None else strength, reason=reason)


def _named(style: Style) -> str:
    return f"the {style.title.lower()} style"


def may_fall_back(requested: str) -> bool:
    """Whether the likeness check may swap a face-GAN choice for a style-transfer one: only where the style was
    ours to choose (auto or a family). A face-GAN style asked for by name is painted as asked."""
    return requested == "auto" or requested in {family.value for family in Family}


def unlike_sitter(
    choice: StyleChoice, features: PhotoFeatures, strength: float | None = None, paintable: Paintable = _everything
) -> StyleChoice:
    """The choice to paint instead when the face GAN's portrait did not pass the likeness check (#21): the
    family's nearest style-transfer style, which paints over the photo itself, and a reason that says so. The
    choice itself where the family has no style-transfer style to paint with."""
    style = nearest_in(choice.style.family, features, paintable, gan=False)
    if _is_gan(style):
        return choice
    reason = (
        f"{choice.reason} The face our painter drew did not look enough like you, so we used {_named(style)} "
        "instead, which paints over your own photo and keeps your likeness."
    )
    return StyleChoice(style=style, strength=style.strength if strength is None else strength, reason=reason)
