"""Downstream evaluation: kNN votes, linear probe, fine-tuning, splits, the evaluate command, plots, bad inputs."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from tests.helpers.zoo_exports import make_export
from training.cli import main
from training.downstream.finetune import finetune
from training.downstream.frozen import fit_linear_probe, knn_scores, split_indices
from training.evaluate_command import run_protocol
from training.pretrain.data import SplitFolderDataModule
from zoo.errors import ZooError


def test_knn_votes_match_a_hand_computed_example():
    bank = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    votes = knn_scores(torch.tensor([[2.0, 0.0]]), bank, labels, num_classes=3, k=2, temperature=0.1)
    # nearest two by cosine: item 0 (sim 1.0, class 0) and item 1 (sim 0.8, class 1); weights exp(sim / 0.1)
    assert torch.allclose(votes, torch.tensor([[math.exp(10.0), math.exp(8.0), 0.0]]), rtol=1e-5)
    votes = knn_scores(torch.tensor([[0.0, 1.0]]), bank, labels, num_classes=3, k=3, temperature=0.5)
    expected = torch.tensor([[math.exp(0.0), math.exp(0.6 / 0.5) + math.exp(2.0), 0.0]])
    assert torch.allclose(votes, expected, rtol=1e-5)


def test_linear_probe_recovers_a_linearly_separable_toy_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0]) > 0).long()
    probe = fit_linear_probe((x[:200], y[:200]), (x[200:250], y[200:250]), num_classes=2)
    assert probe["val_acc"] == 1.0
    assert (probe["predict"](x[250:]).argmax(1) == y[250:]).float().mean() >= 0.98


def test_top5_is_reported_above_five_classes():
    from training.downstream.frozen import topk

    scores = torch.eye(10)[[1, 2, 3]] + torch.linspace(0, 0.5, 10)  # class 1, 2, 3 first, then 9, 8, 7, 6 ...
    labels = torch.tensor([1, 9, 0])
    assert topk(scores, labels, 10) == {"top1": pytest.approx(1 / 3), "top5": pytest.approx(2 / 3)}
    assert "top5" not in topk(scores[:, :5], torch.tensor([1, 2, 3]), 5)


def tiny_images(n=64, channels=1, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 100, (n, channels, size, size), generator=g) + labels.view(-1, 1, 1, 1) * 120
    return images.to(torch.uint8), labels


@pytest.mark.parametrize("train_last, expect", [(0, "none"), (1, "last"), (-1, "all")])
def test_finetuning_changes_encoder_weights_only_when_asked(tmp_path, train_last, expect):
    encoder = zoo.load_encoder(make_export(tmp_path / "exp", seed=0))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    x, y = tiny_images()
    model, info = finetune(encoder, zoo.eval_transform(encoder), 2, (x[:48], y[:48]), (x[48:], y[48:]), epochs=1,
                           batch_size=16, encoder_lr=1e-2, train_last=train_last)
    changed = {k for k, v in encoder.state_dict().items() if not torch.equal(before[k], v)}
    last = "to_1"  # the AMDIM encoder's last stage on the way to its pooled 1x1 representation
    if expect == "none":
        assert changed == set()
    elif expect == "last":
        assert changed and all(k.startswith(last + ".") for k in changed)
    else:
        assert any(not k.startswith(last + ".") for k in changed)
    assert info["trained_modules"] == {"none": 0, "last": 1, "all": 1}[expect]
    with pytest.raises(ZooError, match="train_last must be"):
        finetune(encoder, zoo.eval_transform(encoder), 2, (x, y), (x, y), train_last=99)


def test_validation_split_never_overlaps_test(tmp_path):
    fit, val = split_indices(100, 0.1, seed=3)
    assert len(val) == 10 and set(fit.tolist()).isdisjoint(val.tolist()) and len(fit) + len(val) == 100
    folder = write_png_folder(tmp_path / "pngs", n_per_class=10)
    dm = SplitFolderDataModule(root=str(folder), load_size=32, seed=0)
    train, test = dm.split("train"), dm.split("test")
    assert set(train.indices).isdisjoint(test.indices) and len(train) + len(test) == 20


def write_png_folder(root, n_per_class=12, size=40, mode="RGB", classes=("bright", "dark")):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            base = 200 if c == 0 else 40
            pixels = np.clip(rng.integers(-30, 30, size=(size, size, 3)) + base, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).convert(mode).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("protocol", ["knn", "linear", "finetune"])
def test_evaluate_command_on_a_png_folder_of_another_size_and_channel_count(tmp_path, protocol, capsys):
    folder = make_export(tmp_path / "exp", seed=0)  # a grey 32x32 encoder; the PNGs are 40x40 RGB
    pngs = write_png_folder(tmp_path / "pngs")
    out = tmp_path / f"{protocol}.json"
    rc = main(["evaluate", "--encoder", str(folder), "--data", str(pngs), "--protocol", protocol, "--out", str(out),
               "--record", str(folder), "--batch-size", "8", "--k", "5", *(["--epochs", "8", "--lr", "0.05"] if protocol == "finetune" else [])])
    assert rc == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["data"] == "folder:pngs" and result["n_test"] == 4 and result["n_fit"] + result["n_val"] == 20
    assert result["top1"] >= 0.75 and "top5" not in result  # two classes: no top-5
    config = json.loads((folder / "config.json").read_text())
    assert config["metrics"][f"folder:pngs/{protocol}"] == round(result["top1"], 4)
    card = (folder / "README.md").read_text()
    assert "| folder:pngs (test split) |" in card and f"--data {pngs} --protocol {protocol}" in card
    assert result["command"].startswith(f"python -m training evaluate --encoder {folder} --data {pngs}")
    if protocol != "finetune":
        assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_records_into_a_registry_entry_and_its_package_card(tmp_path, fmnist_dir):
    from training.evaluate_command import evaluate
    from training.release.publish import publish

    reg = tmp_path / "weights" / "registry.json"
    publish(str(make_export(tmp_path / "exp", seed=0)), package=True, registry=str(reg))
    result = evaluate(encoder="yadim.tiny", data="fashion_mnist", root=str(fmnist_dir), protocol="knn",
                      registry=str(reg), record=str(reg), k=5)
    entry = json.loads(reg.read_text())["entries"]["yadim.tiny"]
    assert entry["metrics"]["fashion_mnist/knn"] == round(result["top1"], 4) and result["num_classes"] == 4
    assert f"{round(result['top1'], 4):.4f}" in zoo.get_card("yadim.tiny", registry=reg)
    zoo.load_encoder("yadim.tiny", registry=reg)  # the sha256-checked files were not touched


def test_bad_datasets_each_give_one_clear_error(tmp_path):
    folder = make_export(tmp_path / "exp", seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooError, match="has no class folders with images"):
        main_raise(["--encoder", str(folder), "--data", str(tmp_path / "empty")])
    one = write_png_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(ZooError, match="single class"):
        main_raise(["--encoder", str(folder), "--data", str(one)])
    with pytest.raises(ZooError, match="not a dataset name"):
        main_raise(["--encoder", str(folder), "--data", "imagenet21k"])
    encoder = zoo.load_encoder(folder)

    class FourChannels:
        def knn_bank_dataloader(self):
            return [tiny_images(16, channels=4)]

        test_dataloader = knn_bank_dataloader

    with pytest.raises(ZooError, match=r"takes 1 channel\(s\); images with 4 cannot be converted"):
        run_protocol(encoder, FourChannels(), "knn")
    with pytest.raises(ZooError, match="unknown protocol"):
        run_protocol(encoder, FourChannels(), "probe")


def main_raise(args):
    from training.evaluate_command import evaluate

    kwargs = {a[2:].replace("-", "_"): b for a, b in zip(args[::2], args[1::2], strict=True)}
    return evaluate(**kwargs)


def test_any_lightning_datamodule_works(tmp_path):
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    class Plain(pl.LightningDataModule):
        def setup(self, stage=None):
            x, y = tiny_images(48)
            self.train_set, self.test_set = TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:])

        def train_dataloader(self):
            return DataLoader(self.train_set, batch_size=8)

        def test_dataloader(self):
            return DataLoader(self.test_set, batch_size=8)

    encoder = zoo.load_encoder(make_export(tmp_path / "exp", seed=0))
    result = run_protocol(encoder, Plain(), "linear")
    assert result["n_fit"] + result["n_val"] == 32 and result["n_test"] == 16 and result["top1"] >= 0.75
