"""A contact sheet of the whole catalog on real photos: how the catalog is curated (`portraits sheet`)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw
from tqdm import tqdm

from services.worker.engine.catalog import CATALOG
from shared.errors import PortraitError

if TYPE_CHECKING:
    from services.worker.engine.pipeline import PortraitEngine

TILE_WIDTH = 200
LABEL_HEIGHT = 18


def render_contact_sheet(engine: PortraitEngine, photos: Sequence[bytes], output: Path) -> None:
    """One row per photo: the framed photo (strength 0), then every catalog style."""
    columns = ["photo", *(style.name for style in CATALOG)]
    rows: list[list[Image.Image]] = []
    with tqdm(total=len(photos) * len(columns), desc="rendering", unit="tile") as progress:
        for data in photos:
            row = []
            for column in columns:
                style = CATALOG[0].name if column == "photo" else column
                strength = 0.0 if column == "photo" else None
                try:
                    portrait = engine.render(data, style=style, strength=strength)
                    tile = Image.open(io.BytesIO(portrait.data)).convert("RGB")
                except PortraitError as exc:
                    tile = _error_tile(exc)
                row.append(tile.resize((TILE_WIDTH, round(tile.height * TILE_WIDTH / tile.width))))
                progress.update()
            rows.append(row)
    tile_height = max(tile.height for row in rows for tile in row)
    sheet = Image.new("RGB", (TILE_WIDTH * len(columns), (tile_height + LABEL_HEIGHT) * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        top = r * (tile_height + LABEL_HEIGHT)
        for c, (name, tile) in enumerate(zip(columns, row)):
            draw.text((c * TILE_WIDTH + 4, top + 3), name, fill="black")
            sheet.paste(tile, (c * TILE_WIDTH, top + LABEL_HEIGHT))
    sheet.save(output)


def _error_tile(error: PortraitError) -> Image.Image:
    tile = Image.new("RGB", (TILE_WIDTH, TILE_WIDTH * 5 // 4), "lightgrey")
    ImageDraw.Draw(tile).text((6, 6), error.code, fill="black")
    return tile
