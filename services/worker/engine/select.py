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


def _warm_or_cool(f: PhotoFeatures) -> str:
    if f.warmth >= 0.12:
        return "warm skin"
    return "cool light" if f.warmth < 0.04 else "neutral skin"


# Checked in order; the first that applies wins. Thresholds were read off real photos (see the README).
FAMILY_RULES: tuple[FamilyRule, ...] = (
    FamilyRule(
        lambda f: f.saturation < 0.08,
        Family.INK,
        lambda f: f"an almost colourless photo (saturation {f.saturation:.2f})",
    ),
    FamilyRule(lambda f: f.key < 0.40, Family.OIL, lambda f: f"low-key light (key {f.key:.2f}) and {_warm_or_cool(f)}"),
    FamilyRule(lambda f: f.contrast > 0.30, Family.INK, lambda f: f"hard contrast (spread {f.contrast:.2f})"),
    FamilyRule(
        lambda f: f.key > 0.58 and f.contrast < 0.24,
        Family.WATERCOLOR,
        lambda f: f"bright, soft high-key light (key {f.key:.2f})",
    ),
    FamilyRule(
        lambda f: f.warmth >= 0.12, Family.OIL, lambda f: f"mid-tone light and warm skin (warmth {f.warmth:.2f})"
    ),
    FamilyRule(lambda f: True, Family.WATERCOLOR, lambda f: f"mid-tone light and {_warm_or_cool(f)}"),
)


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


# Above this redraw error the face GAN's latent has lost the sitter: on the test faces, 0.07 and 0.11 for two
# women the GAN styles keep, 0.19 for Grace Hopper (every medium paints her 35 years younger, oil as a man)
# and 0.19 for a man in three-quarter view (painted frontal, as a woman). Provisional: four faces (#8).
MAX_REDRAW_ERROR = 0.15


def gan_caveat(style: Style, f: PhotoFeatures) -> str | None:
    """Why this GAN style should not be chosen automatically for this photo, or None if it may be (#8)."""
    if f.redraw_error is not None and f.redraw_error > MAX_REDRAW_ERROR:
        return (
            f"the face GAN could not redraw this face faithfully (redraw error {f.redraw_error:.2f} > "
            f"{MAX_REDRAW_ERROR:.2f}), so a style-transfer style keeps the likeness"
        )
    return None


def nearest_in(family: Family, f: PhotoFeatures, paintable: Paintable = _everything) -> tuple[Style, str]:
    """The family's style for this photo, and a note when the family's face GAN was passed over.

    Face-GAN styles come first: they repaint the face instead of filtering the photo (#8). Among equals the
    nearest profile wins; ties break on catalog order, so the choice is deterministic.
    """
    candidates = [style for style in styles_in(family) if paintable(style)]
    gans = [style for style in candidates if isinstance(style.recipe, GanRecipe)]
    caveats = {style.name: gan_caveat(style, f) for style in gans}
    allowed = [style for style in gans if caveats[style.name] is None]
    pool = allowed or [style for style in candidates if not isinstance(style.recipe, GanRecipe)] or candidates
    style = min(pool, key=lambda s: (_distance(s, f), CATALOG.index(s)))
    # Several GAN styles of a family give one caveat per reason (the same likeness check rules them all out).
    note = "; ".join(dict.fromkeys(r for r in caveats.values() if r)) if not allowed and gans else ""
    return style, note


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
        style, note = nearest_in(rule.family, features, paintable)
        reason = f"{rule.because(features)} → {style.title.lower()} {style.family.value}"
    elif requested in {family.value for family in Family}:
        style, note = nearest_in(Family(requested), features, paintable)
        reason = f"{requested} requested; {_warm_or_cool(features)} at key {features.key:.2f} → {style.title.lower()}"
    else:
        note = ""
        style = get_style(requested)
        reason = f"{style.title.lower()} {style.family.value} requested"
    if note:
        reason = f"{reason} ({note})"
    return StyleChoice(style=style, strength=style.strength if strength is None else strength, reason=reason)
