"""zoo.pretrained.convert: legacy checkpoints (pl_bolts SimCLR / SwAV / CPC v2, facebookresearch/swav) -> exported folders.

Each checkpoint is synthetic: random weights in the source's exact key layout, saved as plain dicts of tensors
(so ``weights_only`` loading reads them). The imported encoder must give the same features as a reference network
built here directly from those tensors (torchvision for the ResNets, a functional CPCResNet for CPC).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import zoo
from tests.helpers.tiny import randomise_batch_norm
from zoo.errors import ZooError
from zoo.pretrained.convert import FORMATS, import_legacy

UNPICKLED: List[str] = []


class _Custom:
    """A custom object in a checkpoint; weights_only loading must never rebuild it."""

    def __setstate__(self, state):  # pragma: no cover - would only run if the checkpoint were unpickled
        UNPICKLED.append("ran")


# tiny forwards: one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def _resnet18(seed: int, small: bool = False) -> nn.Module:
    """torchvision resnet18 without fc, random weights and batch-norm statistics (so eval mode matters)."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None)
    net.fc = nn.Identity()
    if small:  # pl_bolts first_conv=False, maxpool1=False
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    return randomise_batch_norm(net)


def _swav_reference(net: nn.Module) -> nn.Module:
    """SwAV's forward_backbone: ConstantPad2d(1) then a 7x7/2 conv1 with padding 2."""
    net.conv1.padding = (2, 2)
    return nn.Sequential(nn.ConstantPad2d(1, 0.0), net).eval()


def _prefixed(prefix: str, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {prefix + k: v.clone() for k, v in state.items()}


def _lightning(state: Dict[str, torch.Tensor], **hparams) -> dict:
    return {"epoch": 4, "global_step": 500, "pytorch-lightning_version": "1.3.8", "state_dict": state,
            "hyper_parameters": hparams, "optimizer_states": [], "lr_schedulers": [], "callbacks": {}}


def _check(ckpt: dict, fmt: str, reference: nn.Module, tmp_path: Path, size: int = 48) -> zoo.Encoder:
    torch.save(ckpt, tmp_path / "legacy.ckpt")
    out = import_legacy(str(tmp_path / "legacy.ckpt"), format=fmt, out=str(tmp_path / "export"), name="legacy.test")
    encoder = zoo.load_encoder(out)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    x = zoo.eval_transform(encoder)(images)
    with torch.no_grad():
        got, want = encoder(x), reference(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    card = (Path(out) / "README.md").read_text()
    assert f"imported from {fmt} checkpoint legacy.ckpt" in card
    return encoder


def test_pl_bolts_simclr_cifar_stem(tmp_path):
    net = _resnet18(1, small=True)
    state = _prefixed("encoder.", net.state_dict())
    state.update({"encoder.fc.weight": torch.randn(10, 512), "encoder.fc.bias": torch.randn(10),
                  "projection.model.0.weight": torch.randn(32, 512), "projection.model.0.bias": torch.randn(32),
                  "projection.model.1.running_mean": torch.zeros(32),
                  "projection.model.3.weight": torch.randn(16, 32)})
    ckpt = _lightning(state, arch="resnet18", first_conv=False, maxpool1=False, dataset="cifar10", hidden_mlp=32,
                      feat_dim=16, temperature=0.5)
    encoder = _check(ckpt, "pl_bolts_simclr", net, tmp_path, size=32)
    config = encoder.zoo_config
    assert config["encoder"] == {"name": "resnet", "arch": "resnet18", "in_channels": 3, "small_image_stem": True}
    assert config["method"]["name"] == "simclr" and config["dataset"] == "cifar10"
    assert config["input"]["size"] == [32, 32] and config["input"]["mean"][0] == pytest.approx(125.3 / 255)
    assert config["training"]["checkpoint_epoch"] == 4 and config["metrics"] == {}
    assert config["recipe"]["legacy_hyper_parameters"]["temperature"] == 0.5


def test_pl_bolts_simclr_imagenet_stem(tmp_path):
    net = _resnet18(2)
    ckpt = _lightning(_prefixed("encoder.", net.state_dict()), arch="resnet18")  # no dataset: inferred from stem
    config = _check(ckpt, "pl_bolts_simclr", net, tmp_path).zoo_config
    assert config["input"] == {"channels": 3, "size": [224, 224], "mean": [0.485, 0.456, 0.406],
                               "std": [0.229, 0.224, 0.225]}
    assert config["encoder"]["small_image_stem"] is False and config["num_features"] == 512


def test_pl_bolts_swav(tmp_path):
    net = _resnet18(3)
    state = _prefixed("model.", net.state_dict())
    state.update({"model.projection_head.0.weight": torch.randn(32, 512), "model.projection_head.1.bias":
                  torch.zeros(32), "model.prototypes.weight": torch.randn(20, 16)})
    ckpt = _lightning(state, arch="resnet18", first_conv=True, maxpool1=True, dataset="imagenet", num_prototypes=20)
    config = _check(ckpt, "pl_bolts_swav", _swav_reference(net), tmp_path).zoo_config
    assert config["method"]["name"] == "swav" and config["method"]["augment"]["small_size"] == 96


def test_pl_bolts_swav_small_stem_is_refused(tmp_path):
    state = _prefixed("model.", _resnet18(4, small=True).state_dict())
    torch.save(_lightning(state, first_conv=False, maxpool1=False), tmp_path / "s.ckpt")
    with pytest.raises(ZooError, match="zero-pads the input"):
        import_legacy(str(tmp_path / "s.ckpt"), format="pl_bolts_swav", out=str(tmp_path / "o"))


def test_pl_bolts_stem_without_maxpool_is_refused(tmp_path):
    """pl_bolts' STL-10 recipes keep the 7x7 conv1 but drop the max-pool: no resnet encoder stem does that."""
    torch.save(_lightning(_prefixed("encoder.", _resnet18(4).state_dict()), first_conv=True, maxpool1=False),
               tmp_path / "stl.ckpt")
    with pytest.raises(ZooError, match="maxpool1=False"):
        import_legacy(str(tmp_path / "stl.ckpt"), format="pl_bolts_simclr", out=str(tmp_path / "o"))


@pytest.mark.parametrize("wrapped", [False, True])
def test_swav_fair(tmp_path, wrapped):
    net = _resnet18(5)
    state = _prefixed("module.", net.state_dict())
    state.update({"module.projection_head.0.weight": torch.randn(32, 512),
                  "module.projection_head.3.weight": torch.randn(16, 32),
                  "module.prototypes.weight": torch.randn(30, 16)})
    ckpt = {"epoch": 800, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}} if wrapped else state
    config = _check(ckpt, "swav_fair", _swav_reference(net), tmp_path).zoo_config
    assert config["input"]["std"] == [0.228, 0.224, 0.225] and config["method"]["name"] == "swav"


def test_swav_fair_wide_resnet_is_refused(tmp_path):
    torch.manual_seed(0)
    state = {"module.conv1.weight": torch.randn(128, 3, 7, 7), "module.bn1.weight": torch.ones(128)}
    for i, n in enumerate((3, 4, 6, 3), start=1):
        for b in range(n):
            state[f"module.layer{i}.{b}.conv1.weight"] = torch.randn(256 * 2 ** (i - 1), 8, 1, 1)
            state[f"module.layer{i}.{b}.conv3.weight"] = torch.randn(512 * 2 ** (i - 1), 8, 1, 1)
    torch.save(state, tmp_path / "w2.pth")
    with pytest.raises(ZooError, match="widened ResNet"):
        import_legacy(str(tmp_path / "w2.pth"), format="swav_fair", out=str(tmp_path / "o"))


# pl_bolts CPCResNet, written functionally: (planes, expansion, stride) per stage; layer norms sized from a sample
_CPC_STAGES = ((64, 4, 1), (128, 4, 2), (512, 8, 2), (512, 4, 2))


def _cpc_forward(sd: Dict[str, torch.Tensor], x: torch.Tensor, layers, width: int = 64, create: bool = False):
    """CPCResNet forward from a state dict; ``create`` first makes random weights of the right shapes."""

    def conv(h, key, c_out, k, stride=1, padding=0):
        if create:
            sd[key] = torch.randn(c_out, h.shape[1], k, k) * (2.0 / (h.shape[1] * k * k)) ** 0.5
        return F.conv2d(h, sd[key], stride=stride, padding=padding)

    def ln(h, key):
        if create:
            sd[key + ".weight"] = 1 + 0.1 * torch.randn(h.shape[1:])
            sd[key + ".bias"] = 0.1 * torch.randn(h.shape[1:])
        return F.layer_norm(h, tuple(h.shape[1:]), sd[key + ".weight"], sd[key + ".bias"])

    h = F.max_pool2d(F.relu(ln(conv(x, "conv1.weight", 64, 7, 2, 3), "ln1")), 3, 2, 1)
    for i, ((planes, expansion, stride), blocks) in enumerate(zip(_CPC_STAGES, layers, strict=True), start=1):
        for b in range(blocks):
            p, s, inner = f"layer{i}.{b}.", stride if b == 0 else 1, planes * width // 64
            out = F.relu(ln(conv(h, p + "conv1.weight", inner, 1), p + "ln1"))
            out = F.relu(ln(conv(out, p + "conv2.weight", inner, 3, s, 1), p + "ln2"))
            out = ln(conv(out, p + "conv3.weight", planes * expansion, 1), p + "ln3")
            if (create and (s != 1 or h.shape[1] != planes * expansion)) or p + "downsample.0.weight" in sd:
                h = ln(conv(h, p + "downsample.0.weight", planes * expansion, 1, s), p + "downsample.1")
            h = F.relu(out + h)
    return h


def test_pl_bolts_cpc(tmp_path):
    torch.manual_seed(6)
    layers, sd = (1, 2, 1, 1), {}
    _cpc_forward(sd, torch.zeros(2, 3, 8, 8), layers, width=16, create=True)
    state = _prefixed("encoder.", sd)
    state.update({"contrastive_task.target_cnn.conv1.weight": torch.randn(64, 2048, 1, 1),
                  "contrastive_task.context_cnn.0.conv1.weight": torch.randn(8, 2048, 1, 1)})
    ckpt = _lightning(state, encoder_name="cpc_encoder", patch_size=8, patch_overlap=4, task="cpc",
                      learning_rate=4e-5, dataset="cifar10")

    def reference(x):  # (B, 7, 7, C, 8, 8): every patch on its own, pooled, averaged over the grid
        z = _cpc_forward(sd, x.flatten(0, 2), layers).mean(dim=(2, 3))
        return z.view(x.shape[0], -1, z.shape[1]).mean(1)

    encoder = _check(ckpt, "pl_bolts_cpc", reference, tmp_path, size=32)
    config = encoder.zoo_config
    # the row's arch survives the merge: pl_bolts' stage widths are resnet161's, the block counts come from the file
    assert config["encoder"] == {"name": "cpc_resnet", "arch": "resnet161", "patch_size": 8, "layers": [1, 2, 1, 1],
                                 "in_channels": 3, "width_per_group": 16}
    assert config["input"]["size"] == [32, 32] and (config["input"]["patch"], config["input"]["overlap"]) == (8, 4)
    assert config["method"]["name"] == "cpc_v2" and config["num_features"] == 2048


def test_pickled_object_is_refused(tmp_path):
    net_state = {"encoder.conv1.weight": torch.zeros(64, 3, 7, 7)}
    torch.save({"state_dict": net_state, "hyper_parameters": {"args": _Custom()}}, tmp_path / "evil.ckpt")
    with pytest.raises(ZooError) as err:
        import_legacy(str(tmp_path / "evil.ckpt"), format="pl_bolts_simclr", out=str(tmp_path / "o"))
    message = str(err.value)
    assert "weights_only" in message and "_Custom" in message and "\n" not in message
    assert UNPICKLED == [] and not (tmp_path / "o").exists()


@pytest.mark.parametrize("fmt, state, odd", [
    ("pl_bolts_simclr", {"state_dict": {"module.conv1.weight": torch.zeros(1)}, "hyper_parameters": {}},
     "module.conv1.weight"),
    ("swav_fair", {"module.conv1.weight": torch.zeros(1), "module.head.fc.weight": torch.zeros(1)},
     "module.head.fc.weight"),
    ("pl_bolts_cpc", {"state_dict": {"encoder.conv1.weight": torch.zeros(1), "encoder.bn1.weight": torch.zeros(1)}},
     "encoder.bn1.weight"),
])
def test_unknown_key_layout(tmp_path, fmt, state, odd):
    torch.save(state, tmp_path / "odd.ckpt")
    with pytest.raises(ZooError) as err:
        import_legacy(str(tmp_path / "odd.ckpt"), format=fmt, out=str(tmp_path / "o"))
    message = str(err.value)
    assert message.startswith("unknown legacy key layout") and "\n" not in message
    assert odd in message and all(name in message for name in FORMATS)


def test_unknown_format_lists_formats(tmp_path):
    with pytest.raises(ZooError, match="unknown legacy checkpoint format 'moco_fair'") as err:
        import_legacy(str(tmp_path / "missing.ckpt"), format="moco_fair", out=str(tmp_path / "o"))
    assert all(name in str(err.value) for name in FORMATS)


def test_missing_file(tmp_path):
    with pytest.raises(ZooError, match="does not exist"):
        import_legacy(str(tmp_path / "nope.ckpt"), format="swav_fair", out=str(tmp_path / "o"))


def test_exported_config_is_json(tmp_path):
    net = _resnet18(7)
    torch.save(_prefixed("module.", net.state_dict()), tmp_path / "swav.pth")
    out = import_legacy(str(tmp_path / "swav.pth"), format="swav_fair", out=str(tmp_path / "e"), dataset="imagenet")
    config = json.loads((Path(out) / "config.json").read_text())
    assert config["training"]["source"] == "imported from swav_fair checkpoint swav.pth"
    with pytest.raises(ZooError, match="already exists"):
        import_legacy(str(tmp_path / "swav.pth"), format="swav_fair", out=out)
    assert import_legacy(str(tmp_path / "swav.pth"), format="swav_fair", out=out, overwrite=True) == out


def test_import_legacy_command(tmp_path, capsys):
    from training.cli import main

    net = _resnet18(seed=5)
    path = tmp_path / "swav.pth.tar"
    torch.save(_prefixed("module.", net.state_dict()), path)
    out = tmp_path / "imported"
    assert main(["import-legacy", str(path), "--format", "swav_fair", "--out", str(out)]) == 0
    assert zoo.load_encoder(out).num_features == 512
    assert main(["import-legacy", str(path), "--format", "moco_fair", "--out", str(tmp_path / "x")]) == 2
    assert "unknown legacy checkpoint format 'moco_fair'; known formats" in capsys.readouterr().err
