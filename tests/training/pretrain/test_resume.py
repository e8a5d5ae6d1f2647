"""Crash safety of pre-training: SIGKILL mid-epoch then ``--ckpt_path last`` gives the uninterrupted run's weights;
a NaN loss stops with the step named and the last good checkpoint kept; checkpoint writes are atomic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

import training.pretrain.batches as batches_module
from tests.helpers.tiny import TINY
from training.pretrain.batches import ResumableBatches
from training.pretrain.data import FashionMNISTDataModule, InMemoryImages, batch_as_is
from training.pretrain.module import ContrastiveModule
from training.pretrain.resume import AtomicCheckpointIO, ResumableTraining
from training.release.export import epochs_trained, read_checkpoint
from zoo.errors import ZooError

ROOT = Path(__file__).resolve().parents[3]
STEPS_PER_EPOCH, EPOCHS, SAVE_EVERY, KILL_AT = 5, 3, 3, 7  # last.ckpt at steps 3, 5, 6, 9, 10...; killed in 7

# methods whose state goes beyond weights + optimizer: EMA teacher and negative queue (MoCo v2); prototypes frozen
# for the first epoch and a queue that joins Sinkhorn (SwAV)
STATEFUL = {
    "moco_v2": TINY["moco_v2"],
    "swav": {**TINY["swav"], "extract": {**TINY["swav"]["extract"], "freeze_prototypes_epochs": 1,
                                         "queue_size": 16, "queue_start_epoch": 0}},
}
OPTIMIZER = {"moco_v2": "sgd", "swav": "adam"}  # momentum SGD, and the fused Adam kernel


def write_config(run: Path, data: Path, method: str) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": EPOCHS, "logger": False,
                    "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(run),
                    "callbacks": [  # the recipes' pair: end of every epoch, and every few steps
                        {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                         "init_args": {"dirpath": str(run / "checkpoints"), "save_last": True,
                                       "enable_version_counter": False}},
                        {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                         "init_args": {"dirpath": str(run / "checkpoints"), "every_n_train_steps": SAVE_EVERY,
                                       "save_top_k": 0, "save_last": True, "enable_version_counter": False}},
                        {"class_path": "tests.scripts.faults.KillAtStep"}]},
        "model": {"method": method, **STATEFUL[method], "optimizer": OPTIMIZER[method], "lr": 0.05,
                  "warmup_epochs": 1, "schedule": "cosine"},
        "data": {"class_path": "training.pretrain.data.FashionMNISTDataModule",
                 "init_args": {"root": str(data), "batch_size": 8, "train_subset": 8 * STEPS_PER_EPOCH}},
    }
    path = run / "run.yaml"
    run.mkdir(parents=True)
    path.write_text(yaml.safe_dump(config))
    return path


def fit(config: Path, *extra: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop("ZOO_TEST_KILL_AT_STEP", None)
    if kill_at is not None:
        env["ZOO_TEST_KILL_AT_STEP"] = str(kill_at)
    return subprocess.run([sys.executable, "-m", "training", "fit", "--config", str(config), *extra], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def final_state(run: Path) -> dict:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == STEPS_PER_EPOCH * EPOCHS
    return {"weights": ckpt["state_dict"], "optimizer": ckpt["optimizer_states"][0]["state"],
            "scheduler": ckpt["lr_schedulers"][0]["last_epoch"]}


def assert_same(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs (max abs diff {(a.float() - b.float()).abs().max()})"
    else:
        assert a == b, where


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(STATEFUL))
def test_sigkill_mid_epoch_then_resume_ends_with_the_uninterrupted_weights(tmp_path, fmnist_dir, method):
    straight = write_config(tmp_path / "straight", fmnist_dir, method)
    done = fit(straight)
    assert done.returncode == 0, done.stderr[-3000:]

    crashed = write_config(tmp_path / "crashed", fmnist_dir, method)
    killed = fit(crashed, kill_at=KILL_AT)
    assert killed.returncode == -9, killed.stderr[-3000:]
    saved = torch.load(tmp_path / "crashed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 6 and saved["epoch"] == 1  # mid-epoch: one batch into the second epoch
    assert epochs_trained(saved) == 1
    assert not list((tmp_path / "crashed" / "checkpoints").glob(".*.tmp"))

    resumed = fit(crashed, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr
    assert_same(final_state(tmp_path / "straight"), final_state(tmp_path / "crashed"))


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, fmnist_dir):
    from pytorch_lightning.callbacks import ModelCheckpoint

    from tests.scripts.faults import PoisonWeightsAtStep

    torch.manual_seed(0)
    module = ContrastiveModule(method="simclr", **TINY["simclr"])
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_last=True)
    trainer = pl.Trainer(max_steps=10, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[PoisonWeightsAtStep(5), saver, ResumableTraining()])
    with pytest.raises(ZooError, match=r"loss became nan at step 5; stopping before the optimizer step"):
        trainer.fit(module, datamodule=FashionMNISTDataModule(root=str(fmnist_dir), batch_size=8))
    kept = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert kept["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in kept["state_dict"].values() if v.is_floating_point())
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["epoch=0-step=4.ckpt", "last.ckpt"]


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


def test_checkpoint_write_that_fails_midway_leaves_the_previous_file(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": torch.tensor(1)}, path)
    with pytest.raises(RuntimeError, match="cannot pickle this"):
        io.save_checkpoint({"step": torch.tensor(2), "bad": Unpicklable()}, path)
    assert io.load_checkpoint(path)["step"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_resuming_reads_checkpoints_with_weights_only(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Unpicklable}, path)  # a class: unpickling would import code
    with pytest.raises(ZooError, match=r"cannot resume from .*evil.ckpt: not a readable checkpoint \(loaded with "
                                       r"weights_only=True\): it contains a pickled .*Unpicklable object, which weights_only "
                                       r"loading refuses"):
        AtomicCheckpointIO().load_checkpoint(path)
    with pytest.raises(ZooError, match=r"evil.ckpt is not a readable PyTorch checkpoint \(loaded with weights_only"):
        read_checkpoint(path)  # what export reads


def stream(n=40, batch_size=8, seed=0):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1)
    return ResumableBatches(InMemoryImages(images, torch.zeros(n)), batch_size, seed=seed, collate_fn=batch_as_is)


def ids(batches):
    return [b[0].flatten().tolist() for b in batches]


def test_batch_order_depends_only_on_seed_and_epoch_and_covers_each_image_once():
    first, again, other_seed = stream(), stream(), stream(seed=1)
    for loader in (first, again, other_seed):
        loader.sampler.set_epoch(3)
    epoch3 = ids(first)
    assert epoch3 == ids(again) != ids(other_seed)
    assert sorted(sum(epoch3, [])) == list(range(40)) and len(first) == 5
    first.sampler.set_epoch(4)
    assert ids(first) != epoch3


def test_a_restored_stream_serves_the_rest_of_the_interrupted_epoch():
    before = stream()
    before.sampler.set_epoch(2)
    served = iter(before)
    seen = ids([next(served), next(served)])
    state = before.state_dict()
    assert state["epoch"] == 2 and state["served"] == 2
    after = stream()
    after.load_state_dict(state)
    after.sampler.set_epoch(2)
    rest = ids(after)
    full = stream()
    full.sampler.set_epoch(2)
    assert seen + rest == ids(full)
    assert len(ids(after)) == 5  # the skip applies once; the next pass is a whole epoch


def test_restoring_into_a_different_data_setup_is_refused():
    state = stream().state_dict()
    with pytest.raises(ZooError, match=r"data settings changed \(batch_size 8 -> 4\)"):
        stream(batch_size=4).load_state_dict(state)


def test_each_process_gets_its_own_share_under_ddp(monkeypatch):
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(batches_module, "rank_and_world", lambda rank=rank: (rank, 2))
        loader = stream()
        assert len(loader) == 2  # 20 images per process, 2 full batches of 8
        shares.append(set(sum(ids(loader), [])))
    assert not shares[0] & shares[1] and len(shares[0]) == len(shares[1]) == 16
