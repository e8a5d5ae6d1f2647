"""Faults and bad inputs of ``python -m training fit`` with a shipped recipe, through the real command line:
``--ckpt_path last`` as the README documents it, recipe values checked where the recipe is read, and a full disk
while the run writes its files. Each run is the recipe unchanged but for a tiny encoder, tiny synthetic
Fashion-MNIST-format data and a step or two."""

from __future__ import annotations

import errno
import json
import shlex
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import training.pretrain.resume as resume
from training.cli import main
from training.pretrain import hardware

ROOT = Path(__file__).resolve().parents[3]
RECIPE = ROOT / "training" / "recipes" / "yadim" / "fashion_mnist.yaml"
TINY_ENCODER = json.dumps({"in_channels": 1, "image_size": 32, "ndf": 8, "n_rkhs": 32, "depth": 1})
FP32_CPU = hardware.Hardware(cpu="AMD EPYC 7B13", cpu_bf16=False, cuda=False, cuda_bf16=False)


@pytest.fixture(autouse=True)
def _fp32(monkeypatch):
    """The same precision on every machine (bf16 CPUs would otherwise train in bf16)."""
    monkeypatch.setattr(hardware, "probe", lambda: FP32_CPU)


def fit_args(root: Path, fmnist: Path, *extra: str) -> list:
    """The recipe with 8 training images in batches of 4 (2 steps an epoch), a tiny encoder, and a log line per
    step (fewer steps than the logging interval would be a warning on stderr)."""
    return ["fit", "--config", str(RECIPE), "--model.encoder", TINY_ENCODER, "--data.init_args.root", str(fmnist),
            "--data.init_args.batch_size", "4", "--data.init_args.train_subset", "8",
            "--data.init_args.knn_bank_subset", "8", "--data.init_args.eval_batch_size", "8",
            "--trainer.log_every_n_steps", "1", "--trainer.default_root_dir", str(root), *extra]


def fit(root: Path, fmnist: Path, *extra: str) -> int:
    return main(fit_args(root, fmnist, *extra))


def files(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_parts_built_from_python_refuse_the_same_values():
    from zoo.errors import ZooError
    from zoo.parts import AUGMENTATIONS, SIMILARITIES

    grey = {"size": 32, "mean": [0.5], "std": [0.5]}
    with pytest.raises(ZooError) as reversed_scale:
        AUGMENTATIONS.build("swav", {**grey, "small_size": 16, "small_scale": [0.14, 0.05]})
    assert str(reversed_scale.value) == ("augmentation 'swav': small_scale is [0.14, 0.05]; it must be null (the whole "
                                         "image) or [lo, hi] with 0 < lo <= hi <= 1")
    with pytest.raises(ZooError) as text:
        SIMILARITIES.build("cosine", {"temperature": "0.1"})
    assert str(text.value) == "similarity 'cosine': temperature is '0.1'; it must be a number > 0"
    assert AUGMENTATIONS.build("simclr", {**grey, "crop_scale": None}).views[0].crop_scale is None  # the whole image



@pytest.mark.parametrize("option, value, message", [
    ("--data.init_args.batch_size", "1", "data.init_args.batch_size is 1; it must be an integer >= 2"),
    ("--model.lr", "-0.1", "model.lr is -0.1; it must be a number > 0"),
    ("--model.weight_decay", "-1", "model.weight_decay is -1.0; it must be a number >= 0"),
    ("--model.similarity.temperature", "abc", "model.similarity.temperature is 'abc'; it must be a number > 0"),
    ("--model.augment.crop_scale", "[1.0, 0.2]",
     "model.augment.crop_scale is [1.0, 0.2]; it must be null (the whole image) or [lo, hi] with "
     "0 < lo <= hi <= 1"),
    ("--model.augment.crop_scale", "[0.5]",
     "model.augment.crop_scale is [0.5]; it must be null (the whole image) or [lo, hi] with 0 < lo <= hi <= 1"),
])
def test_a_bad_recipe_value_is_one_line_naming_key_value_and_range(tmp_path, fmnist_dir, capsys, option, value,
                                                                   message):
    root = tmp_path / "run"
    assert fit(root, fmnist_dir, "--trainer.max_steps", "1", option, value) == 2
    assert capsys.readouterr().err == f"error: recipe {RECIPE}: {message}\n"
    assert not root.exists()


def test_ckpt_path_last_resumes_the_newest_run_of_the_recipe(tmp_path, fmnist_dir, capsys):
    root = tmp_path / "run"
    logs = root / "lightning_logs"
    assert fit(root, fmnist_dir, "--trainer.max_steps", "1") == 0
    capsys.readouterr()

    assert fit(root, fmnist_dir, "--trainer.max_steps", "2", "--ckpt_path", "last") == 0
    out = capsys.readouterr().out
    assert f"resuming from {logs / 'version_0' / 'checkpoints' / 'last.ckpt'}\n" in out
    assert "training: 2 optimizer steps, resuming at step 1\n" in out
    assert torch.load(logs / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2

    assert fit(root, fmnist_dir, "--trainer.max_steps", "3", "--ckpt_path", "last") == 0  # the newest run: version_1
    out = capsys.readouterr().out
    assert f"resuming from {logs / 'version_1' / 'checkpoints' / 'last.ckpt'}\n" in out
    assert "training: 3 optimizer steps, resuming at step 2\n" in out
    assert torch.load(logs / "version_2" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_ckpt_path_last_without_an_earlier_run_is_refused(tmp_path, fmnist_dir, capsys):
    root = tmp_path / "run"
    assert fit(root, fmnist_dir, "--trainer.max_steps", "1", "--ckpt_path", "last") == 2
    assert capsys.readouterr().err == (
        f"error: --ckpt_path last: no last.ckpt of an earlier run of recipe {RECIPE} in "
        f"{root / 'lightning_logs'}/*/checkpoints; nothing to resume: start the run without --ckpt_path\n")
    assert not root.exists()


class CtrlCAtTrainStart(pl.Callback):
    """Ctrl-C as training starts, before the run writes a checkpoint of its own."""

    def on_train_start(self, trainer, pl_module):
        raise KeyboardInterrupt


def test_ctrl_c_before_a_resumed_run_saves_names_the_checkpoint_it_resumed_from(tmp_path, fmnist_dir, capsys):
    root = tmp_path / "run"
    assert fit(root, fmnist_dir, "--trainer.max_steps", "1") == 0
    resumed = tmp_path / "copied.ckpt"  # newer than the run's own checkpoints, which Lightning carries over
    shutil.copy(root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", resumed)
    capsys.readouterr()
    args = fit_args(root, fmnist_dir, "--trainer.max_steps", "2",
                    "--trainer.callbacks+=tests.training.pretrain.test_faults_fit.CtrlCAtTrainStart")
    assert main(args + ["--ckpt_path", str(resumed)]) == 130
    command = "python -m training " + " ".join(shlex.quote(a) for a in args)
    assert capsys.readouterr().err == (f"error: stopped by Ctrl-C; last checkpoint {resumed} (step 1); resume with: "
                                       f"{command} --ckpt_path {resumed}\n")


class FullDisk:
    """A file on a disk that fills up after ``room`` bytes: the write that goes past fails as a full disk does."""

    def __init__(self, handle, room: int = 64) -> None:
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        if self.handle.tell() + len(data) > self.room:
            self.handle.write(data[: max(0, self.room - self.handle.tell())])
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)


def filling_up(monkeypatch, name_pattern: str) -> None:
    """The files of the run whose name matches ``name_pattern`` go to a disk that fills up as they are written."""
    real = resume.atomic_file

    @contextmanager
    def atomic_file(path, mode="wb"):
        with real(path, mode) as handle:
            yield FullDisk(handle) if Path(path).match(name_pattern) else handle

    monkeypatch.setattr(resume, "atomic_file", atomic_file)


def test_a_full_disk_while_writing_a_checkpoint_is_one_line_and_leaves_no_partial_file(tmp_path, fmnist_dir, capsys,
                                                                                        monkeypatch):
    root = tmp_path / "run"
    filling_up(monkeypatch, "*.ckpt")
    assert fit(root, fmnist_dir, "--trainer.max_steps", "1") == 2
    folder = root / "lightning_logs" / "version_0" / "checkpoints"
    assert capsys.readouterr().err == (
        f"error: no space left on the device of {folder} while writing epoch=0-step=1.ckpt; it was not written "
        "(an earlier one of that name is intact): free some space, then resume with --ckpt_path last\n")
    assert not folder.exists() or not list(folder.iterdir())  # no partial checkpoint, no temporary file


def test_a_full_disk_while_writing_config_yaml_is_one_line_and_leaves_no_empty_file(tmp_path, fmnist_dir, capsys,
                                                                                     monkeypatch):
    root = tmp_path / "run"
    filling_up(monkeypatch, "config.yaml")
    assert fit(root, fmnist_dir, "--trainer.max_steps", "1") == 2
    folder = root / "lightning_logs" / "version_0"
    assert capsys.readouterr().err == (
        f"error: no space left on the device of {folder} while writing config.yaml; it was not written "
        "(an earlier one of that name is intact): free some space, then run again\n")
    assert "config.yaml" not in files(root) and not [f for f in files(root) if f.endswith(".tmp")]


def test_a_full_disk_while_the_logger_writes_is_one_line(tmp_path, fmnist_dir, capsys, monkeypatch):
    from pytorch_lightning.loggers.csv_logs import ExperimentWriter

    def full(writer, params):
        raise OSError(errno.ENOSPC, "No space left on device", f"{writer.log_dir}/hparams.yaml")

    monkeypatch.setattr(ExperimentWriter, "log_hparams", full)  # the recipes log with Lightning's CSVLogger
    root = tmp_path / "run"
    assert fit(root, fmnist_dir, "--trainer.max_steps", "1") == 2
    hparams = root / "lightning_logs" / "version_0" / "hparams.yaml"
    assert capsys.readouterr().err == (f"error: no space left on the device while training ([Errno 28] No space left "
                                       f"on device: '{hparams}'): free some space, then run again\n")
