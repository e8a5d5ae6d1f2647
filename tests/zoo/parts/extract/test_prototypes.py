"""SwAV: Sinkhorn-Knopp codes, prototype extraction (multi-crop, freezing, queue) and the swapped-prediction loss."""

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

import zoo
from tests.helpers.harness import fit_two_steps
from tests.helpers.tiny_encoders import TinyConv
from training.pretrain.module import ContrastiveModule
from zoo.parts.extract import Comparison
from zoo.parts.extract.prototypes import sinkhorn
from zoo.parts.losses import SwappedPredictionLoss
from zoo.parts.similarity import CosineSimilarity

ROOT = Path(__file__).resolve().parents[4]


def sinkhorn_by_loops(scores, epsilon, iterations):
    """SwAV's algorithm written out on lists: Q is K x B."""
    b, k = len(scores), len(scores[0])
    q = [[math.exp(scores[i][j] / epsilon) for i in range(b)] for j in range(k)]
    total = sum(map(sum, q))
    q = [[x / total for x in row] for row in q]
    for _ in range(iterations):
        q = [[x / sum(row) / k for x in row] for row in q]
        cols = [sum(q[j][i] for j in range(k)) for i in range(b)]
        q = [[q[j][i] / cols[i] / b for i in range(b)] for j in range(k)]
    return [[q[j][i] * b for j in range(k)] for i in range(b)]


def test_sinkhorn_matches_explicit_loop():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(5, 3, generator=g).clamp(-1, 1)
    for iterations in (1, 3):
        expected = torch.tensor(sinkhorn_by_loops(scores.tolist(), 0.3, iterations))
        assert torch.allclose(sinkhorn(scores, 0.3, iterations), expected, rtol=1e-5, atol=1e-7)


def test_sinkhorn_marginals():
    g = torch.Generator().manual_seed(1)
    scores = F.normalize(torch.randn(16, 4, generator=g), dim=1)  # cosines in [-1, 1]
    q = sinkhorn(scores, epsilon=0.3, iterations=300)
    assert q.shape == (16, 4) and (q >= 0).all()
    assert torch.allclose(q.sum(1), torch.ones(16), atol=1e-5)  # every sample: one unit of mass
    assert torch.allclose(q.sum(0), torch.full((4,), 16 / 4), atol=1e-3)  # every prototype: B/K
    q3 = sinkhorn(scores)  # SwAV's defaults: epsilon 0.05, 3 iterations end on the sample normalisation
    assert torch.allclose(q3.sum(1), torch.ones(16), atol=1e-6)


def test_sinkhorn_is_numerically_safe_and_gradient_free():
    scores = torch.tensor([[100.0, -100.0, 99.0], [-50.0, 80.0, 0.0]], requires_grad=True)
    q = sinkhorn(scores, epsilon=0.05)
    assert torch.isfinite(q).all() and not q.requires_grad
    assert torch.allclose(q.sum(1), torch.ones(2), atol=1e-6)
    # subtracting the per-prototype maximum changes nothing where the plain formula does not overflow
    small = scores.detach() / 100
    assert torch.allclose(sinkhorn(small, 0.5), torch.tensor(sinkhorn_by_loops(small.tolist(), 0.5, 3)), atol=1e-6)
    with pytest.raises(zoo.ZooError, match="epsilon > 0"):
        sinkhorn(small, epsilon=0.0)


def test_swapped_prediction_matches_explicit_loop():
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(4, 6, generator=g) * 3
    targets = torch.rand(4, 6, generator=g)
    targets = targets / targets.sum(1, keepdim=True)
    loss = SwappedPredictionLoss()(scores, Comparison(None, None, targets=targets))
    total = 0.0
    for i in range(4):
        lse = math.log(sum(math.exp(s) for s in scores[i].tolist()))
        total -= sum(targets[i, k].item() * (scores[i, k].item() - lse) for k in range(6))
    assert loss.item() == pytest.approx(total / 4, rel=1e-5)
    with pytest.raises(zoo.ZooError, match="needs comparisons with targets"):
        SwappedPredictionLoss()(scores, Comparison(None, None, positives=torch.zeros(4, dtype=torch.long)))
    with pytest.raises(zoo.ZooError, match="do not match"):
        SwappedPredictionLoss()(scores, Comparison(None, None, targets=targets[:, :5]))


def make(encoder, **kwargs):
    args = dict(head_hidden=16, head_out=8, n_prototypes=5, freeze_prototypes_epochs=1)
    args.update(kwargs)
    return zoo.REGISTRIES["extract"].build("prototypes", {**args, "encoder": encoder})


def multicrop(batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 1, 16, 16, generator=g) for _ in range(2)] + \
           [torch.randn(batch, 1, 8, 8, generator=g) for _ in range(2)]


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return TinyConv()


def test_multicrop_comparisons_codes_and_normalised_prototypes(encoder):
    assert "prototypes" in zoo.list_parts("extract") and "swapped_prediction" in zoo.list_parts("loss")
    torch.manual_seed(0)
    ext = make(encoder)
    with torch.no_grad():
        ext.prototypes.weight.mul_(3.0)  # as after an optimizer step: rows off the unit sphere
    calls = []
    hook = encoder.register_forward_hook(lambda m, inp, out: calls.append(tuple(inp[0].shape)))
    try:
        comps = ext(encoder, multicrop())
    finally:
        hook.remove()
    assert calls == [(8, 1, 16, 16), (8, 1, 8, 8)]  # one encoder call per resolution
    weight = ext.prototypes.weight
    assert torch.allclose(weight.norm(dim=1), torch.ones(5), atol=1e-6)

    assert len(comps) == 2 * 3 and all(c.weight == pytest.approx(1 / 6) for c in comps)
    assert sum(c.weight for c in comps) == pytest.approx(1.0)
    for c in comps:
        assert c.candidates is weight and c.anchors.shape == (4, 8) and c.targets.shape == (4, 5)
        assert c.anchors.requires_grad and not c.targets.requires_grad
        assert torch.allclose(c.anchors.norm(dim=1), torch.ones(4), atol=1e-5)
    # comparisons 0-2: codes of view 0 for views 1, 2, 3; comparisons 3-5: codes of view 1 for views 0, 2, 3
    z0, z1 = comps[3].anchors.detach(), comps[0].anchors.detach()
    assert all(c.targets is comps[0].targets for c in comps[:3])
    assert torch.allclose(comps[0].targets, sinkhorn(z0 @ weight.detach().t()), atol=1e-6)
    assert torch.allclose(comps[3].targets, sinkhorn(z1 @ weight.detach().t()), atol=1e-6)

    sim = CosineSimilarity(temperature=0.1)
    assert torch.allclose(sim(comps[0].anchors, comps[0].candidates), comps[0].anchors @ weight.t() / 0.1, atol=1e-5)
    loss = sum(c.weight * SwappedPredictionLoss()(sim(c.anchors, c.candidates), c) for c in comps)
    loss.backward()
    assert weight.grad is not None and ext.head[0].weight.grad is not None


def test_prototypes_frozen_in_first_epoch_only(encoder):
    torch.manual_seed(0)
    ext = make(encoder, freeze_prototypes_epochs=1)
    views = multicrop()
    opt = torch.optim.SGD(ext.parameters(), lr=0.5)
    sim, loss_fn = CosineSimilarity(temperature=0.1), SwappedPredictionLoss()

    def step(epoch):
        opt.zero_grad()
        comps = ext(encoder, views)
        before = ext.prototypes.weight.detach().clone(), ext.head[0].weight.detach().clone()
        sum(c.weight * loss_fn(sim(c.anchors, c.candidates), c) for c in comps).backward()
        ext.before_optimizer_step(epoch)
        opt.step()
        return (not torch.equal(before[0], ext.prototypes.weight), not torch.equal(before[1], ext.head[0].weight))

    assert step(0) == (False, True)  # the head learns, the prototypes wait
    assert ext.prototypes.weight.grad is None
    assert step(1) == (True, True)


def test_queue_is_fifo_of_global_large_crop_embeddings(encoder):
    torch.manual_seed(0)
    ext = make(encoder, queue_size=8, queue_start_epoch=1)
    assert ext.queue.shape == (2, 8, 8)
    ext(encoder, multicrop(seed=0))
    assert ext.queue.abs().sum() == 0 and int(ext.queue_filled) == 0  # before queue_start_epoch
    ext.before_optimizer_step(1)
    batches = []
    for seed in (1, 2):
        comps = ext(encoder, multicrop(seed=seed))
        batches.append((comps[3].anchors.detach(), comps[0].anchors.detach()))  # z of large views 0 and 1
    for i in range(2):  # newest first
        assert torch.allclose(ext.queue[i, :4], batches[1][i]) and torch.allclose(ext.queue[i, 4:], batches[0][i])
    assert int(ext.queue_filled) == 8

    # once full, the queue's scores join Sinkhorn's batch and their codes are dropped
    queue = ext.queue.clone()
    comps = ext(encoder, multicrop(seed=3))
    weight = ext.prototypes.weight.detach()
    z0 = comps[3].anchors.detach()
    expected = sinkhorn(torch.cat([queue[0], z0]) @ weight.t())[-4:]
    assert torch.allclose(comps[0].targets, expected, atol=1e-6)
    assert not torch.allclose(comps[0].targets, sinkhorn(z0 @ weight.t()), atol=1e-4)

    ext.eval()  # evaluation passes leave the queue alone
    frozen = ext.queue.clone()
    ext(encoder, multicrop(seed=4))
    assert torch.equal(frozen, ext.queue)

    fresh = make(encoder, queue_size=8, queue_start_epoch=1)
    fresh.load_state_dict(ext.state_dict())  # queue, fill level and epoch travel with checkpoints
    assert torch.equal(fresh.queue, ext.queue) and int(fresh.queue_filled) == 8 and int(fresh.epoch) == 1


def test_check_batch_size_messages(encoder):
    make(encoder).check_batch_size(7)  # no queue: any batch
    make(encoder, queue_size=16).check_batch_size(8)
    with pytest.raises(zoo.ZooError, match=r"queue_size=20 must be a positive multiple of the global batch size 8"):
        make(encoder, queue_size=20).check_batch_size(8)
    with pytest.raises(zoo.ZooError, match=r"queue_size=4 must be a positive multiple"):
        make(encoder, queue_size=4).check_batch_size(8)
    with pytest.raises(zoo.ZooError, match="unknown argument"):
        make(encoder, n_protos=3)
    with pytest.raises(zoo.ZooError, match="at least 2 views"):
        make(encoder)(encoder, multicrop()[:1])


DDP_SCRIPT = textwrap.dedent("""
    import sys, torch, torch.distributed as dist, torch.multiprocessing as mp
    from types import SimpleNamespace
    import zoo

    def worker(rank, out):
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + sys.argv[2], rank=rank, world_size=2)
        state = torch.load(out + "/state.pt")
        ext = zoo.REGISTRIES["extract"].build("prototypes", dict(encoder=SimpleNamespace(num_features=6),
                                              head_hidden=16, head_out=8, n_prototypes=5, queue_size=8,
                                              queue_start_epoch=0))
        ext.load_state_dict(state["ext"])
        z = [x.chunk(2)[rank] for x in state["z"]]
        torch.save({"codes": ext._codes(z), "queue": ext.queue}, out + f"/rank{rank}.pt")
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.start_processes(worker, args=(sys.argv[1],), nprocs=2, start_method="fork")  # fork: no re-imports
""")


@pytest.mark.slow
def test_sinkhorn_and_queue_under_two_processes_equal_one_process_on_the_global_batch(encoder, tmp_path):
    torch.manual_seed(0)
    ext = make(encoder, queue_size=8, queue_start_epoch=0)
    with torch.no_grad():
        ext.queue.copy_(F.normalize(torch.randn(2, 8, 8), dim=2))
        ext.queue_filled.fill_(8)
    z = [F.normalize(torch.randn(4, 8), dim=1) for _ in range(2)]
    torch.save({"ext": ext.state_dict(), "z": z}, tmp_path / "state.pt")
    (tmp_path / "ddp.py").write_text(DDP_SCRIPT)
    port = str(29500 + os.getpid() % 2000)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(tmp_path / "ddp.py"), str(tmp_path), port], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]

    codes = ext._codes(z)  # one process: the whole queue plus the global batch of 4
    for i in range(2):
        assert torch.allclose(torch.cat([r["codes"][i] for r in ranks]), codes[i], atol=1e-6)
    assert all(torch.allclose(r["queue"], ext.queue) for r in ranks)  # the gathered global batch, rank order


def test_codes_are_computed_in_float32_under_bf16_autocast(encoder):
    torch.manual_seed(0)
    ext = make(encoder, queue_size=8, queue_start_epoch=0).eval()  # eval: the queue is read, not pushed
    with torch.no_grad():
        ext.queue.copy_(F.normalize(torch.randn(2, 8, 8), dim=2))
        ext.queue_filled.fill_(8)
    z = [F.normalize(torch.randn(4, 8), dim=1) for _ in range(2)]
    reference = ext._codes(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ext._codes(z)
    for ref, got in zip(reference, mixed, strict=True):
        assert got.dtype == torch.float32 and torch.equal(got, ref)




def swav_module(**extract):
    return ContrastiveModule(
        method=None, name="swav_tiny",
        augment={"name": "swav", "size": 16, "small_size": 8, "n_small": 2, "mean": [0.5], "std": [0.25]},
        encoder={"name": "resnet", "arch": "resnet18", "in_channels": 1, "small_image_stem": True},
        extract={"name": "prototypes", "head_hidden": 32, "head_out": 16, "n_prototypes": 10,
                 "freeze_prototypes_epochs": 0, **extract},
        similarity={"name": "cosine", "temperature": 0.1},
        loss={"name": "swapped_prediction"},
    )


def test_yaml_only_swav_trains_through_the_generic_module(fmnist_dir):
    pl.seed_everything(0)
    module = swav_module()
    prototypes = module.extract.prototypes.weight.detach().clone()
    probe, changed = fit_two_steps(module, fmnist_dir)
    assert len(probe.losses) == 2 and all(torch.isfinite(torch.tensor(probe.losses)))
    assert len(probe.grad_norms) == 2 and all(g > 0 for g in probe.grad_norms)
    assert changed and not torch.equal(prototypes, module.extract.prototypes.weight)
    assert "extract.prototypes.weight" in module.state_dict() and "extract.queue" in module.state_dict()


def test_fit_refuses_a_queue_that_does_not_hold_whole_batches(fmnist_dir):
    with pytest.raises(zoo.ZooError, match="queue_size=12 must be a positive multiple of the global batch size 8"):
        fit_two_steps(swav_module(queue_size=12), fmnist_dir)
