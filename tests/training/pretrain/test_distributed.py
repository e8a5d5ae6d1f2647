"""Distributed training on the real engine: Lightning DDP with 2 CPU processes (gloo), in a subprocess.

With negatives gathered across processes, the mean of the per-process losses equals the loss of one process on
the concatenated batch, and DDP's all-reduced gradients equal that process's gradients. The encoder has no batch
norm (SyncBatchNorm has no CPU implementation; on GPUs the recipes turn it on).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.scripts import ddp_step  # noqa: F401  (registers the test encoder)
from training.pretrain.module import ContrastiveModule

pytestmark = pytest.mark.slow  # several processes: left out of `make test-quick`

ROOT = Path(__file__).resolve().parents[3]

# Deterministic views (no crop, flip, jitter, blur) so a single process can rebuild exactly what each rank saw.
FIXED_VIEWS = {"name": "simclr", "size": 32, "mean": [0.5], "std": [0.25], "crop_scale": [1.0, 1.0],
               "jitter_prob": 0.0, "gray_prob": 0.0, "blur_prob": 0.0, "flip_prob": 0.0}
TINY_CONV = {"name": "ddp_test_conv", "in_channels": 1, "width": 8}


def run_ddp(tmp_path: Path, data: Path, model: dict) -> Path:
    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "scripts" / "ddp_step.py"), str(out), str(data),
                             json.dumps(model)], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return out


@pytest.mark.parametrize("pairing,similarity", [
    ("all_views", {"name": "cosine", "temperature": 0.5}),
    ("cross_view", {"name": "dot", "scale_by_sqrt_dim": True, "tanh_clip": 20.0}),
])
def test_gathered_nce_equals_single_process_loss_on_concatenated_batch(tmp_path, fmnist_dir, pairing, similarity):
    model = dict(method=None, name="ddp_check", augment=FIXED_VIEWS, encoder=TINY_CONV,
                 extract={"name": "last_map", "pairing": pairing}, similarity=similarity, loss={"name": "nce"})
    out = run_ddp(tmp_path, fmnist_dir, dict(model))
    losses = [float((out / f"loss_{r}.txt").read_text().split()[0]) for r in (0, 1)]
    images = torch.cat([torch.load(out / f"images_{r}.pt") for r in (0, 1)])
    assert images.shape[0] == 16

    single = ContrastiveModule(**model)
    single.load_state_dict(torch.load(out / "init.pt"))
    single.train()
    views = single.augment(images)
    comparisons = single.extract(single.encoder, views)
    loss = sum(c.weight * single.loss_fn(single.similarity(c.anchors, c.candidates), c) for c in comparisons)
    assert comparisons[0].candidates.shape[0] == (32 if pairing == "all_views" else 16)
    assert sum(losses) / 2 == pytest.approx(loss.item(), rel=1e-4, abs=1e-5)

    loss.backward()
    ddp_grads = torch.load(out / "grads_0.pt")
    assert ddp_grads, "no gradients recorded"
    for name, param in single.encoder.named_parameters():
        assert torch.allclose(ddp_grads[name], param.grad, rtol=1e-3, atol=1e-6), name


@pytest.mark.parametrize("extract,similarity,loss", [
    ({"name": "momentum_queue", "head_hidden": 16, "head_out": 8, "queue_size": 32, "momentum": 0.9},
     {"name": "cosine", "temperature": 0.2}, {"name": "nce"}),
    ({"name": "momentum_predictor", "projector_hidden": 16, "projector_out": 8, "predictor_hidden": 16},
     {"name": "cosine", "temperature": 1.0}, {"name": "regression"}),
])
def test_teachers_and_queues_stay_identical_across_ranks(tmp_path, fmnist_dir, extract, similarity, loss):
    model = dict(method=None, name="ddp_teacher_check", augment={**FIXED_VIEWS, "flip_prob": 0.5},
                 encoder=TINY_CONV, extract=extract, similarity=similarity, loss=loss, max_steps=3)
    out = run_ddp(tmp_path, fmnist_dir, model)
    init = {k[len("extract."):]: v for k, v in torch.load(out / "init.pt").items() if k.startswith("extract.")}
    ranks = [torch.load(out / f"extract_{r}.pt") for r in (0, 1)]
    teacher = [k for k in ranks[0] if "teacher" in k or "target" in k]
    assert teacher, sorted(ranks[0])
    assert set(ranks[0]) == set(ranks[1])
    # batch-norm running statistics are per process under DDP (as in the online network); everything else must agree
    shared = [k for k in ranks[0] if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    for key in shared:
        assert torch.equal(ranks[0][key], ranks[1][key]), f"{key} differs between ranks"
    moved = [k for k in teacher if ranks[0][k].is_floating_point() and not torch.equal(ranks[0][k], init[k])]
    assert moved, "the EMA teacher never moved"
    if extract["name"] == "momentum_queue":
        queue = [k for k in ranks[0] if "queue" in k and ranks[0][k].dim() == 2]
        assert queue and not torch.equal(ranks[0][queue[0]], init[queue[0]]), "keys were never enqueued"
