"""Checkpoint -> exported folder -> zoo.load_encoder, and the errors on the way."""

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import zoo
import zoo.pretrained.exported
from tests.helpers.tiny import TINY
from training.pretrain.data import FashionMNISTDataModule
from training.pretrain.module import ContrastiveModule
from training.release.export import export_checkpoint
from zoo.errors import ZooError


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tests.helpers.data import make_fashion_mnist

    root = tmp_path_factory.mktemp("ckpt")
    data = make_fashion_mnist(root / "data")
    pl.seed_everything(0)
    # contiguous like the exported encoder, so outputs can be compared bit for bit (channels_last="auto" picks
    # channels-last on CPUs, whose convolutions round differently)
    module = ContrastiveModule(method="yadim", channels_last=False, **TINY["yadim"])
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(root))
    trainer.fit(module, datamodule=FashionMNISTDataModule(root=str(data), batch_size=8))
    path = root / "model.ckpt"
    trainer.save_checkpoint(path)
    return path, module


def test_export_then_load_gives_identical_outputs(checkpoint, tmp_path):
    path, module = checkpoint
    out = export_checkpoint(ckpt=str(path), out=str(tmp_path / "yadim_tiny"), name="yadim.tiny", dataset="fashion_mnist")
    assert sorted(p.name for p in Path(out).iterdir()) == ["README.md", "config.json", "model.safetensors"]
    encoder = zoo.load_encoder(out)
    assert not encoder.training and encoder.num_features == 32
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    module.eval()
    with torch.no_grad():
        expected = module.encode_for_eval(images)
        got = encoder(zoo.eval_transform(encoder)(images))
    assert got.shape == (5, 32)
    assert torch.equal(got, expected)
    config = json.loads((Path(out) / "config.json").read_text())
    assert config["method"]["name"] == "yadim" and config["input"]["size"] == [32, 32]
    assert config["recipe"]["data"]["batch_size"] == 8
    card = (Path(out) / "README.md").read_text()
    assert "| (2) encoder | `amdim` |" in card and card.startswith("---\n")


def test_export_refuses_to_overwrite_and_interrupted_export_leaves_nothing(checkpoint, tmp_path, monkeypatch):
    path, _ = checkpoint
    out = tmp_path / "enc"
    export_checkpoint(ckpt=str(path), out=str(out))
    with pytest.raises(ZooError, match="already exists"):
        export_checkpoint(ckpt=str(path), out=str(out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-export")

    monkeypatch.setattr(zoo.pretrained.exported, "render_card", crash, raising=False)
    monkeypatch.setattr("zoo.pretrained.export_folder.render_card", crash)
    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(ckpt=str(path), out=str(tmp_path / "fresh"))
    assert not (tmp_path / "fresh").exists()

    import safetensors.torch

    def crash_on_write(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing weights")

    monkeypatch.setattr(safetensors.torch, "save_file", crash_on_write)
    monkeypatch.undo()  # keep render_card real; only the weight write fails below
    monkeypatch.setattr(safetensors.torch, "save_file", crash_on_write)
    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(ckpt=str(path), out=str(out), overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "the old export must survive intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"], "no temporary folders may be left behind"


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bogus = tmp_path / "notes.ckpt"
    bogus.write_text("this is not a checkpoint")
    with pytest.raises(ZooError, match="is not a readable PyTorch checkpoint"):
        export_checkpoint(ckpt=str(bogus), out=str(tmp_path / "out"))
    with pytest.raises(ZooError, match="does not exist"):
        export_checkpoint(ckpt=str(tmp_path / "missing.ckpt"), out=str(tmp_path / "out"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.ckpt")
    with pytest.raises(ZooError, match="not a contrastive-zoo training checkpoint"):
        export_checkpoint(ckpt=str(tmp_path / "other.ckpt"), out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_strict_load_rejects_mismatched_weights(checkpoint, tmp_path):
    path, _ = checkpoint
    out = Path(export_checkpoint(ckpt=str(path), out=str(tmp_path / "enc")))
    config = json.loads((out / "config.json").read_text())
    config["encoder"]["ndf"] = 16  # architecture no longer matches the stored weights
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ZooError, match=r"does not match the encoder \(strict load\): .*wrong shapes"):
        zoo.load_encoder(out)


def test_load_encoder_errors(tmp_path):
    with pytest.raises(ZooError, match="not an exported encoder folder"):
        zoo.load_encoder(tmp_path / "nowhere")
    with pytest.raises(ZooError, match="config.json is missing"):
        zoo.load_encoder(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ZooError, match="is not valid JSON"):
        zoo.load_encoder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "contrastive-zoo/encoder@1"}))
    with pytest.raises(ZooError, match="missing required field 'encoder'"):
        zoo.load_encoder(tmp_path)


def test_patch_grid_method_exports_its_grid_for_evaluation(tmp_path, fmnist_dir):
    """CPC trains on patch grids: the export records the grid and the loaded encoder averages over it."""
    pl.seed_everything(0)
    module = ContrastiveModule(method="cpc_v2", channels_last=False, **TINY["cpc_v2"])  # bit-exact comparison
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(module, datamodule=FashionMNISTDataModule(root=str(fmnist_dir), batch_size=8))
    trainer.save_checkpoint(tmp_path / "cpc.ckpt")
    out = export_checkpoint(ckpt=str(tmp_path / "cpc.ckpt"), out=str(tmp_path / "cpc"))
    encoder = zoo.load_encoder(out)
    assert encoder.zoo_config["input"] == {"channels": 1, "size": [16, 16], "mean": [0.5], "std": [0.25],
                                           "patch": 8, "overlap": 4}
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    grid = zoo.eval_transform(encoder)(images)
    assert grid.shape == (3, 3, 3, 1, 8, 8)
    module.eval()
    with torch.no_grad():
        got = encoder(grid)
        assert torch.equal(got, module.encode_for_eval(images))
        per_patch = encoder(grid.flatten(0, 2)).view(3, 9, -1)
    assert torch.allclose(got, per_patch.mean(1))


def test_export_named_like_a_shipped_entry_gets_its_own_card_not_the_shipped_prose(checkpoint, tmp_path):
    """The prose of ``card_templates/entries/yadim.fashion_mnist.md`` describes the run the maintainers shipped
    ("3 epochs, the zoo's default encoder"); a run of one's own that reuses the name is another run."""
    from training.release.publish import publish
    from zoo.pretrained.cards import template_text

    path, _ = checkpoint
    prose = (template_text("entries/yadim.fashion_mnist.md") or "").strip()
    assert prose.startswith("The zoo's default encoder")
    out = export_checkpoint(ckpt=str(path), out=str(tmp_path / "mine"), name="yadim.fashion_mnist",
                            dataset="fashion_mnist")
    card = (Path(out) / "README.md").read_text()
    assert card.startswith("---\n") and "# yadim.fashion_mnist\n" in card
    assert "The zoo's default encoder" not in card and "3 epochs" not in card
    publish(out, package=True, registry=str(tmp_path / "reg" / "registry.json"))  # beside a registry of one's own
    card = (tmp_path / "reg" / "yadim.fashion_mnist" / "README.md").read_text()
    assert "Stored beside the weights registry" in card and "The zoo's default encoder" not in card
