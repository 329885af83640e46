"""The named styles a portrait can be painted in, grouped into three families.

Curated by rendering every candidate on real faces (`portraits sheet PHOTO`) and keeping the ones that read as
paintings while the sitter stays recognisable. Each style records the kind of photo it suits best (`Profile`),
which automatic selection uses to choose within a family.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.errors import UnknownStyle

BUILTIN_STYLE_COUNT = 26


class Family(StrEnum):
    OIL = "oil"
    WATERCOLOR = "watercolor"
    INK = "ink"


@dataclass(frozen=True)
class BuiltinBlend:
    """A blend of the 26-style network's built-in styles: (index, weight) pairs, normalised on use."""

    weights: tuple[tuple[int, float], ...]

    def vector(self) -> list[float]:
        blend = [0.0] * BUILTIN_STYLE_COUNT
        total = sum(weight for _, weight in self.weights)
        for index, weight in self.weights:
            blend[index] += weight / total
        return blend


@dataclass(frozen=True)
class TextureStyle:
    """A style for the arbitrary network, taken from one of our procedural textures (see `textures.py`)."""

    texture: str


class Medium(StrEnum):
    """The three painting media MediaPipe fine-tuned its face GAN for (#8)."""

    OIL_PAINTING = "oil-painting"
    COLOR_INK = "color-ink"
    COLOR_SKETCH = "color-sketch"


@dataclass(frozen=True)
class GanRecipe:
    """A style whose face is painted by the BlazeStyleGAN of one medium (see `face_painter.py`).

    `structure` swaps in another medium's generator stages up to 64²: the coarse layers decide who the face
    is, the fine ones how it is painted. The oil generator turns every sitter into a young man; with the
    colour-sketch generator's coarse layers it keeps the sitter and still paints in oil (identity study, #8).
    """

    medium: Medium
    paper: bool = False  # the medium paints the head on white paper: composition cuts the paper away
    structure: Medium | None = None
    old_master: bool = False  # grade the finished portrait onto an umber palette (see `compose.py`)


Recipe = BuiltinBlend | TextureStyle | GanRecipe


@dataclass(frozen=True)
class Profile:
    """The photo a style flatters most, in `PhotoFeatures` units."""

    key: float
    warmth: float
    saturation: float


@dataclass(frozen=True)
class Style:
    name: str
    family: Family
    title: str
    description: str
    recipe: Recipe
    strength: float  # default strength, 0..1
    suits: Profile

    @property
    def painter(self) -> str:
        """`face-gan` when a face GAN repaints the face, `style-transfer` when the photo is painted over."""
        return "face-gan" if isinstance(self.recipe, GanRecipe) else "style-transfer"

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "family": self.family.value,
            "title": self.title,
            "description": self.description,
            "strength": self.strength,
            "painter": self.painter,
        }


def _builtin(*weights: tuple[int, float]) -> BuiltinBlend:
    return BuiltinBlend(tuple(weights))


CATALOG: tuple[Style, ...] = (
    # --- oil --- (each family opens with its face-GAN style, the default of auto selection, #8)
    Style(
        "oil-portrait",
        Family.OIL,
        "Oil portrait",
        "The face repainted by a GAN trained on oil portraits: loaded brush, broken colour, a painted ground.",
        GanRecipe(Medium.OIL_PAINTING, structure=Medium.COLOR_SKETCH),
        1.0,
        Profile(key=0.45, warmth=0.15, saturation=0.30),
    ),
    Style(
        "old-master-portrait",
        Family.OIL,
        "Old-master portrait",
        "The oil GAN's brushwork in umber glazes over a dark ground, after the Dutch and Flemish masters.",
        GanRecipe(Medium.OIL_PAINTING, structure=Medium.COLOR_SKETCH, old_master=True),
        1.0,
        Profile(key=0.35, warmth=0.20, saturation=0.25),
    ),
    Style(
        "chiaroscuro",
        Family.OIL,
        "Chiaroscuro",
        "Umber glazes rising out of near-black shadow, after the Dutch masters.",
        _builtin((10, 0.6), (23, 0.4)),
        0.9,
        Profile(key=0.30, warmth=0.20, saturation=0.25),
    ),
    Style(
        "umber-impasto",
        Family.OIL,
        "Umber impasto",
        "Thick diagonal dabs of earth pigment from a loaded brush.",
        TextureStyle("umber-impasto"),
        0.75,
        Profile(key=0.45, warmth=0.25, saturation=0.30),
    ),
    Style(
        "cobalt-impasto",
        Family.OIL,
        "Cobalt impasto",
        "Swirling cobalt and chrome-yellow strokes, after the post-impressionists.",
        _builtin((19, 1.0)),
        0.85,
        Profile(key=0.45, warmth=0.0, saturation=0.30),
    ),
    Style(
        "fauve",
        Family.OIL,
        "Fauve",
        "Flat vermilion and chrome yellow in confident patches, after the Fauves.",
        _builtin((4, 1.0)),
        0.85,
        Profile(key=0.58, warmth=0.22, saturation=0.45),
    ),
    Style(
        "golden-glaze",
        Family.OIL,
        "Golden glaze",
        "Soft golden light over cool sky-blue grounds.",
        _builtin((0, 1.0)),
        0.85,
        Profile(key=0.62, warmth=0.12, saturation=0.30),
    ),
    # --- watercolor ---
    Style(
        "watercolor-portrait",
        Family.WATERCOLOR,
        "Watercolour portrait",
        "The face repainted by a GAN in soft pastel ink washes on white paper.",
        GanRecipe(Medium.COLOR_INK, paper=True),
        1.0,
        Profile(key=0.65, warmth=0.10, saturation=0.25),
    ),
    Style(
        "blue-wash",
        Family.WATERCOLOR,
        "Blue wash",
        "Pale cerulean washes with the paper left to breathe.",
        _builtin((14, 1.0)),
        0.85,
        Profile(key=0.70, warmth=0.0, saturation=0.15),
    ),
    Style(
        "rose-wash",
        Family.WATERCOLOR,
        "Rose wash",
        "Loose rose and turquoise washes on white paper.",
        _builtin((8, 1.0)),
        0.8,
        Profile(key=0.75, warmth=0.15, saturation=0.30),
    ),
    Style(
        "lilac-pastel",
        Family.WATERCOLOR,
        "Lilac pastel",
        "Soft lilac and ochre veils, blended wet into wet.",
        _builtin((12, 0.6), (14, 0.4)),
        0.85,
        Profile(key=0.60, warmth=0.05, saturation=0.25),
    ),
    Style(
        "pigment-bloom",
        Family.WATERCOLOR,
        "Pigment bloom",
        "Translucent pools of pigment with dried, darker rims.",
        TextureStyle("pigment-blooms"),
        0.9,
        Profile(key=0.60, warmth=0.20, saturation=0.35),
    ),
    # --- ink ---
    Style(
        "pencil-portrait",
        Family.INK,
        "Coloured-pencil portrait",
        "The face redrawn by a GAN in coloured-pencil hatching on white paper.",
        GanRecipe(Medium.COLOR_SKETCH, paper=True),
        1.0,
        Profile(key=0.55, warmth=0.10, saturation=0.15),
    ),
    Style(
        "pen-and-ink",
        Family.INK,
        "Pen and ink",
        "A line drawing in black ink on cream paper.",
        TextureStyle("ink-strokes"),
        1.0,
        Profile(key=0.50, warmth=0.05, saturation=0.05),
    ),
    Style(
        "tinted-drawing",
        Family.INK,
        "Tinted drawing",
        "Pen lines over a light wash of the sitter's own colours.",
        TextureStyle("ink-strokes"),
        0.6,
        Profile(key=0.55, warmth=0.20, saturation=0.25),
    ),
    Style(
        "sepia-brush",
        Family.INK,
        "Sepia brush",
        "Brown ink laid with a dry brush on toned paper.",
        _builtin((18, 1.0)),
        0.9,
        Profile(key=0.50, warmth=0.20, saturation=0.12),
    ),
    Style(
        "sumi-e",
        Family.INK,
        "Sumi-e",
        "Bold black brush ink over a thin wash, after East Asian ink painting.",
        _builtin((2, 1.0)),
        0.85,
        Profile(key=0.45, warmth=0.0, saturation=0.15),
    ),
)

_BY_NAME: dict[str, Style] = {style.name: style for style in CATALOG}


def get_style(name: str) -> Style:
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(["auto", *Family, *_BY_NAME])
        raise UnknownStyle(f"unknown style {name!r}; choose one of: {known}") from None


def painter_of(name: str) -> str:
    return get_style(name).painter


def styles_in(family: Family) -> tuple[Style, ...]:
    return tuple(style for style in CATALOG if style.family is family)


def is_known_choice(name: str) -> bool:
    """True for 'auto', a family name or a style name: everything a request may ask for."""
    return name == "auto" or name in Family.__members__.values() or name in _BY_NAME
