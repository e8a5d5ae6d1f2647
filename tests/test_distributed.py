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

from training.module import ContrastiveModule
from tests.scripts import ddp_step  # noqa: F401  (registers the test encoder)

ROOT = Path(__file__).resolve().parents[1]

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
