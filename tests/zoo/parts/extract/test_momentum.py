"""Momentum teachers (MoCo v2 queue, BYOL target) and BYOL's regression loss, against values computed by hand."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import zoo
from zoo.errors import ZooError
from zoo.parts.extract import Comparison
from zoo.parts.extract.momentum_predictor import MomentumPredictorExtractor
from zoo.parts.extract.momentum_queue import KeyQueue, MomentumQueueExtractor
from zoo.parts.extract.teacher import EMATeacher, byol_tau
from zoo.parts.losses import NCELoss, RegressionLoss
from zoo.parts.similarity import CosineSimilarity

TINY_AMDIM = dict(in_channels=1, image_size=32, ndf=4, n_rkhs=16, depth=1)


def tiny_encoder():
    return zoo.REGISTRIES["encoder"].build("amdim", TINY_AMDIM)


def views(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 1, 32, 32, generator=g) for _ in range(2)]


@torch.no_grad()
def perturb(*modules, seed=1):
    g = torch.Generator().manual_seed(seed)
    for m in modules:
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def test_ema_update_matches_formula():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    teacher = EMATeacher(online)
    perturb(online)
    online(torch.randn(5, 3))  # moves the online BN statistics
    before = [p.clone() for p in teacher[0].parameters()]
    teacher.update([online], 0.9)
    for t, t0, o in zip(teacher[0].parameters(), before, online.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * t0 + 0.1 * o)
    for t, o in zip(teacher[0].buffers(), online.buffers(), strict=True):
        assert torch.equal(t, o)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_byol_tau_schedule():
    assert byol_tau(0.0) == pytest.approx(0.996)
    assert byol_tau(0.5) == pytest.approx(1 - 0.004 * (math.cos(math.pi / 2) + 1) / 2) == pytest.approx(0.998)
    assert byol_tau(1.0) == pytest.approx(1.0)
    assert byol_tau(0.25, base=0.99) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float), dim=1)


def test_queue_is_fifo_across_steps():
    queue = KeyQueue(size=6, dim=2)
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(6))
    a, b, c, d = unit([1, 0], [0, 1]), unit([1, 1], [1, -1]), unit([2, 1], [1, 2]), unit([-1, 0], [0, -1])
    for keys in (a, b, c):
        queue.push(keys)
    assert torch.allclose(queue.keys, torch.cat([a, b, c])) and queue.ptr.item() == 0
    queue.push(d)  # wraps around: the oldest (a) goes first
    assert torch.allclose(queue.keys, torch.cat([d, b, c])) and queue.ptr.item() == 2
    queue.push(torch.cat([a, b]))  # overwrites b and c, in order
    assert torch.allclose(queue.keys, torch.cat([d, a, b])) and queue.ptr.item() == 0
    uneven = KeyQueue(size=5, dim=2)
    uneven.push(torch.cat([a, b]))
    uneven.push(torch.cat([c, d]))  # slots 4, 0, 1, 2
    assert torch.allclose(uneven.keys, torch.cat([c[1:], d, b[1:], c[:1]])) and uneven.ptr.item() == 3
    uneven.push(unit([3, 4]) * 5)  # stored normalised
    assert torch.allclose(uneven.keys[3], unit([3, 4])[0])


def test_queue_batch_size_check():
    ext = MomentumQueueExtractor(encoder=tiny_encoder(), head_hidden=8, head_out=4)
    ext.check_batch_size(256)
    with pytest.raises(ZooError, match="queue size 65536 is not divisible by the global batch 384"):
        ext.check_batch_size(384)
    sym = MomentumQueueExtractor(encoder=tiny_encoder(), head_hidden=8, head_out=4, queue_size=64, symmetric=True)
    sym.check_batch_size(32)
    with pytest.raises(ZooError, match=r"global batch 48 \(24 samples x 2 keys, symmetric\)"):
        sym.check_batch_size(24)


def test_moco_infonce_with_queue_matches_explicit_loop():
    torch.manual_seed(0)
    encoder = tiny_encoder()
    ext = MomentumQueueExtractor(encoder=encoder, head_hidden=8, head_out=4, queue_size=16)
    perturb(encoder, ext.head)  # the teacher now differs from the online networks
    queue = ext.queue.keys.clone()
    x1, x2 = views()
    (c,) = ext(encoder, [x1, x2])
    with torch.no_grad():
        q = F.normalize(ext.head(encoder(x1)), dim=1)
        k = F.normalize(ext.teacher[1](ext.teacher[0](x2)), dim=1)
    assert torch.allclose(c.anchors, q, atol=1e-6) and torch.allclose(c.candidates[:4], k, atol=1e-6)
    assert torch.equal(c.candidates[4:], queue)  # this step's negatives: the queue before the enqueue
    assert c.exclude.tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    assert torch.allclose(ext.queue.keys[:4], k, atol=1e-6) and torch.equal(ext.queue.keys[4:], queue[4:])

    T, expected = 0.2, 0.0
    for i in range(4):
        l_pos = (q[i] * k[i]).sum() / T
        l_neg = q[i] @ queue.t() / T
        logits = torch.cat([l_pos.view(1), l_neg])
        expected += -(logits[0] - torch.log(torch.exp(logits).sum())).item()
    loss = NCELoss()(CosineSimilarity(temperature=T)(c.anchors, c.candidates), c)
    assert loss.item() == pytest.approx(expected / 4, rel=1e-5)

    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    assert all(p.grad is None for p in ext.teacher.parameters())


def test_moco_symmetric_pairs_both_ways_and_enqueues_both():
    encoder = tiny_encoder()
    ext = MomentumQueueExtractor(encoder=encoder, head_hidden=8, head_out=4, queue_size=16, symmetric=True)
    x1, x2 = views()
    c12, c21 = ext(encoder, [x1, x2])
    assert c12.weight == c21.weight == 0.5 and ext.queue.ptr.item() == 8
    assert torch.allclose(ext.queue.keys[:4], c12.candidates[:4])
    assert torch.allclose(ext.queue.keys[4:8], c21.candidates[:4])
    with torch.no_grad():
        assert torch.allclose(c21.anchors, F.normalize(ext.head(encoder(x2)), dim=1), atol=1e-6)


def test_byol_loss_is_two_minus_two_cosine_both_ways():
    torch.manual_seed(0)
    encoder = tiny_encoder()
    ext = MomentumPredictorExtractor(encoder=encoder, projector_hidden=8, projector_out=4, predictor_hidden=8)
    perturb(encoder, ext.projector)
    x1, x2 = views()
    comps = ext(encoder, [x1, x2])
    assert [c.weight for c in comps] == [1.0, 1.0]
    sim, loss_fn = CosineSimilarity(temperature=1.0), RegressionLoss()
    with torch.no_grad():
        p = [ext.predictor(ext.projector(encoder(x))) for x in (x1, x2)]
        z = [ext.teacher[1](ext.teacher[0](x)) for x in (x1, x2)]
    for c, (a, b) in zip(comps, [(0, 1), (1, 0)], strict=True):
        expected = (2 - 2 * F.cosine_similarity(p[a], z[b], dim=1)).mean()
        assert loss_fn(sim(c.anchors, c.candidates), c).item() == pytest.approx(expected.item(), rel=1e-5)
    total = sum(c.weight * loss_fn(sim(c.anchors, c.candidates), c) for c in comps)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    assert all(p.grad is None for p in ext.teacher.parameters())


def test_regression_loss_reads_positive_scores_only():
    scores = torch.tensor([[0.5, 9.0], [9.0, -1.0]])
    comp = Comparison(None, None, positives=torch.tensor([0, 1]))
    assert RegressionLoss()(scores, comp).item() == pytest.approx(((2 - 1.0) + (2 + 2.0)) / 2)
    with pytest.raises(ZooError, match="needs comparisons with positives"):
        RegressionLoss()(scores, Comparison(None, None))


@pytest.mark.parametrize("make", [
    lambda e: MomentumQueueExtractor(encoder=e, head_hidden=8, head_out=4, queue_size=8),
    lambda e: MomentumPredictorExtractor(encoder=e, projector_hidden=8, projector_out=4, predictor_hidden=8),
])
def test_teacher_is_frozen_checkpointed_and_follows_online(make):
    encoder = tiny_encoder()
    ext = make(encoder)
    heads = ext.head if isinstance(ext, MomentumQueueExtractor) else ext.projector
    assert list(ext.teacher.parameters()) and not any(p.requires_grad for p in ext.teacher.parameters())
    trainable = {n for n, p in ext.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("teacher.") for n in trainable)
    state = ext.state_dict()
    assert {"teacher.copies.0.to_1.2.running_mean", "teacher.copies.1.0.weight"} <= set(state)
    if isinstance(ext, MomentumQueueExtractor):
        assert {"queue.keys", "queue.ptr"} <= set(state)

    perturb(encoder, heads)
    online = dict(encoder.named_parameters())
    before = {n: p.clone() for n, p in ext.teacher[0].named_parameters()}
    ext.after_optimizer_step(encoder, 0.5)
    m = 0.999 if isinstance(ext, MomentumQueueExtractor) else byol_tau(0.5)
    for n, t in ext.teacher[0].named_parameters():
        assert torch.allclose(t, m * before[n] + (1 - m) * online[n])
    gap = sum((t - online[n]).abs().sum() for n, t in ext.teacher[0].named_parameters())
    gap_before = sum((before[n] - online[n]).abs().sum() for n in before)
    assert gap < gap_before

    restored = make(tiny_encoder())
    restored.load_state_dict(ext.state_dict())
    for (n, a), b in zip(restored.state_dict().items(), ext.state_dict().values(), strict=True):
        assert torch.equal(a, b), n


# Lightning is imported inside the functions below so that the DDP workers spawned at the end start fast.

def module_for(**parts):
    from training.pretrain.module import ContrastiveModule
    return ContrastiveModule(method=None, encoder={"name": "amdim", **TINY_AMDIM}, **parts)


def fit(module, data_dir, max_steps, callbacks=()):
    import pytorch_lightning as pl

    from training.pretrain.data import FashionMNISTDataModule

    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))
    trainer.fit(module, datamodule=FashionMNISTDataModule(root=str(data_dir), batch_size=8))
    return trainer


def gradient_probe():
    from tests.helpers.harness import GradientProbe  # imports Lightning: kept out of the spawned workers' imports

    return GradientProbe()


@pytest.mark.parametrize("augment,extract,temperature,loss", [
    ("moco_v2", {"name": "momentum_queue", "head_hidden": 32, "head_out": 16, "queue_size": 64}, 0.2, "nce"),
    ("byol", {"name": "momentum_predictor", "projector_hidden": 32, "projector_out": 16, "predictor_hidden": 32},
     1.0, "regression"),
])
def test_yaml_only_momentum_method_takes_two_steps(fmnist_dir, augment, extract, temperature, loss):
    torch.manual_seed(0)
    module = module_for(name=f"{augment}_tiny", augment={"name": augment, "size": 32, "mean": [0.5], "std": [0.25]},
                        extract=extract, similarity={"name": "cosine", "temperature": temperature},
                        loss={"name": loss})
    online_before = {k: v.clone() for k, v in module.encoder.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in module.extract.teacher.named_parameters()}
    probe = gradient_probe()
    trainer = fit(module, fmnist_dir, max_steps=2, callbacks=[probe])
    assert len(probe.losses) == 2 and all(math.isfinite(v) for v in probe.losses)
    assert len(probe.grad_norms) == 2 and all(g > 0 for g in probe.grad_norms)
    assert any(not torch.equal(online_before[k], v) for k, v in module.encoder.state_dict().items())
    assert any(not torch.equal(teacher_before[k], v) for k, v in module.extract.teacher.named_parameters())
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not any(id(p) in optimized for p in module.extract.teacher.parameters())
    if augment == "moco_v2":
        assert module.extract.queue.ptr.item() == 16  # two global batches of 8 keys enqueued


def test_queue_size_must_hold_whole_global_batches(fmnist_dir):
    module = module_for(augment={"name": "moco_v2", "size": 32, "mean": [0.5], "std": [0.25]},
                        extract={"name": "momentum_queue", "head_hidden": 8, "head_out": 4, "queue_size": 60},
                        similarity={"name": "cosine", "temperature": 0.2}, loss={"name": "nce"})
    with pytest.raises(ZooError, match="queue size 60 is not divisible by the global batch 8"):
        fit(module, fmnist_dir, max_steps=1)


def _ddp_enqueue_worker(rank, port, out):
    torch.set_num_threads(1)
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # same initial encoder, head, teacher and queue on both ranks
        encoder = tiny_encoder()
        ext = MomentumQueueExtractor(encoder=encoder, head_hidden=8, head_out=4, queue_size=16)
        (c,) = ext(encoder, views(n=4, seed=10 + rank))  # each rank sees its own batch
        torch.save({"keys": ext.queue.keys, "ptr": ext.queue.ptr, "k": c.candidates[:4],
                    "negatives": c.candidates[4:]}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_ranks_enqueue_the_global_batch_in_rank_order(tmp_path):
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_enqueue_worker, args=(port, str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(r0["keys"], r1["keys"]) and r0["ptr"].item() == r1["ptr"].item() == 8
    assert torch.allclose(r0["keys"][:4], r0["k"]) and torch.allclose(r0["keys"][4:8], r1["k"])
    assert not torch.allclose(r0["k"], r1["k"])
    assert torch.equal(r0["negatives"], r1["negatives"])  # both ranks drew negatives from the same queue
    assert torch.equal(r0["keys"][8:], r0["negatives"][8:])


def test_teacher_updates_once_per_optimizer_step_with_progress_k_over_k_total(fmnist_dir):
    import pytorch_lightning as pl

    from training.pretrain.data import FashionMNISTDataModule

    module = module_for(augment={"name": "byol", "size": 32, "mean": [0.5], "std": [0.25]},
                        extract={"name": "momentum_predictor", "projector_hidden": 8, "projector_out": 4,
                                 "predictor_hidden": 8}, similarity={"name": "cosine"}, loss={"name": "regression"})
    progress = []
    update = module.extract.after_optimizer_step
    module.extract.after_optimizer_step = lambda encoder, p: (progress.append(p), update(encoder, p))
    trainer = pl.Trainer(max_steps=2, accumulate_grad_batches=2, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=FashionMNISTDataModule(root=str(fmnist_dir), batch_size=8))
    assert progress == [0.0, 0.5]  # 4 batches, 2 optimizer steps: one EMA update after each, k/K from k = 0
