"""The public API of ``zoo`` is pinned: moving modules around (e.g. into ``zoo.pretrained``) must not change it."""

import zoo

PUBLIC = [
    "CHARACTERISTICS", "Encoder", "EvalTransform", "Method", "Part", "REGISTRIES", "UnknownNameError", "ZooError",
    "eval_transform", "get_card", "get_method", "list_encoders", "list_methods", "list_parts", "load_encoder",
    "register_method", "resolve_method",
]


def test_zoo_all_is_pinned():
    assert zoo.__all__ == PUBLIC


def test_every_public_name_resolves():
    for name in PUBLIC:
        assert getattr(zoo, name) is not None, name


def test_pretrained_api_is_what_zoo_exports():
    from zoo.pretrained import api

    for name in ("load_encoder", "list_encoders", "get_card", "eval_transform"):
        assert getattr(zoo, name) is getattr(api, name)


def test_card_templates_are_package_data():
    from zoo.pretrained.cards import template_text

    assert "{front_matter}" in (template_text() or "")
    assert template_text("entries/yadim.fashion_mnist.md")
    assert template_text("entries/no-such-entry.md") is None
