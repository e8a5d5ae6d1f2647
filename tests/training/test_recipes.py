"""Every method has a recipe per dataset, and every recipe names real parts, arguments and classes."""

import importlib
import inspect
from pathlib import Path

import pytest
import pytorch_lightning as pl
import yaml

import zoo
from training.pretrain.module import ContrastiveModule
from zoo.build import build_method

RECIPES = Path(__file__).resolve().parents[2] / "training" / "recipes"
DATASETS = ("fashion_mnist", "cifar10", "stl10", "imagenet")


def test_every_method_has_a_recipe_per_dataset():
    expected = {f"{m}/{d}.yaml" for m in zoo.list_methods() for d in DATASETS}
    found = {str(p.relative_to(RECIPES)) for p in RECIPES.glob("*/*.yaml")}
    assert expected <= found, sorted(expected - found)


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_is_valid(path):
    cfg = yaml.safe_load(path.read_text())
    assert set(cfg) == {"seed_everything", "trainer", "model", "data"}
    trainer = {k: v for k, v in cfg["trainer"].items() if k != "callbacks"}
    inspect.signature(pl.Trainer).bind(**trainer)
    for callback in cfg["trainer"]["callbacks"]:
        _import(callback["class_path"])
    data_cls = _import(cfg["data"]["class_path"])
    inspect.signature(data_cls).bind(**cfg["data"]["init_args"])
    model = cfg["model"]
    assert model["method"] == (None if path.parent.name == "examples" else path.parent.name)
    inspect.signature(ContrastiveModule).bind(**model)
    method = zoo.resolve_method(model["method"], **{c: model.get(c) for c in zoo.CHARACTERISTICS})
    if path.stem == "imagenet" and method.encoder.name == "amdim":
        return  # the ImageNet AMDIM encoder has ~200M parameters: arguments checked above, not built here
    parts = build_method(method)
    size = parts.augment.size
    assert size[0] >= 32


def _import(class_path: str):
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)
