"""How the engine paints each public style: its recipe and the photo it suits, keyed by the style's name.

The styles themselves — name, family, title, description, default strength, painter — are the public contract in
shared/styles.py, which the gateway reads without importing the engine (#12). This module adds the engine's side:
`RECIPES` (which network and which weights paint a style) and `PROFILES` (the kind of photo it suits best, which
automatic selection uses to choose within a family), and joins the two into `CATALOG`. A test keeps `RECIPES`,
`PROFILES` and the contract to exactly the same names, and each recipe to the painter the contract publishes.

Curated by rendering every candidate on real faces (`portraits sheet PHOTO`) and keeping the ones that read as
paintings while the sitter stays recognisable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from shared.styles import STYLES, Family, Painter, PublicStyle, is_known_choice, public_style

__all__ = [
    "BUILTIN_STYLE_COUNT",
    "CATALOG",
    "PROFILES",
    "RECIPES",
    "BuiltinBlend",
    "Family",
    "GanRecipe",
    "Medium",
    "Profile",
    "Recipe",
    "Style",
    "TextureStyle",
    "get_style",
    "is_known_choice",
    "painter_of",
    "painter_of_recipe",
    "styles_in",
]

BUILTIN_STYLE_COUNT = 26


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
    wash: bool = False  # keep some of the medium's own hue in the face (`likeness.WASH`, #21)


Recipe = BuiltinBlend | TextureStyle | GanRecipe


@dataclass(frozen=True)
class Profile:
    """The photo a style flatters most, in `PhotoFeatures` units."""

    key: float
    warmth: float
    saturation: float


@dataclass(frozen=True)
class Style:
    """A public style (shared/styles.py) with how the engine paints it; reads like the contract plus two fields."""

    public: PublicStyle
    recipe: Recipe
    suits: Profile

    @property
    def name(self) -> str:
        return self.public.name

    @property
    def family(self) -> Family:
        return self.public.family

    @property
    def title(self) -> str:
        return self.public.title

    @property
    def description(self) -> str:
        return self.public.description

    @property
    def strength(self) -> float:
        """Default strength, 0..1."""
        return self.public.strength

    @property
    def painter(self) -> Painter:
        """`face-gan` when a face GAN repaints the face, `style-transfer` when the photo is painted over."""
        return self.public.painter

    def as_dict(self) -> dict[str, object]:
        return self.public.as_dict()


def _builtin(*weights: tuple[int, float]) -> BuiltinBlend:
    return BuiltinBlend(tuple(weights))


def painter_of_recipe(recipe: Recipe) -> Painter:
    """The painter a recipe implies, which the contract's `painter` must match (test_catalog.py holds them)."""
    return Painter.FACE_GAN if isinstance(recipe, GanRecipe) else Painter.STYLE_TRANSFER


RECIPES: Mapping[str, Recipe] = {
    "oil-portrait": GanRecipe(Medium.OIL_PAINTING, structure=Medium.COLOR_SKETCH),
    "old-master-portrait": GanRecipe(Medium.OIL_PAINTING, structure=Medium.COLOR_SKETCH, old_master=True),
    "chiaroscuro": _builtin((10, 0.6), (23, 0.4)),
    "umber-impasto": TextureStyle("umber-impasto"),
    "cobalt-impasto": _builtin((19, 1.0)),
    "fauve": _builtin((4, 1.0)),
    "golden-glaze": _builtin((0, 1.0)),
    "watercolor-portrait": GanRecipe(Medium.COLOR_INK, paper=True, wash=True),
    "blue-wash": _builtin((14, 1.0)),
    "rose-wash": _builtin((8, 1.0)),
    "lilac-pastel": _builtin((12, 0.6), (14, 0.4)),
    "pigment-bloom": TextureStyle("pigment-blooms"),
    "pencil-portrait": GanRecipe(Medium.COLOR_SKETCH, paper=True),
    "pen-and-ink": TextureStyle("ink-strokes"),
    "tinted-drawing": TextureStyle("ink-strokes"),
    "sepia-brush": _builtin((18, 1.0)),
    "sumi-e": _builtin((2, 1.0)),
}

PROFILES: Mapping[str, Profile] = {
    "oil-portrait": Profile(key=0.45, warmth=0.15, saturation=0.30),
    "old-master-portrait": Profile(key=0.35, warmth=0.20, saturation=0.25),
    "chiaroscuro": Profile(key=0.30, warmth=0.20, saturation=0.25),
    "umber-impasto": Profile(key=0.45, warmth=0.25, saturation=0.30),
    "cobalt-impasto": Profile(key=0.45, warmth=0.0, saturation=0.30),
    "fauve": Profile(key=0.58, warmth=0.22, saturation=0.45),
    "golden-glaze": Profile(key=0.62, warmth=0.12, saturation=0.30),
    "watercolor-portrait": Profile(key=0.65, warmth=0.10, saturation=0.25),
    "blue-wash": Profile(key=0.70, warmth=0.0, saturation=0.15),
    "rose-wash": Profile(key=0.75, warmth=0.15, saturation=0.30),
    "lilac-pastel": Profile(key=0.60, warmth=0.05, saturation=0.25),
    "pigment-bloom": Profile(key=0.60, warmth=0.20, saturation=0.35),
    "pencil-portrait": Profile(key=0.55, warmth=0.10, saturation=0.15),
    "pen-and-ink": Profile(key=0.50, warmth=0.05, saturation=0.05),
    "tinted-drawing": Profile(key=0.55, warmth=0.20, saturation=0.25),
    "sepia-brush": Profile(key=0.50, warmth=0.20, saturation=0.12),
    "sumi-e": Profile(key=0.45, warmth=0.0, saturation=0.15),
}

# In the contract's order: each family opens with its face-GAN style, the default of auto selection (#8).
CATALOG: tuple[Style, ...] = tuple(Style(public, RECIPES[public.name], PROFILES[public.name]) for public in STYLES)

_BY_NAME: dict[str, Style] = {style.name: style for style in CATALOG}


def get_style(name: str) -> Style:
    """The style called `name`; raises `UnknownStyle` naming every choice."""
    return _BY_NAME[public_style(name).name]


def painter_of(name: str) -> str:
    return get_style(name).painter


def styles_in(family: Family) -> tuple[Style, ...]:
    return tuple(style for style in CATALOG if style.family is family)
