"""CPC v2 extraction: exact causality of the context network, grid bookkeeping, positives, errors, training."""

from typing import Dict, Tuple

import pytest
import pytorch_lightning as pl
import torch

import zoo
import zoo.parts.extract.cpc_context as cpc
from tests.helpers.harness import fit_two_steps
from tests.helpers.tiny_encoders import TinyConv
from training.pretrain.module import ContrastiveModule
from zoo.parts.encoders.base import Encoder
from zoo.parts.extract.cpc_context import ContextNetwork, CPCContextExtractor, future_indices
from zoo.parts.losses import NCELoss
from zoo.parts.similarity import DotSimilarity


class MeanEncoder(Encoder):
    """No parameters, no batch coupling: a patch's latent is its per-channel mean."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.in_channels = self.num_features = in_channels
        self.map_names = ("pixels",)

    def _maps(self, x: torch.Tensor, wanted: Tuple[str, ...]) -> Dict[str, torch.Tensor]:
        return {"pixels": x}


def cpc_augment(**kwargs):
    args = dict(size=16, patch=8, overlap=4, mean=[0.5], std=[0.25])
    args.update(kwargs)
    return zoo.REGISTRIES["augment"].build("cpc", args)


def test_registered_and_builds_by_name():
    assert "cpc_context" in zoo.list_parts("extract")
    ext = zoo.REGISTRIES["extract"].build("cpc_context", dict(encoder=MeanEncoder(), context_dim=8, target_dim=4))
    assert isinstance(ext, CPCContextExtractor) and len(ext.predictors) == 3


@pytest.mark.parametrize("n_layers", [1, 3])
def test_context_is_causal_over_rows(n_layers):
    torch.manual_seed(0)
    net = ContextNetwork(in_dim=3, context_dim=16, n_layers=n_layers).double()  # wide: no dead paths
    rows, cols = 5, 4
    z = torch.randn(1, 3, rows, cols, dtype=torch.double)
    jac = torch.autograd.functional.jacobian(net, z, vectorize=True)  # (1, 16, R, Q, 1, 3, R, Q)
    dep = jac.abs().sum(dim=(0, 1, 4, 5))  # (R_out, Q_out, R_in, Q_in)
    for i in range(rows):
        assert torch.all(dep[i, :, i + 1:, :] == 0), f"context at row {i} sees rows below it"
        assert torch.all(dep[i, :, i, :].sum(dim=-1) > 0)  # its own row is visible
    # the masked 3x3 convs look sideways in the centre row and one row up per block
    assert dep[0, 0, 0, 1] > 0 and dep[n_layers, 0, 0, 0] > 0
    # finite differences agree: perturbing rows i+1.. leaves rows <= i unchanged, bit for bit
    i = 2
    bumped = z.clone()
    bumped[:, :, i + 1:] += torch.randn_like(bumped[:, :, i + 1:])
    assert torch.equal(net(z)[:, :, : i + 1], net(bumped)[:, :, : i + 1])
    assert not torch.equal(net(z)[:, :, i + 1:], net(bumped)[:, :, i + 1:])


def test_masked_weights_get_no_gradient():
    net = ContextNetwork(in_dim=2, context_dim=3, n_layers=1)
    net(torch.randn(2, 2, 4, 4)).sum().backward()
    grad = net.blocks[0].masked.weight.grad
    assert torch.all(grad[:, :, 2, :] == 0) and grad[:, :, :2, :].abs().sum() > 0


def test_grid_from_cpc_preset_sets_anchor_and_candidate_counts():
    torch.manual_seed(0)
    augment = cpc_augment()
    assert augment.grid_shape() == (3, 3)
    images = torch.randint(0, 255, (2, 1, 28, 28), dtype=torch.uint8)
    views = augment(images)
    assert len(views) == 1 and views[0].shape == (2, 3, 3, 1, 8, 8)
    encoder = zoo.REGISTRIES["encoder"].build("resnet", dict(arch="resnet18", in_channels=1, small_image_stem=True))
    ext = CPCContextExtractor(encoder=encoder, context_dim=16, target_dim=8, steps=2, n_context_layers=1)
    comps = ext(encoder, views)
    assert len(comps) == 2 and all(c.weight == pytest.approx(0.5) for c in comps)
    for k, c in enumerate(comps, start=1):
        assert c.anchors.shape == (2 * (3 - k) * 3, 8)
        assert c.candidates.shape == (2 * 3 * 3, 8)
        assert c.positives.shape == (2 * (3 - k) * 3,)
    loss = sum(c.weight * NCELoss()(DotSimilarity()(c.anchors, c.candidates), c) for c in comps)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in list(ext.named_parameters()) + list(encoder.named_parameters()):
        assert p.grad is not None, name


def coded_grid(batch: int, rows: int, cols: int, patch: int = 2) -> torch.Tensor:
    """Patches filled with the constant 100 b + 10 i + j, so a MeanEncoder's latent names its patch."""
    code = (torch.arange(batch).view(-1, 1, 1) * 100 + torch.arange(rows).view(1, -1, 1) * 10
            + torch.arange(cols).view(1, 1, -1)).float()
    return code.view(batch, rows, cols, 1, 1, 1).expand(-1, -1, -1, 1, patch, patch).contiguous()


def identity_targets(ext: CPCContextExtractor) -> None:
    with torch.no_grad():
        ext.targets.weight.fill_(1.0)
        ext.targets.bias.zero_()


@pytest.mark.parametrize("batch,rows,cols,steps", [(2, 4, 3, 3), (3, 5, 2, 2)])
def test_positives_point_at_the_patch_k_rows_below(batch, rows, cols, steps):
    ext = CPCContextExtractor(encoder=MeanEncoder(), context_dim=4, target_dim=1, steps=steps, n_context_layers=1)
    identity_targets(ext)
    comps = ext(MeanEncoder(), [coded_grid(batch, rows, cols)])
    assert len(comps) == steps
    for k, c in enumerate(comps, start=1):
        expected = [100 * b + 10 * (i + k) + j for b in range(batch) for i in range(rows - k) for j in range(cols)]
        assert c.candidates[c.positives, 0].tolist() == expected
        # the anchors are W_k c in the same (b, i, j) order
        ctx = ext.context(coded_grid(batch, rows, cols)[..., 0, 0, 0].unsqueeze(1))
        direct = ext.predictors[k - 1](ctx)[:, :, : rows - k].permute(0, 2, 3, 1).reshape(-1, 1)
        # the context network sums codes up to ~250 in float32: the batched and the direct paths round apart by
        # up to 3e-5 (seen over 300 random initialisations), a wrong patch order by 1e-2 or more
        torch.testing.assert_close(c.anchors, direct, rtol=0, atol=2e-4)


def test_positives_are_offset_into_the_gathered_batch(monkeypatch):
    """Under DDP (rank 1 of 2) candidates hold both processes' targets and positives index this rank's slice."""
    monkeypatch.setattr(cpc, "world", lambda: (1, 2))
    monkeypatch.setattr(cpc, "gather_with_grad", lambda x: torch.cat([torch.full_like(x, -1.0), x]))
    ext = CPCContextExtractor(encoder=MeanEncoder(), context_dim=4, target_dim=1, steps=1, n_context_layers=0)
    identity_targets(ext)
    (c,) = ext(MeanEncoder(), [coded_grid(2, 3, 2)])
    assert c.candidates.shape == (24, 1)
    assert c.positives.tolist() == future_indices(2, 3, 2, 1, offset=12).tolist()
    assert c.candidates[c.positives, 0].tolist() == [10, 11, 20, 21, 110, 111, 120, 121]


def test_future_indices_formula():
    assert future_indices(1, 3, 2, 1).tolist() == [2, 3, 4, 5]
    assert future_indices(2, 3, 2, 2).tolist() == [4, 5, 10, 11]


def test_views_are_separate_tasks():
    ext = CPCContextExtractor(encoder=MeanEncoder(), context_dim=4, target_dim=1, steps=1, n_context_layers=1)
    identity_targets(ext)
    grid = coded_grid(2, 3, 2)
    comps = ext(MeanEncoder(), [grid, grid + 1000])
    assert len(comps) == 2 and all(c.weight == pytest.approx(0.5) for c in comps)
    assert comps[0].candidates.max() < 1000 <= comps[1].candidates.min()


def test_steps_must_be_fewer_than_rows():
    ext = CPCContextExtractor(encoder=MeanEncoder(), context_dim=4, target_dim=2, steps=3, n_context_layers=1)
    with pytest.raises(zoo.ZooError, match=r"steps=3 needs a patch grid with more than 3 rows, got 3"):
        ext(MeanEncoder(), [coded_grid(2, 3, 3)])


def test_non_grid_view_is_rejected_naming_the_shape():
    ext = CPCContextExtractor(encoder=MeanEncoder(), context_dim=4, target_dim=2, steps=1, n_context_layers=1)
    with pytest.raises(zoo.ZooError, match=r"\(B, rows, cols, C, patch, patch\), got \(2, 1, 16, 16\)"):
        ext(MeanEncoder(), [torch.zeros(2, 1, 16, 16)])
    with pytest.raises(zoo.ZooError, match="of one shape"):
        ext(MeanEncoder(), [coded_grid(2, 3, 3), coded_grid(2, 4, 3)])


@pytest.mark.parametrize("kwargs,match", [
    (dict(steps=0), "steps >= 1"),
    (dict(target_dim=0), "target_dim >= 1"),
    (dict(context_dim=0), "positive widths"),
    (dict(n_context_layers=-1), "n_context_layers >= 0"),
])
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(zoo.ZooError, match=match):
        zoo.REGISTRIES["extract"].build("cpc_context", dict(encoder=MeanEncoder(), **kwargs))


def test_tiny_encoder_learns_through_the_task():
    torch.manual_seed(0)
    encoder = TinyConv()
    ext = CPCContextExtractor(encoder=encoder, context_dim=8, target_dim=4, steps=1, n_context_layers=1)
    views = cpc_augment()(torch.randint(0, 255, (4, 1, 28, 28), dtype=torch.uint8))
    comps = ext(encoder, views)
    loss = sum(c.weight * NCELoss()(DotSimilarity()(c.anchors, c.candidates), c) for c in comps)
    loss.backward()
    assert encoder.conv.weight.grad.abs().sum() > 0


# --- through the real LightningModule (harness as in tests/zoo/test_methods.py) ---



def test_yaml_only_cpc_method_trains(fmnist_dir):
    pl.seed_everything(0)
    module = ContrastiveModule(
        method=None, name="cpc_yaml",
        augment={"name": "cpc", "size": 16, "patch": 8, "overlap": 4, "mean": [0.5], "std": [0.25]},
        encoder={"name": "resnet", "arch": "resnet18", "in_channels": 1, "small_image_stem": True},
        extract={"name": "cpc_context", "context_dim": 32, "target_dim": 16, "steps": 1, "n_context_layers": 1},
        similarity={"name": "dot"},
        loss={"name": "nce"},
    )
    assert isinstance(module.extract, CPCContextExtractor)
    probe, changed = fit_two_steps(module, fmnist_dir)
    assert len(probe.losses) == 2 and all(torch.isfinite(torch.tensor(probe.losses)))
    assert len(probe.grad_norms) == 2 and all(g > 0 for g in probe.grad_norms)
    assert changed
