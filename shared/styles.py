"""The public style contract: the named styles a portrait can be painted in, grouped into three families.

What a client may ask for and what /v1/styles, the OpenAPI document and the page show: each style's name, family,
title, description, default strength and painter. How a style is painted (its recipe, the photo it suits) is the
engine's business and stays in services/worker/engine/catalog.py, keyed by these names; a test keeps the two to
the same names. Here so that the gateway can validate and list styles without importing the worker (#12).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.errors import UnknownStyle

#: What a request asks for when it names no style: the engine chooses a family and style for the photo.
AUTO = "auto"


class Family(StrEnum):
    OIL = "oil"
    WATERCOLOR = "watercolor"
    INK = "ink"


class Painter(StrEnum):
    """How the portrait is made, as /v1/styles reports it."""

    FACE_GAN = "face-gan"  # a face GAN repaints the face
    STYLE_TRANSFER = "style-transfer"  # the photo is painted over


@dataclass(frozen=True)
class PublicStyle:
    name: str
    family: Family
    title: str
    description: str
    # Public too: /v1/styles publishes it, and a job whose strength is null was painted at it.
    strength: float  # default strength, 0..1
    painter: Painter

    def as_dict(self) -> dict[str, object]:
        """The style as /v1/styles lists it."""
        return {
            "name": self.name,
            "family": self.family.value,
            "title": self.title,
            "description": self.description,
            "strength": self.strength,
            "painter": self.painter.value,
        }


STYLES: tuple[PublicStyle, ...] = (
    # Each family opens with its face-GAN style, the default of auto selection (#8).
    PublicStyle(
        "oil-portrait",
        Family.OIL,
        "Oil portrait",
        "The face repainted by a GAN trained on oil portraits: loaded brush, broken colour, a painted ground.",
        1.0,
        Painter.FACE_GAN,
    ),
    PublicStyle(
        "old-master-portrait",
        Family.OIL,
        "Old-master portrait",
        "The oil GAN's brushwork in umber glazes over a dark ground, after the Dutch and Flemish masters.",
        1.0,
        Painter.FACE_GAN,
    ),
    PublicStyle(
        "chiaroscuro",
        Family.OIL,
        "Chiaroscuro",
        "Umber glazes rising out of near-black shadow, after the Dutch masters.",
        0.9,
        Painter.STYLE_TRANSFER,
    ),
    PublicStyle(
        "umber-impasto",
        Family.OIL,
        "Umber impasto",
        "Thick diagonal dabs of earth pigment from a loaded brush.",
        0.75,
        Painter.STYLE_TRANSFER,
    ),
    PublicStyle(
        "cobalt-impasto",
        Family.OIL,
        "Cobalt impasto",
        "Swirling cobalt and chrome-yellow strokes, after the post-impressionists.",
        0.85,
        Painter.STYLE_TRANSFER,
    ),
    PublicStyle(
        "fauve",
        Family.OIL,
        "Fauve",
        "Flat vermilion and chrome yellow in confident patches, after the Fauves.",
        0.85,
        Painter.STYLE_TRANSFER,
    ),
    PublicStyle(
        "golden-glaze",
        Family.OIL,
        "Golden glaze",
        "Soft golden light over cool sky-blue grounds.",
        0.85,
        Painter.STYLE_TRANSFER,
    ),
    PublicStyle(
        "watercolor-portrait",
        Family.WATERCOLOR,
        "Watercolour portrait",
        "The face repainted by a GAN in soft pastel ink washes on white paper.",
        1.0,
        Painter.FACE_GAN,
    ),
    PublicStyle(
        "blue-wash",
        Family.WATERCOLOR,
        "Blue wash",
        "Pale cerulean washes with the paper left to breathe.",
        0.85,
        Painter.STYLE_TRANSFER,
    ),
    PublicStyle(
        "rose-wash",
        Family.WATERCOLOR,
        "Rose wash",
        "Loose rose and turquoise washes on white paper.",
        0.8,
        Painter.STYLE_TRANSFER,
    ),
    PublicStyle(
        "lilac-pastel",
        Family.WATERCOLOR,
        "Lilac pastel",
        "Soft lilac and ochre veils, blended wet into wet.",
        0.85,
        Painter.STYLE_TRANSFER,
    ),
    PublicStyle(
        "pigment-bloom",
        Family.WATERCOLOR,
        "Pigment bloom",
        "Translucent pools of pigment with dried, darker rims.",
        0.9,
        Painter.STYLE_TRANSFER,
    ),
    PublicStyle(
        "pencil-portrait",
        Family.INK,
        "Coloured-pencil portrait",
        "The face redrawn by a GAN in coloured-pencil hatching on white paper.",
        1.0,
        Painter.FACE_GAN,
    ),
    PublicStyle(
        "pen-and-ink",
        Family.INK,
        "Pen and ink",
        "A line drawing in black ink on cream paper.",
        1.0,
        Painter.STYLE_TRANSFER,
    ),
    PublicStyle(
        "tinted-drawing",
        Family.INK,
        "Tinted drawing",
        "Pen lines over a light wash of the sitter's own colours.",
        0.6,
        Painter.STYLE_TRANSFER,
    ),
    PublicStyle(
        "sepia-brush",
        Family.INK,
        "Sepia brush",
        "Brown ink laid with a dry brush on toned paper.",
        0.9,
        Painter.STYLE_TRANSFER,
    ),
    PublicStyle(
        "sumi-e",
        Family.INK,
        "Sumi-e",
        "Bold black brush ink over a thin wash, after East Asian ink painting.",
        0.85,
        Painter.STYLE_TRANSFER,
    ),
)

_BY_NAME: dict[str, PublicStyle] = {style.name: style for style in STYLES}


def public_style(name: str) -> PublicStyle:
    """The style called `name`; raises `UnknownStyle` naming every choice."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownStyle(f"unknown style {name!r}; choose one of: {', '.join(choices())}") from None


def styles_in(family: Family) -> tuple[PublicStyle, ...]:
    return tuple(style for style in STYLES if style.family is family)


def choices() -> list[str]:
    """Everything a request may ask for: 'auto', the families, then the styles."""
    return [AUTO, *(family.value for family in Family), *_BY_NAME]


def is_known_choice(name: str) -> bool:
    """True for 'auto', a family name or a style name: everything a request may ask for."""
    return name == AUTO or name in Family.__members__.values() or name in _BY_NAME
