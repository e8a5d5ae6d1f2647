"""Online linear evaluation during pre-training, and the PNGs of training curves."""

import pytorch_lightning as pl
import torch

from tests.helpers.tiny import TINY
from training.cli import main
from training.downstream.online import OnlineLinear
from training.pretrain.data import FashionMNISTDataModule
from training.pretrain.module import ContrastiveModule


def fit(data_dir, callbacks, root):
    pl.seed_everything(0)
    module = ContrastiveModule(method="yadim", **TINY["yadim"])
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=callbacks, default_root_dir=str(root),
                         logger=pl.loggers.CSVLogger(str(root)))
    trainer.fit(module, datamodule=FashionMNISTDataModule(root=str(data_dir), batch_size=16))
    return module


def test_online_linear_reports_accuracy_without_touching_the_method(fmnist_dir, tmp_path):
    probe = OnlineLinear(num_classes=4, lr=1e-2)
    with_probe = fit(fmnist_dir, [probe], tmp_path / "a")
    without = fit(fmnist_dir, [], tmp_path / "b")
    assert len(probe.history) == 1 and 0.0 <= probe.history[0][1] <= 1.0
    for (name, a), (_, b) in zip(with_probe.encoder.state_dict().items(), without.encoder.state_dict().items(), strict=True):
        assert torch.equal(a, b), f"{name} differs: the online probe changed pre-training"
    restored = OnlineLinear(num_classes=4)
    restored.load_state_dict(probe.state_dict())
    assert torch.equal(restored.head.weight, probe.head.weight) and restored.history == probe.history
    # the run's CSV log has the curve; `python -m training plot` draws it
    assert main(["plot", str(tmp_path / "a")]) == 0
    pngs = list((tmp_path / "a").rglob("curves.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes()[:4] == b"\x89PNG"


def test_plot_of_a_folder_without_logs_is_a_clear_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.csv under" in capsys.readouterr().err
