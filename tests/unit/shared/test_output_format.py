"""One vocabulary for the portrait's encoding (#23): the setting, the content type, the key extension."""

from __future__ import annotations

import pytest

from shared.output_format import OutputFormat
from shared.settings import Settings


@pytest.mark.parametrize(
    ("output", "content_type", "extension"), [("jpeg", "image/jpeg", "jpg"), ("webp", "image/webp", "webp")]
)
def test_each_format_names_its_content_type_and_extension(output, content_type, extension):
    assert OutputFormat(output).content_type == content_type
    assert OutputFormat(output).extension == extension
    assert OutputFormat.of_content_type(content_type) is OutputFormat(output)


def test_an_unknown_content_type_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="image/png"):
        OutputFormat.of_content_type("image/png")


def test_the_setting_reads_the_environment(monkeypatch):
    monkeypatch.setenv("PORTRAITS_OUTPUT_FORMAT", "webp")
    assert Settings().output_format is OutputFormat.WEBP
    monkeypatch.setenv("PORTRAITS_OUTPUT_FORMAT", "png")
    with pytest.raises(ValueError, match="output_format"):
        Settings()
