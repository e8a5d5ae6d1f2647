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
