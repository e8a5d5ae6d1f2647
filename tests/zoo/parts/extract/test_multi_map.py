"""AMDIM's multiscale extraction: task parsing, comparison layout, the NCE against a loop, and two real steps."""

import math

import pytest
import pytorch_lightning as pl
import torch

import zoo
import zoo.parts.extract.multi_map as amdim_tasks
from tests.helpers.harness import fit_two_steps
from training.pretrain.module import ContrastiveModule
from zoo.parts.extract.multi_map import MultiMapExtractor, parse_tasks

MAPS = ("r1", "r5", "r7")
TINY_ENCODER = dict(in_channels=1, image_size=32, ndf=4, n_rkhs=16, depth=1)


def tiny_encoder():
    torch.manual_seed(0)
    return zoo.REGISTRIES["encoder"].build("amdim", dict(TINY_ENCODER)).eval()  # eval: deterministic batch norm


def two_views(batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 1, 32, 32, generator=g) for _ in range(2)]


def maps_of(encoder, views):
    with torch.no_grad():
        feats = encoder.forward_features(torch.cat(views), MAPS)
    return {k: v.split(views[0].shape[0]) for k, v in feats.items()}


# --- task parsing ---------------------------------------------------------------------------------------------

def test_parse_default_tasks():
    assert parse_tasks("01, 02, 11", MAPS) == [(0, 1), (0, 2), (1, 1)]
    assert parse_tasks("00", MAPS) == [(0, 0)]
    assert parse_tasks(["01", " 22"], MAPS) == [(0, 1), (2, 2)]


@pytest.mark.parametrize("bad,match", [
    ("03", r"task '03' .* out of range"),
    ("1", r"task '1' .* malformed"),
    ("ab", r"task 'ab' .* malformed"),
    ("1x", r"task '1x' .* malformed"),
    ("01,,02", r"an empty task .* malformed"),
    ("", r"no tasks"),
    ("01, 01", r"listed twice"),
])
def test_bad_tasks_raise_with_valid_indices(bad, match):
    with pytest.raises(zoo.ZooError, match=match) as info:
        parse_tasks(bad, MAPS)
    if "twice" not in match:
        assert "0 = r1, 1 = r5, 2 = r7" in str(info.value)


def test_bad_tasks_raise_at_construction():
    with pytest.raises(zoo.ZooError, match="'13'"):
        zoo.REGISTRIES["extract"].build("multi_map", dict(encoder=tiny_encoder(), tasks="01, 13"))


def test_encoder_without_named_maps_raises():
    with pytest.raises(zoo.ZooError, match=r"\['r3'\] are not feature maps"):
        MultiMapExtractor(encoder=tiny_encoder(), maps=("r1", "r3"), tasks="01")


def test_needs_two_views():
    encoder = tiny_encoder()
    with pytest.raises(zoo.ZooError, match="exactly 2 views"):
        MultiMapExtractor(encoder=encoder)(encoder, two_views()[:1])


# --- comparison layout ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("task,target,locations", [("01", "r5", 25), ("02", "r7", 49), ("00", "r1", 1)])
def test_global_to_local_layout(task, target, locations):
    encoder, views, b = tiny_encoder(), two_views(), 3
    comps = MultiMapExtractor(encoder=encoder, tasks=task)(encoder, views)
    maps = maps_of(encoder, views)
    assert len(comps) == 2
    for comp, (src, trg) in zip(comps, ((0, 1), (1, 0)), strict=True):
        assert comp.anchors.shape == (b, 16) and comp.candidates.shape == (b * locations, 16)
        assert comp.positives.shape == (b, locations)
        for i in range(b):
            assert comp.positives[i].tolist() == list(range(i * locations, (i + 1) * locations))
            own = maps[target][trg][i].reshape(16, -1).t()  # this image's locations, row-major
            assert torch.allclose(comp.candidates[comp.positives[i]], own, atol=1e-6)
        assert torch.allclose(comp.anchors, maps["r1"][src].flatten(1), atol=1e-6)


def test_local_source_is_one_location_of_the_same_image():
    encoder, views = tiny_encoder(), two_views(batch=4)
    torch.manual_seed(3)
    comps = MultiMapExtractor(encoder=encoder, tasks="11")(encoder, views)
    maps = maps_of(encoder, views)
    for comp, src in zip(comps, (0, 1), strict=True):
        assert comp.anchors.shape == (4, 16) and comp.positives.shape == (4, 25)
        for i in range(4):
            locations = maps["r5"][src][i].reshape(16, 25).t()
            distance = (locations - comp.anchors[i]).abs().amax(dim=1)
            assert distance.min() < 1e-6  # exactly one of the 25 locations of its own r5 map
            others = torch.cat([maps["r5"][src][j].reshape(16, 25).t() for j in range(4) if j != i])
            assert (others - comp.anchors[i]).abs().amax(dim=1).min() > 1e-4


def test_default_tasks_give_six_half_weight_comparisons():
    encoder = tiny_encoder()
    extractor = zoo.REGISTRIES["extract"].build("multi_map", dict(encoder=encoder))
    assert extractor.tasks == [(0, 1), (0, 2), (1, 1)] and extractor.needed == ("r7", "r5", "r1")
    comps = extractor(encoder, two_views(batch=2))
    assert len(comps) == 6 and all(c.weight == 0.5 for c in comps)
    assert [c.candidates.shape[0] for c in comps] == [50, 50, 98, 98, 50, 50]
    assert sum(c.weight for c in comps) == 3.0  # three tasks, each the mean of its two directions


def test_positives_are_offset_by_rank_under_ddp(monkeypatch):
    """As rank 1 of 2, the candidates hold rank 0's locations first and the positives point past them."""
    monkeypatch.setattr(amdim_tasks, "world", lambda: (1, 2))
    monkeypatch.setattr(amdim_tasks, "gather_with_grad", lambda x: torch.cat([torch.zeros_like(x), x]))
    encoder, views = tiny_encoder(), two_views(batch=2)
    comp = MultiMapExtractor(encoder=encoder, tasks="01")(encoder, views)[0]
    assert comp.candidates.shape == (100, 16)
    assert comp.positives[0].tolist() == list(range(50, 75)) and comp.positives[1].tolist() == list(range(75, 100))
    own = maps_of(encoder, views)["r5"][1][1].reshape(16, 25).t()
    assert torch.allclose(comp.candidates[comp.positives[1]], own, atol=1e-6)


# --- loss against AMDIM's NCE written as loops ------------------------------------------------------------------

def amdim_nce_by_loops(source, target, penalty, clip=20.0):
    """Per-positive NCE on clipped scores: for image i and each location k of its target map, the positive score
    against the scores with every location of every other image; averaged; plus ``penalty * mean(raw^2)`` over
    every raw (unclipped) score, as AMDIM's costs.py."""
    b, d = source.shape
    locs = [target[j].reshape(d, -1).t().tolist() for j in range(b)]
    src = source.tolist()

    def raw_score(u, v):
        return sum(x * y for x, y in zip(u, v, strict=True)) / math.sqrt(d)

    total, count, squares, n_scores = 0.0, 0, 0.0, 0
    for i in range(b):
        raw = [[raw_score(src[i], v) for v in locs[j]] for j in range(b)]
        squares += sum(s * s for row in raw for s in row)
        n_scores += sum(len(row) for row in raw)
        rows = [[clip * math.tanh(s / clip) for s in row] for row in raw]
        neg_sum = sum(math.exp(s) for j in range(b) if j != i for s in rows[j])
        for s in rows[i]:
            total += -(s - math.log(math.exp(s) + neg_sum))
            count += 1
    return total / count + penalty * squares / n_scores


class RandomMaps(zoo.Encoder):
    """Fixed random convolutions giving 7x7, 5x5 and 1x1 maps of entries ~N(0, 9): scores spread over the clip."""

    def __init__(self):
        super().__init__()
        self.in_channels, self.num_features, self.map_names = 1, 16, MAPS[::-1]
        self.input_size = (32, 32)
        g = torch.Generator().manual_seed(4)
        self.kernels = {name: torch.randn(16, 1, k, k, generator=g) * 3 / k
                        for name, k in (("r7", 26), ("r5", 28), ("r1", 32))}

    def _maps(self, x, wanted):
        return {name: torch.nn.functional.conv2d(x, self.kernels[name]) for name in wanted}


@pytest.mark.parametrize("task", ["01", "02", "00"])
def test_nce_on_comparison_matches_amdim_loop(task):
    encoder, views = RandomMaps(), two_views(batch=3, seed=5)
    comps = MultiMapExtractor(encoder=encoder, tasks=task)(encoder, views)
    maps = maps_of(encoder, views)
    row = zoo.get_method("amdim")  # the row's own similarity and loss
    similarity = zoo.REGISTRIES["similarity"].build(row.similarity.name, row.similarity.kwargs)
    loss_fn = zoo.REGISTRIES["loss"].build(row.loss.name, row.loss.kwargs)
    target = MAPS[int(task[1])]
    for comp, (src, trg) in zip(comps, ((0, 1), (1, 0)), strict=True):
        scores = similarity(comp.anchors, comp.candidates)
        assert scores.std() > 3 and scores.abs().max() > 10  # a case where the clip and the negatives matter
        expected = amdim_nce_by_loops(maps["r1"][src].flatten(1), maps[target][trg], penalty=0.05)
        assert loss_fn(scores, comp).item() == pytest.approx(expected, rel=1e-5)


# --- two real optimizer steps from YAML-only parts -------------------------------------------------------------



def test_yaml_only_amdim_takes_two_steps(fmnist_dir):
    pl.seed_everything(0)
    module = ContrastiveModule(
        method=None, name="amdim_yaml",
        augment={"name": "amdim", "size": 32, "mean": [0.5], "std": [0.25]},
        encoder={"name": "amdim", **TINY_ENCODER},
        extract={"name": "multi_map"},
        similarity={"name": "dot", "scale_by_sqrt_dim": True},
        loss={"name": "nce", "tanh_clip": 20.0, "score_penalty": 0.05},
    )
    assert isinstance(module.extract, MultiMapExtractor) and module.extract.tasks == [(0, 1), (0, 2), (1, 1)]
    probe, changed = fit_two_steps(module, fmnist_dir)
    assert len(probe.losses) == 2 and all(math.isfinite(x) for x in probe.losses)
    assert len(probe.grad_norms) == 2 and all(g > 0 for g in probe.grad_norms)
    assert changed
