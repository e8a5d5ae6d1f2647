"""``export --format torchvision|timm``: the files load in those libraries, offline, and give our features."""

import json
from pathlib import Path

import pytest
import torch

import zoo
from tests.helpers.zoo_exports import make_export
from training.cli import main
from training.release.export import export_checkpoint
from zoo.build import build_encoder
from zoo.methods import get_method
from zoo.pretrained.export_folder import write_export
from zoo.spec import Part

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def resnet_folder(out: Path, *, in_channels: int = 3, width: float = 1.0, arch: str = "resnet18",
                  same_padding: bool = False) -> Path:
    """An exported ImageNet-stem ResNet with seeded random weights and non-trivial BN statistics."""
    torch.manual_seed(0)
    kwargs = dict(arch=arch, in_channels=in_channels, **({"width": width, "backend": "timm"} if width != 1 else {}),
                  **({"same_padding": True} if same_padding else {}))
    method = get_method("simclr").with_overrides(encoder=Part.of("resnet", **kwargs).to_dict(),
                                                 augment=dict(size=64, mean=MEAN[:in_channels], std=STD[:in_channels]))
    encoder = build_encoder(method.encoder)
    for module in encoder.modules():  # trained-looking BN statistics, so that names and eval mode both matter
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return write_export(out, method, encoder.eval(), name="simclr.interop", dataset="imagenet", recipe={},
                        training={})


def ours(folder: Path, channels: int = 3):
    encoder = zoo.load_encoder(folder)
    images = torch.randint(0, 256, (2, channels, 80, 72), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    x = zoo.eval_transform(encoder)(images)
    with torch.no_grad():
        return x, encoder(x)


def test_torchvision_export_loads_strictly_and_gives_our_features(tmp_path):
    import torchvision

    folder = resnet_folder(tmp_path / "enc")
    result = export_checkpoint(ckpt=str(folder), out=str(tmp_path / "resnet18.pth"), format="torchvision")
    assert result["arch"] == "resnet18" and result["input"]["mean"] == MEAN and result["input"]["size"] == [64, 64]
    state = torch.load(tmp_path / "resnet18.pth", weights_only=True)
    model = torchvision.models.resnet18()
    assert model.load_state_dict(state, strict=False).missing_keys == ["fc.weight", "fc.bias"]
    model.fc = torch.nn.Identity()
    model.load_state_dict(state)  # strict
    x, expected = ours(folder)
    with torch.no_grad():
        got = model.eval()(x)
    assert got.shape == (2, 512)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def hub_cache(root: Path, repo_id: str, folder: Path) -> Path:
    """A Hugging Face cache holding ``folder`` as ``repo_id``'s main revision (what a download would leave)."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    return root


def test_timm_export_loads_from_an_offline_hub_cache_for_fine_tuning(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import timm
    from timm.data import resolve_data_config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder = resnet_folder(tmp_path / "enc")
    result = export_checkpoint(ckpt=str(folder), out=str(tmp_path / "timm"), format="timm")
    assert sorted(p.name for p in (tmp_path / "timm").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert result["architecture"] == "resnet18"
    cache = hub_cache(tmp_path / "hf", "zoo/simclr-interop", tmp_path / "timm")
    model = timm.create_model("hf-hub:zoo/simclr-interop", pretrained=True, num_classes=7, cache_dir=cache).eval()
    assert model.fc.out_features == 7  # a fresh head for fine-tuning
    data = resolve_data_config(model=model)
    assert list(data["mean"]) == MEAN and list(data["std"]) == STD and list(data["input_size"]) == [3, 64, 64]
    assert data["crop_pct"] == 1.0 and data["crop_mode"] == "squash" and data["interpolation"] == "bilinear"
    x, expected = ours(folder)
    with torch.no_grad():
        got = model.forward_head(model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    features = timm.create_model("hf-hub:zoo/simclr-interop", pretrained=True, num_classes=0, cache_dir=cache)
    with torch.no_grad():  # num_classes=0 matches the checkpoint: timm loads it strictly
        torch.testing.assert_close(features.eval()(x), expected, atol=1e-5, rtol=1e-5)
    card = (tmp_path / "timm" / "README.md").read_text()
    assert "library_name: timm" in card and "license: apache-2.0" in card  # ours: the project's licence
    assert json.loads((tmp_path / "timm" / "config.json").read_text())["pretrained_cfg"]["license"] == "apache-2.0"


@pytest.mark.slow
def test_timm_export_records_grey_input_and_width_as_model_args(tmp_path):
    import timm

    folder = resnet_folder(tmp_path / "enc", in_channels=1, width=0.5)
    export_checkpoint(ckpt=str(folder), out=str(tmp_path / "timm"), format="timm")
    config = json.loads((tmp_path / "timm" / "config.json").read_text())
    assert config["model_args"] == {"in_chans": 1, "channels": [32, 64, 128, 256], "stem_width": 32}
    assert config["pretrained_cfg"]["input_size"] == [1, 64, 64] and config["num_features"] == 256
    model = timm.create_model("resnet18", pretrained=True, num_classes=0, **config["model_args"],
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "timm" / "model.safetensors"),
                                                          num_classes=0))
    x, expected = ours(folder, channels=1)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind, format, message", [
    ("small_stem", "torchvision", "--format torchvision: this ResNet has the small-image stem (3x3 stride-1 conv1, "
                                  "no max-pool), which torchvision's ResNets cannot express; only the 7x7 ImageNet "
                                  "stem exports"),
    ("amdim", "timm", "--format timm exports ResNet encoders only (the 'resnet' part); this encoder is 'amdim', "
                      "which timm has no model for"),
    ("grey", "torchvision", "--format torchvision: torchvision's ResNets take 3 input channels, this encoder takes 1; "
                            "use --format timm (it records in_chans)"),
    ("none", "onnx", "unknown export format 'onnx'; choose 'zoo' (default), 'torchvision' or 'timm'"),
    *[("same", fmt, f"--format {fmt}: this ResNet pads its strided convolutions and max-pool as TensorFlow's 'SAME' "
                    f"(the BYOL/SimCLR TF conversions), which {fmt}'s ResNets cannot express; the export would give "
                    "other features (up to 1.28 apart in a BYOL import), so none is written")
      for fmt in ("torchvision", "timm")],
])
def test_export_refuses_what_the_library_cannot_express_in_one_line(tmp_path, capsys, kind, format, message):
    if kind in ("grey", "same"):  # "same": a BYOL import's TF padding (zoo/pretrained/convert/converted.py)
        source = resnet_folder(tmp_path / "enc", in_channels=1 if kind == "grey" else 3, same_padding=kind == "same")
    elif kind == "none":  # the format is checked before the source is read
        source = tmp_path / "missing.ckpt"
    else:
        source = make_export(tmp_path / "enc", method="simclr" if kind == "small_stem" else "amdim")
    out = tmp_path / "out"
    assert main(["export", "--ckpt", str(source), "--out", str(out), "--format", format]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not out.exists()
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
