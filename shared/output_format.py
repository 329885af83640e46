"""The portrait's encodings: one vocabulary for the setting, the engine's encoder, the result's content type and
its object key's extension (#23: these were four tables in four modules). No Pillow here: the janitor, which
imports the storage layer, carries none."""

from __future__ import annotations

from enum import StrEnum


class OutputFormat(StrEnum):
    JPEG = "jpeg"
    WEBP = "webp"

    @property
    def content_type(self) -> str:
        return f"image/{self.value}"

    @property
    def extension(self) -> str:
        """The result object's key extension (results/<id>.<extension>)."""
        return "jpg" if self is OutputFormat.JPEG else self.value

    @classmethod
    def of_content_type(cls, content_type: str) -> OutputFormat:
        for output in cls:
            if output.content_type == content_type:
                return output
        raise ValueError(f"no output format has the content type {content_type!r}")
