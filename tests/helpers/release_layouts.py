"""Checkpoints in each release format's exact layout, built from the original architecture with random weights.

``checkpoint(format, arch)`` returns ``(ckpt, reference, size)``: the object to ``torch.save`` (the publisher's
wrappers, prefixes, heads, momentum encoders and queues), a function giving the original model's features, and
the input size to compare them at. ResNet formats take any torchvision depth (``resnet18`` keeps tests fast;
``resnet50`` is the released architecture); AMDIM and CPC are small versions of their original networks
(``tests/zoo/pretrained/convert/test_legacy_amdim.py``'s port of amdim-public, ``tests/zoo/pretrained/convert/test_legacy.py``'s functional CPCResNet).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from tests.helpers.tiny import randomise_batch_norm

Built = Tuple[Any, Callable[[torch.Tensor], torch.Tensor], int]


def _trunk(arch: str, seed: int, small_stem: bool = False) -> nn.Module:
    """A torchvision ResNet with random weights and BN statistics, ``fc`` replaced by Identity."""
    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)(weights=None)
    net.fc = nn.Identity()
    if small_stem:  # pl_bolts first_conv=False, maxpool1=False
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    return randomise_batch_norm(net)


def _with(prefix: str, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {prefix + k: v.clone() for k, v in state.items()}


def _lightning(state: Dict[str, torch.Tensor], **hparams: Any) -> Dict[str, Any]:
    return {"epoch": 99, "global_step": 500400, "pytorch-lightning_version": "2.1.0", "state_dict": state,
            "hyper_parameters": hparams, "optimizer_states": [], "lr_schedulers": [], "callbacks": {}}


def _features(net: nn.Module) -> int:
    return net.layer4[-1].conv3.out_channels if hasattr(net.layer4[-1], "conv3") else net.layer4[-1].conv2.out_channels


def _swav_padded(net: nn.Module) -> nn.Module:
    """SwAV's forward_backbone: ConstantPad2d(1), then a 7x7/2 conv1 with padding 2 (src/resnet50.py)."""
    net = copy.deepcopy(net)
    net.conv1.padding = (2, 2)
    return nn.Sequential(nn.ConstantPad2d(1, 0.0), net).eval()


def moco(arch: str) -> Built:
    """facebookresearch/moco: ``{epoch, arch, state_dict, optimizer}``, DDP prefix, v2 MLP head, queue."""
    net = _trunk(arch, 1)
    q = copy.deepcopy(net)
    dim = _features(net)
    q.fc = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 128))
    model = nn.Module()
    model.encoder_q, model.encoder_k = q, copy.deepcopy(q)
    model.register_buffer("queue", F.normalize(torch.randn(128, 64), dim=0))
    model.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
    ckpt = {"epoch": 800, "arch": arch, "state_dict": _with("module.", model.state_dict()),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.03, "params": [0]}]}}
    return ckpt, net, 64


def swav_fair(arch: str) -> Built:
    """facebookresearch/swav: a flat DDP state dict with projection head and prototypes."""
    net = _trunk(arch, 2)
    dim = _features(net)
    state = _with("module.", net.state_dict())
    state.update({"module.projection_head.0.weight": torch.randn(64, dim), "module.projection_head.0.bias":
                  torch.zeros(64), "module.projection_head.3.weight": torch.randn(32, 64),
                  "module.prototypes.weight": torch.randn(30, 32)})
    return state, _swav_padded(net), 64


def vissl(arch: str) -> Built:
    """facebookresearch/vissl: ``classy_state_dict.base_model.model.{trunk,heads}``, trunk under ``_feature_blocks.``."""
    net = _trunk(arch, 3)
    heads = {"0.clf.0.weight": torch.randn(16, _features(net)), "0.clf.0.bias": torch.zeros(16)}
    ckpt = {"phase_idx": 799, "iteration": 1000, "type": "checkpoint", "loss": {},
            "classy_state_dict": {"train_phase_idx": 799, "optimizer": {},
                                  "base_model": {"model": {"trunk": _with("_feature_blocks.", net.state_dict()),
                                                           "heads": heads}, "meta": {}}}}
    return ckpt, net, 64


def mmselfsup(arch: str) -> Built:
    """open-mmlab/mmselfsup 1.x: ``{meta, state_dict}`` with ``backbone.``, the momentum encoder, neck and head."""
    net = _trunk(arch, 4)
    state = _with("backbone.", net.state_dict())
    state.update(_with("momentum_encoder.0.", net.state_dict()))
    state.update({"neck.mlp.0.weight": torch.randn(32, _features(net)), "head.loss.weight": torch.ones(1)})
    return {"meta": {"epoch": 200, "mmselfsup_version": "1.0.0"}, "state_dict": state}, net, 64


def lightly(arch: str) -> Built:
    """lightly's ImageNet benchmarks: a Lightning checkpoint, ``backbone.`` (fc Identity), head, online classifier."""
    net = _trunk(arch, 5)
    state = _with("backbone.", net.state_dict())
    state.update({"projection_head.layers.0.weight": torch.randn(32, _features(net)),
                  "online_classifier.classification_head.weight": torch.randn(1000, _features(net)),
                  "online_classifier.classification_head.bias": torch.zeros(1000)})
    return _lightning(state, batch_size_per_device=128, num_classes=1000), net, 64


def pl_bolts_simclr(arch: str, small_stem: bool = False) -> Built:
    """pl_bolts SimCLR: ``encoder.`` (with its unused ``fc``) and ``projection.model.*``."""
    net = _trunk(arch, 6, small_stem)
    dim = _features(net)
    state = _with("encoder.", net.state_dict())
    state.update({"encoder.fc.weight": torch.randn(10, dim), "encoder.fc.bias": torch.randn(10),
                  "projection.model.0.weight": torch.randn(32, dim), "projection.model.0.bias": torch.randn(32),
                  "projection.model.3.weight": torch.randn(16, 32)})
    hparams = dict(arch=arch, first_conv=not small_stem, maxpool1=not small_stem, hidden_mlp=32, feat_dim=16,
                   dataset="cifar10" if small_stem else "imagenet")
    return _lightning(state, **hparams), net, 32 if small_stem else 64


def pl_bolts_swav(arch: str) -> Built:
    """pl_bolts SwAV: ``model.`` with SwAV's padded stem, projection head and prototypes."""
    net = _trunk(arch, 7)
    state = _with("model.", net.state_dict())
    state.update({"model.projection_head.0.weight": torch.randn(32, _features(net)),
                  "model.prototypes.weight": torch.randn(20, 32)})
    ckpt = _lightning(state, arch=arch, first_conv=True, maxpool1=True, dataset="imagenet", num_prototypes=20)
    return ckpt, _swav_padded(net), 64


def pl_bolts_cpc(arch: str) -> Built:
    """pl_bolts CPC v2: a small CPCResNet (LayerNorm, 7x7 stem) under ``encoder.``, ``contrastive_task.*``."""
    from tests.zoo.pretrained.convert.test_legacy import _cpc_forward

    torch.manual_seed(8)
    layers, sd = (1, 1, 1, 1), {}
    _cpc_forward(sd, torch.zeros(2, 3, 8, 8), layers, width=16, create=True)
    state = _with("encoder.", sd)
    state.update({"contrastive_task.target_cnn.conv1.weight": torch.randn(64, 2048, 1, 1)})
    ckpt = _lightning(state, encoder_name="cpc_encoder", patch_size=8, patch_overlap=4, task="cpc", dataset="cifar10")

    def reference(x: torch.Tensor) -> torch.Tensor:  # every patch on its own, pooled, averaged over the grid
        z = _cpc_forward(sd, x.flatten(0, 2), layers).mean(dim=(2, 3))
        return z.view(x.shape[0], -1, z.shape[1]).mean(1)

    return ckpt, reference, 32


def amdim_public(arch: str) -> Built:
    """Philip-Bachman/amdim-public ``Checkpointer``: ``{model, hyperparams, cursor}``: the 128 px ImageNet encoder
    of the released files, narrow (ndf 8, n_rkhs 64, depth 2) to stay fast."""
    from tests.zoo.pretrained.convert.test_legacy_amdim import Original, randomise

    encoder = randomise(Original(128, 8, 64, 2, True))
    model = nn.Module()
    model.encoder = nn.DataParallel(encoder)
    model.evaluator = nn.Sequential(nn.Linear(64, 10))
    ckpt = {"model": model.state_dict(), "cursor": {"info_epoch": 3, "info_step": 9},
            "hyperparams": {"ndf": 8, "n_classes": 10, "n_rkhs": 64, "tclip": 20.0, "n_depth": 2,
                            "encoder_size": 128, "use_bn": True}}
    return ckpt, lambda x: encoder(x)[0].flatten(1), 128


BUILDERS: Dict[str, Callable[[str], Built]] = {
    "moco": moco, "swav_fair": swav_fair, "vissl": vissl, "mmselfsup": mmselfsup, "lightly": lightly,
    "pl_bolts_simclr": pl_bolts_simclr, "pl_bolts_swav": pl_bolts_swav, "pl_bolts_cpc": pl_bolts_cpc,
    "amdim_public": amdim_public}


def checkpoint(format: str, arch: str = "resnet18", **kwargs: Any) -> Built:
    return BUILDERS[format](arch, **kwargs)
