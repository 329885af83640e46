"""The engine reads its fields from the service settings by name, with the settings' own option types (#23)."""

from __future__ import annotations

import typing
from dataclasses import fields

from services.worker.engine.config import EngineConfig, RuntimeConfig
from shared.settings import Settings


def test_every_field_is_the_setting_of_the_same_name():
    settings = Settings(output_size=1024, device="cpu", precision="fp32", face_upscaler="bicubic", torch_threads=3)
    config = EngineConfig.from_settings(settings)
    for field in fields(EngineConfig):
        if field.name != "runtime":
            assert getattr(config, field.name) == getattr(settings, field.name), field.name
    assert config.runtime == RuntimeConfig(device="cpu", precision="fp32", torch_threads=3)


def test_the_option_types_are_the_settings_own():
    engine = typing.get_type_hints(EngineConfig) | typing.get_type_hints(RuntimeConfig)
    for name in ("device", "precision", "face_upscaler", "output_format"):
        assert engine[name] is Settings.model_fields[name].annotation, name
