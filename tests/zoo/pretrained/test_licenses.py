"""Every weights-registry entry states a licence; only weights trained by this project default to its own."""

import json

import pytest

from zoo.errors import ZooError
from zoo.pretrained.cards import front_matter
from zoo.pretrained.licenses import PROJECT_LICENSE, config_license
from zoo.pretrained.weights_registry import PACKAGE_REGISTRY, WeightsRegistry, record_entry
from zoo.spec import Method

OURS = {"recipe": {"trainer": {}}}
IMPORTED = {"recipe": {"legacy_format": "pl_bolts"}}


def test_our_weights_default_to_the_project_licence():
    assert PROJECT_LICENSE == "apache-2.0"
    assert config_license(OURS) == PROJECT_LICENSE
    assert config_license({**OURS, "license": "mit"}) == "mit"


def test_imported_weights_must_state_their_licence():
    with pytest.raises(ZooError, match="imported from another project"):
        config_license(IMPORTED)
    assert config_license(IMPORTED, required=False) is None
    assert config_license({**IMPORTED, "license": "cc-by-nc-4.0"}) == "cc-by-nc-4.0"
    with pytest.raises(ZooError, match="license must be"):
        config_license({**IMPORTED, "license": "Not A Licence!"})


def test_registry_entries_require_a_licence(tmp_path):
    entry = WeightsRegistry([PACKAGE_REGISTRY]).get("yadim").to_json()
    assert entry["license"] == PROJECT_LICENSE
    entry["source"] = {"kind": "package", "folder": "x"}
    del entry["license"]
    with pytest.raises(ZooError, match="'license' is missing"):
        record_entry(tmp_path / "r.json", "x.y", entry)
    record_entry(tmp_path / "r.json", "x.y", {**entry, "license": "mit"})
    assert json.loads((tmp_path / "r.json").read_text())["entries"]["x.y"]["license"] == "mit"
    assert WeightsRegistry([tmp_path / "r.json"]).get("x.y").license == "mit"


def test_the_card_metadata_carries_the_config_licence():
    config = json.loads((PACKAGE_REGISTRY.parent / "yadim.fashion_mnist" / "config.json").read_text())
    method = Method.from_dict(config["method"])
    assert "license: apache-2.0" in front_matter(config, method)
    assert "license: mit" in front_matter({**config, "license": "mit"}, method)
    assert "license: other" in front_matter({**config, "recipe": IMPORTED["recipe"]}, method)


def card_license(card: str) -> str:
    """The ``license:`` of a model card's YAML front matter."""
    import yaml

    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])["license"]


def test_every_registry_entry_and_shipped_card_states_the_same_licence():
    registry = WeightsRegistry([PACKAGE_REGISTRY])
    assert registry.entries  # the walk below covers something
    for name, entry in registry.entries.items():
        if entry.kind == "release":  # no shipped folder: tests/zoo/pretrained/test_releases.py checks these licences
            continue
        folder = entry.package_folder()
        config = json.loads((folder / "config.json").read_text())
        assert entry.license == config_license(config, name) == card_license((folder / "README.md").read_text()), name


def test_imported_weights_carry_their_origin_licence_into_config_card_and_registry(tmp_path, capsys):
    from tests.helpers.zoo_exports import make_export
    from training.release.publish import publish
    from zoo.build import build_encoder
    from zoo.pretrained.export_folder import exported_config

    method = Method.from_dict(json.loads((PACKAGE_REGISTRY.parent / "yadim.fashion_mnist" / "config.json")
                                         .read_text())["method"])
    encoder = build_encoder(method.encoder)
    config = {fmt: exported_config(method, encoder, name="x.y", dataset=None, training={},
                                   recipe={"legacy_format": fmt}) for fmt in ("swav_fair", "pl_bolts_simclr", "nowhere")}
    assert config["swav_fair"]["license"] == "cc-by-nc-4.0" and config["pl_bolts_simclr"]["license"] == "apache-2.0"
    assert "license" not in config["nowhere"]  # unknown origin: no guess, publishing refuses it
    assert "license: cc-by-nc-4.0" in front_matter(config["swav_fair"], method).splitlines()
    explicit = exported_config(method, encoder, name="x.y", dataset=None, training={}, license="mit",
                               recipe={"legacy_format": "moco"})
    assert explicit["license"] == "mit"

    folder = make_export(tmp_path / "nc")
    saved = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**saved, "license": "cc-by-nc-4.0",
                                                    "recipe": {"legacy_format": "moco"}}))
    capsys.readouterr()
    publish(str(folder), package=True, registry=str(tmp_path / "reg" / "registry.json"), name="moco.nc")
    assert capsys.readouterr().err == ("warning: moco.nc is licensed cc-by-nc-4.0, which forbids commercial use; "
                                       "whoever loads it from this registry is bound by that licence\n")
    entry = WeightsRegistry([tmp_path / "reg" / "registry.json"]).get("moco.nc")
    assert entry.license == "cc-by-nc-4.0"
    assert card_license((tmp_path / "reg" / "moco.nc" / "README.md").read_text()) == "cc-by-nc-4.0"


def test_publishing_commercially_usable_weights_prints_no_warning(tmp_path, capsys):
    from tests.helpers.zoo_exports import make_export
    from training.release.publish import publish
    from zoo.pretrained.licenses import forbids_commercial_use

    assert [forbids_commercial_use(x) for x in ("cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-3.0", "cc-by-4.0",
                                                "apache-2.0", "mit", "cc-by-sa-4.0")] == [True] * 3 + [False] * 4
    folder = make_export(tmp_path / "ours")
    capsys.readouterr()
    publish(str(folder), package=True, registry=str(tmp_path / "reg" / "registry.json"))
    assert capsys.readouterr().err == ""
