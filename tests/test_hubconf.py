"""torch.hub: entry points come from the weights registry and return what zoo.load_encoder returns."""

from pathlib import Path

import pytest
import torch

import zoo
from tests.helpers.zoo_exports import make_export, outputs
from training.release.publish import publish

REPO_DIR = str(Path(__file__).resolve().parents[1])


@pytest.fixture()
def extra_registry(tmp_path, monkeypatch):
    """A registry layered on the package one through ZOO_REGISTRY, holding one tiny entry."""
    reg = tmp_path / "extra.json"
    publish(str(make_export(tmp_path / "exp", seed=3, name="yadim.tiny-hubconf")), package=True, registry=str(reg))
    monkeypatch.setenv("ZOO_REGISTRY", str(reg))
    return reg


def hubconf_module():
    """hubconf.py imported the way torch.hub does (torch.hub.list/help only take GitHub repos)."""
    return torch.hub._import_module("hubconf", str(Path(REPO_DIR) / "hubconf.py"))


def test_entry_points_are_the_registry_names(extra_registry):
    module = hubconf_module()
    names = [f for f in dir(module) if callable(getattr(module, f)) and not f.startswith("_")]  # torch.hub.list
    expected = {n.replace(".", "_").replace("-", "_") for n in zoo.list_encoders()}
    assert "yadim_tiny_hubconf" in expected
    assert set(names) == expected | {"encoder"}


def test_torch_hub_load_equals_load_encoder(extra_registry):
    via_hub = torch.hub.load(REPO_DIR, "yadim_tiny_hubconf", source="local", force_reload=True)
    direct = zoo.load_encoder("yadim.tiny-hubconf")
    assert torch.equal(outputs(via_hub), outputs(direct))
    doc = hubconf_module().yadim_tiny_hubconf.__doc__
    assert "AMDIM encoder" in doc and "fashion_mnist/knn 0.5300" in doc
    random = torch.hub.load(REPO_DIR, "yadim_tiny_hubconf", source="local", pretrained=False)
    assert random.zoo_source["pretrained"] is False
