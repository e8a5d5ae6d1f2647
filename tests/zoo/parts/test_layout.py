"""One place per characteristic: every registered factory lives under its characteristic's package or module,
and every extraction strategy honours the ``Extractor`` contract (forward plus three documented hooks)."""

from __future__ import annotations

import inspect

import pytest
import torch

import zoo
from zoo.parts.encoders.base import Encoder
from zoo.parts.extract import EXTRACTORS, Extractor

HOME = {
    "augment": "zoo.parts.augment",
    "encoder": "zoo.parts.encoders",
    "extract": "zoo.parts.extract",
    "similarity": "zoo.parts.similarity",
    "loss": "zoo.parts.losses",
}


def test_the_five_registries_are_the_papers_five_characteristics():
    assert list(zoo.REGISTRIES) == list(HOME) == list(zoo.CHARACTERISTICS)


@pytest.mark.parametrize("characteristic", list(HOME))
def test_every_factory_lives_under_its_characteristic(characteristic):
    home = HOME[characteristic]
    registry = zoo.REGISTRIES[characteristic]
    assert registry.names(), f"no {characteristic} registered"
    for name in registry.names():
        module = registry.get(name).__module__
        if not module.startswith("zoo."):
            continue  # registered by user code (or another test, e.g. tests/scripts/ddp_step.py), not by zoo
        assert module == home or module.startswith(home + ".") or module.startswith(home + "_"), (
            f"{characteristic} {name!r} is defined in {module}, outside {home}")


# the smallest arguments that build each strategy on the tiny encoder below
EXTRACTOR_KWARGS = {
    "last_map": {},
    "multi_map": {"tasks": "00", "maps": ["r1"]},
    "cpc_context": {"context_dim": 8, "target_dim": 4, "steps": 1, "n_context_layers": 1},
    "momentum_queue": {"head_hidden": 8, "head_out": 4, "queue_size": 8},
    "momentum_predictor": {"projector_hidden": 8, "projector_out": 4, "predictor_hidden": 8},
    "prototypes": {"head_hidden": 8, "head_out": 4, "n_prototypes": 3},
}


def tiny_encoder() -> Encoder:
    return zoo.REGISTRIES["encoder"].build("amdim", dict(in_channels=1, image_size=32, ndf=4, n_rkhs=16, depth=1))


def test_every_registered_extractor_is_covered_here():
    assert sorted(EXTRACTOR_KWARGS) == EXTRACTORS.names()


@pytest.mark.parametrize("name", sorted(EXTRACTOR_KWARGS))
def test_every_extractor_factory_builds_an_extractor(name):
    encoder = tiny_encoder()
    extractor = EXTRACTORS.build(name, dict(encoder=encoder, **EXTRACTOR_KWARGS[name]))
    assert isinstance(extractor, Extractor)
    for hook in ("check_batch_size", "before_optimizer_step", "after_optimizer_step"):
        assert callable(getattr(extractor, hook))
    extractor.before_optimizer_step(0)  # every hook is callable on every strategy
    extractor.after_optimizer_step(encoder, 0.5)


def test_the_base_hooks_are_documented_no_ops():
    base = Extractor()
    assert base.check_batch_size(1) is None
    assert base.before_optimizer_step(0) is None
    assert base.after_optimizer_step(tiny_encoder(), 0.0) is None
    for hook in ("forward", "check_batch_size", "before_optimizer_step", "after_optimizer_step"):
        assert inspect.getdoc(getattr(Extractor, hook))
    with pytest.raises(NotImplementedError):
        base(tiny_encoder(), [torch.zeros(1, 1, 32, 32)])


def test_a_strategy_that_is_not_an_extractor_is_refused():
    from zoo.build import build_method
    from zoo.part_registry import PartRegistry

    class Plain(torch.nn.Module):
        def __init__(self, *, encoder: Encoder) -> None:
            super().__init__()

    method = zoo.get_method("yadim")
    saved = EXTRACTORS._factories.copy()
    try:
        EXTRACTORS.register("not_an_extractor")(Plain)
        bad = zoo.Method.from_dict({**method.to_dict(), "extract": {"name": "not_an_extractor"}})
        with pytest.raises(zoo.ZooError, match="must subclass"):
            build_method(bad)
    finally:
        EXTRACTORS._factories = saved
    assert isinstance(EXTRACTORS, PartRegistry)
