"""The public style contract (#12): what a request may ask for and what /v1/styles lists."""

from __future__ import annotations

from shared.styles import AUTO, STYLES, Family, Painter, choices, is_known_choice, styles_in


def test_choices_are_auto_families_then_styles() -> None:
    assert choices() == [AUTO, "oil", "watercolor", "ink", *(style.name for style in STYLES)]
    assert all(is_known_choice(choice) for choice in choices())
    assert not is_known_choice("Oil") and not is_known_choice("") and not is_known_choice("no-such-style")


def test_each_family_opens_with_its_face_gan_style() -> None:
    for family in Family:
        members = styles_in(family)
        assert members and members[0].painter is Painter.FACE_GAN
        assert all(style.family is family for style in members)


def test_a_style_as_listed() -> None:
    listed = STYLES[0].as_dict()
    assert set(listed) == {"name", "family", "title", "description", "strength", "painter"}
    assert all(type(value) is str for key, value in listed.items() if key != "strength")  # plain JSON strings
    assert all(0 < style.strength <= 1 for style in STYLES)
