"""import-legacy on released layouts: moco, simclr_v1/v2, byol, solo_learn, lightly, vissl, mmselfsup, pl_bolts MoCo/BYOL.

Each checkpoint is built here from the original architecture as its project defines it (torchvision ResNets with
the project's stem, padding and fc changes), given random weights and BN statistics, and saved in the release's
exact layout (wrappers, prefixes, heads, momentum encoders, queues, metadata). The imported encoder's features must
equal the original module's pooled trunk features to 1e-5. SimCLR v2's converter module (Separius' ``resnet.py``)
is not rebuilt: its keys are produced from a torchvision ResNet-50 by the inverse of its documented naming, which
tests the key mapping; its computation (padding (k-1)/2, stride in the 3x3 conv, BN eps 1e-5) is torchvision's.
"""

from __future__ import annotations

import copy
import hashlib
import math
import pickle
from pathlib import Path
from typing import Dict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import zoo
from tests.helpers.tiny import randomise_batch_norm
from zoo.errors import ZooError
from zoo.pretrained.convert import FORMATS, LegacyFormat, import_legacy, register_format
from zoo.pretrained.convert.reading import plain_state

# tiny forwards: one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def _randomise(net: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return randomise_batch_norm(net)


def _resnet(arch: str = "resnet18", seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return _randomise(getattr(torchvision.models, arch)(weights=None, **kwargs), seed)


def _trunk(net: nn.Module) -> nn.Module:
    """The pooled trunk of a torchvision ResNet (its fc replaced by Identity), as the releases evaluate it."""
    net = copy.deepcopy(net)
    net.fc = nn.Identity()
    return net.eval()


def _prefixed(prefix: str, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {prefix + k: v.clone() for k, v in state.items()}


def _import(ckpt, fmt: str, reference, tmp_path: Path, size: int = 32, filename: str = "release.pth", **kwargs):
    path = tmp_path / filename
    torch.save(ckpt, path)
    out = import_legacy(str(path), format=fmt, out=str(tmp_path / "export"), **kwargs)
    encoder = zoo.load_encoder(out)
    torch.manual_seed(1)
    images = torch.rand(2, 3, size, size)
    x = zoo.eval_transform(encoder)(images)
    with torch.no_grad():
        got, want = encoder(x), reference(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    config = encoder.zoo_config
    assert config["imported_from"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert config["imported_from"]["format"] == fmt
    assert config["license"] == (kwargs.get("license") or FORMATS[fmt].license)
    return config


def _moco_state(net: nn.Module, mlp: bool, seed: int = 0) -> Dict[str, torch.Tensor]:
    """facebookresearch/moco builder.py: encoder_q/encoder_k = base_encoder(num_classes=dim), v2's MLP in fc."""
    torch.manual_seed(seed)
    q = copy.deepcopy(net)
    dim_mlp = q.fc.weight.shape[1]
    q.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), nn.Linear(dim_mlp, 16)) if mlp else nn.Linear(dim_mlp, 16)
    model = nn.Module()
    model.encoder_q, model.encoder_k = q, copy.deepcopy(q)
    model.register_buffer("queue", F.normalize(torch.randn(16, 64), dim=0))
    model.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
    return model.state_dict()


@pytest.mark.parametrize("mlp, filename, top1", [(True, "moco_v2_800ep_pretrain.pth.tar", 71.1),
                                                 (False, "moco_v1_200ep_pretrain.pth.tar", 60.6)])
def test_moco(tmp_path, mlp, filename, top1):
    net = _resnet(seed=1)
    ckpt = {"epoch": 200, "arch": "resnet18", "state_dict": _prefixed("module.", _moco_state(net, mlp)),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.03, "momentum": 0.9, "params": [0, 1]}]}}
    config = _import(ckpt, "moco", _trunk(net), tmp_path, filename=filename)
    assert config["method"]["name"] == "moco_v2" and config["license"] == "cc-by-nc-4.0"
    assert config["input"]["mean"] == [0.485, 0.456, 0.406] and config["input"]["size"] == [224, 224]
    assert config["reported"]["value"] == top1 and "original authors" in config["reported"]["by"]
    assert config["metrics"] == {} and config["training"]["checkpoint_epoch"] == 200
    dropped = config["recipe"]["legacy_dropped"]
    assert set(dropped) == {"module.encoder_k.", "module.queue", "module.encoder_q.fc."}
    assert dropped["module.queue"] == 2 and dropped["module.encoder_q.fc."] == (4 if mlp else 2)


def test_moco_arch_mismatch_and_unknown_file_report(tmp_path):
    net = _resnet(seed=1)
    torch.save({"arch": "resnet50", "state_dict": _prefixed("module.", _moco_state(net, True))}, tmp_path / "m.pth")
    with pytest.raises(ZooError, match="names arch 'resnet50' but its tensors are a resnet18"):
        import_legacy(str(tmp_path / "m.pth"), format="moco", out=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_simclr_v1(tmp_path):
    net = _resnet(seed=2)  # resnet_wider.py is torchvision's ResNet (names, padding, fc); depth 18 keeps this fast
    config = _import({"state_dict": net.state_dict()}, "simclr_v1", _trunk(net), tmp_path, filename="resnet50-1x.pth")
    assert config["input"]["mean"] == [0.0, 0.0, 0.0] and config["input"]["std"] == [1.0, 1.0, 1.0]
    assert config["reported"]["value"] == 69.1 and config["recipe"]["legacy_dropped"] == {"fc.": 2}
    assert config["encoder"]["arch"] == "resnet18" and config["license"] == "apache-2.0"


def test_simclr_v1_wide_is_refused(tmp_path):
    state = {"conv1.weight": torch.zeros(128, 3, 7, 7), "layer1.0.conv1.weight": torch.zeros(128, 128, 1, 1),
             "layer1.0.conv3.weight": torch.zeros(512, 128, 1, 1)}
    for i, n in enumerate((3, 4, 6, 3), start=1):
        state.update({f"layer{i}.{b}.conv1.weight": state.get(f"layer{i}.{b}.conv1.weight", torch.zeros(1))
                      for b in range(n)})
    torch.save({"state_dict": state}, tmp_path / "resnet50-2x.pth")
    with pytest.raises(ZooError, match="widened ResNet .*only width-1 ResNets import"):
        import_legacy(str(tmp_path / "resnet50-2x.pth"), format="simclr_v1", out=str(tmp_path / "o"))


def _separius_name(key: str) -> str:
    """torchvision -> Separius/SimCLRv2-Pytorch resnet.py names (Stem net.0, Blocks net.1..4)."""
    head, _, rest = key.partition(".")
    if head == "conv1":
        return "net.0.0.weight"
    if head == "bn1":
        return f"net.0.1.0.{rest}"
    if head == "fc":
        return key
    block, _, leaf = rest.partition(".")
    stage = f"net.{head[-1]}.blocks.{block}."
    kind, _, param = leaf.partition(".")
    if kind == "downsample":
        index, _, param = param.partition(".")
        return stage + ("projection.shortcut.weight" if index == "0" else f"projection.bn.0.{param}")
    n = int(kind[-1])
    return stage + (f"net.{2 * (n - 1)}.weight" if kind.startswith("conv") else f"net.{2 * n - 1}.0.{param}")


def test_simclr_v2(tmp_path):
    net = _resnet("resnet50", seed=3)
    resnet = {_separius_name(k): v for k, v in net.state_dict().items() if "num_batches_tracked" not in k}
    head = {"layers.0.weight": torch.randn(2048, 2048), "layers.1.weight": torch.ones(2048),
            "layers.1.running_mean": torch.zeros(2048), "layers.6.weight": torch.randn(128, 2048)}
    config = _import({"resnet": resnet, "head": head}, "simclr_v2", _trunk(net), tmp_path, filename="r50_1x_sk0.pth")
    assert config["recipe"]["legacy_dropped"] == {"head.": 4, "resnet.fc.": 2}
    assert config["input"]["std"] == [1.0, 1.0, 1.0] and config["reported"]["value"] == 71.7


def test_simclr_v2_selective_kernel_is_refused(tmp_path):
    state = {"net.0.0.weight": torch.zeros(32, 3, 3, 3), "net.0.2.weight": torch.zeros(32, 32, 3, 3),
             "net.1.blocks.0.net.2.main_conv.0.weight": torch.zeros(128, 64, 3, 3)}
    torch.save({"resnet": state, "head": {}}, tmp_path / "r50_1x_sk1.pth")
    with pytest.raises(ZooError, match=r"selective-kernel \(sk1\) ResNet .*only the sk0 checkpoints"):
        import_legacy(str(tmp_path / "r50_1x_sk1.pth"), format="simclr_v2", out=str(tmp_path / "o"))


def _tf_same(net: nn.Module) -> nn.Module:
    """ajtejankar/byol-convert resnet.py: F.pad to TensorFlow SAME before conv1, the max-pool and strided convs."""
    def pad(kernel, stride):
        def hook(module, inputs):
            h, w = inputs[0].shape[-2:]
            ph = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
            pw = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
            return (F.pad(inputs[0], (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)),)
        return hook

    net = _trunk(net)
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.stride[0] > 1 and m.kernel_size[0] > 1:
            m.padding = (0, 0)
            m.register_forward_pre_hook(pad(m.kernel_size[0], m.stride[0]))
        elif isinstance(m, nn.MaxPool2d):
            m.padding = 0
            m.register_forward_pre_hook(pad(m.kernel_size, m.stride))
    return net


def test_byol_converted(tmp_path):
    net = _resnet("resnet50", seed=4)
    state = {k: v for k, v in net.state_dict().items() if "num_batches_tracked" not in k}  # convert.py drops them
    config = _import(state, "byol", _tf_same(net), tmp_path, size=36, filename="pretrain_res50x1.pth.tar")
    assert config["encoder"]["same_padding"] is True and config["reported"]["value"] == 74.4
    x = torch.rand(1, 3, 36, 36)
    with torch.no_grad():  # the padding matters: plain torchvision padding gives other features
        assert not torch.allclose(_trunk(net)(x), _tf_same(net)(x), atol=1e-3)


def test_byol_official_pickle_is_refused(tmp_path):
    path = tmp_path / "pretrain_res50x1.pkl"
    path.write_bytes(pickle.dumps({"step": 1, "experiment_state": ("online_params",)}))
    with pytest.raises(ZooError, match=r"dill pickle .*ajtejankar/byol-convert") as err:
        import_legacy(str(path), format="byol", out=str(tmp_path / "o"))
    assert "\n" not in str(err.value) and not (tmp_path / "o").exists()


def _lightning(state, **hparams) -> dict:
    return {"epoch": 9, "global_step": 90, "pytorch-lightning_version": "2.0.0", "state_dict": state,
            "hyper_parameters": hparams, "optimizer_states": [], "lr_schedulers": [], "callbacks": {}}


def test_solo_learn_cifar(tmp_path):
    net = _resnet(seed=5)  # solo/methods/base.py: CIFAR stem 3x3/1 padding 2, no max-pool, fc Identity
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    net.maxpool, net.fc = nn.Identity(), nn.Identity()
    state = _prefixed("backbone.", net.state_dict())
    state.update(_prefixed("momentum_backbone.", net.state_dict()))
    state.update({"projector.0.weight": torch.randn(32, 512), "momentum_projector.0.weight": torch.randn(32, 512),
                  "predictor.0.weight": torch.randn(16, 32), "classifier.weight": torch.randn(10, 512),
                  "classifier.bias": torch.zeros(10)})
    ckpt = _lightning(state, cfg={"method": "byol", "data": {"dataset": "cifar10"}})
    config = _import(ckpt, "solo_learn", net.eval(), tmp_path)
    assert config["encoder"]["small_stem_padding"] == 2 and config["method"]["name"] == "byol"
    assert config["input"]["std"] == [0.247, 0.2435, 0.2616] and config["dataset"] == "cifar10"
    assert config["reported"] is None and config["license"] == "mit"


@pytest.mark.parametrize("sequential", [False, True])
def test_lightly(tmp_path, sequential):
    net = _resnet(seed=6)
    backbone = nn.Sequential(*list(net.children())[:-1]) if sequential else _trunk(net)
    state = _prefixed("backbone.", backbone.state_dict())
    state.update({"projection_head.layers.0.weight": torch.randn(32, 512),
                  "online_classifier.classification_head.weight": torch.randn(10, 512)})
    config = _import(_lightning(state, batch_size_per_device=128, num_classes=10), "lightly",
                     lambda x: backbone(x).flatten(1), tmp_path, method="simclr", dataset="cifar10")
    assert config["input"]["mean"] == [0.485, 0.456, 0.406] and config["input"]["size"] == [32, 32]


def test_generic_framework_needs_a_method(tmp_path):
    torch.save(_lightning(_prefixed("backbone.", _trunk(_resnet()).state_dict())), tmp_path / "l.ckpt")
    with pytest.raises(ZooError, match="does not say which method trained it .*pass method="):
        import_legacy(str(tmp_path / "l.ckpt"), format="lightly", out=str(tmp_path / "o"))


def test_vissl(tmp_path):
    net = _resnet(seed=7)
    trunk = _prefixed("_feature_blocks.", _trunk(net).state_dict())
    heads = {"0.projection_head.0.weight": torch.randn(32, 512), "0.prototypes0.weight": torch.randn(30, 32)}
    ckpt = {"phase_idx": 3, "iteration": 40, "type": "checkpoint", "loss": {},
            "classy_state_dict": {"train_phase_idx": 3, "optimizer": {},
                                  "base_model": {"model": {"trunk": trunk, "heads": heads}, "meta": {}}}}
    torch.save(ckpt, tmp_path / "no_licence.torch")
    with pytest.raises(ZooError, match=r"vissl: files in this format carry different licences .*cc-by-nc-4.0.*--license"):
        import_legacy(str(tmp_path / "no_licence.torch"), format="vissl", out=str(tmp_path / "o"), method="swav")
    assert not (tmp_path / "o").exists()
    config = _import(ckpt, "vissl", _trunk(net), tmp_path, method="swav", license="cc-by-nc-4.0")
    assert config["recipe"]["legacy_dropped"] == {"heads.": 2} and config["license"] == "cc-by-nc-4.0"


@pytest.mark.parametrize("extracted", [False, True])
def test_mmselfsup(tmp_path, extracted):
    net = _resnet(seed=8)
    backbone = _trunk(net).state_dict()
    if extracted:  # tools/model_converters/extract_backbone_weights.py
        ckpt = {"state_dict": backbone, "author": "MMSelfSup"}
    else:
        state = _prefixed("backbone.", backbone)
        state.update(_prefixed("momentum_encoder.0.", backbone))
        state.update({"neck.mlp.0.weight": torch.randn(32, 512), "head.loss.weight": torch.ones(1)})
        ckpt = {"meta": {"epoch": 200, "mmselfsup_version": "1.0.0"}, "state_dict": state}
    config = _import(ckpt, "mmselfsup", _trunk(net), tmp_path, method="moco_v2")
    assert config["license"] == "apache-2.0" and config["input"]["std"] == [0.229, 0.224, 0.225]


def test_pl_bolts_moco(tmp_path):
    net = _resnet(seed=9)
    state = _moco_state(net, mlp=True)
    state.update({"val_queue": torch.randn(16, 64), "val_queue_ptr": torch.zeros(1, dtype=torch.long)})
    ckpt = _lightning(state, base_encoder="resnet18", emb_dim=16, use_mlp=True, dataset="cifar10")
    config = _import(ckpt, "pl_bolts_moco", _trunk(net), tmp_path)
    assert config["license"] == "cc-by-nc-4.0" and config["input"]["size"] == [32, 32]
    assert set(config["recipe"]["legacy_dropped"]) == {"encoder_k.", "queue", "val_queue", "encoder_q.fc."}


def test_pl_bolts_byol(tmp_path):
    net = _resnet(seed=10)
    trunk = _trunk(net).state_dict()  # torchvision_ssl_encoder: pl_bolts resnets, fc = Identity
    state = _prefixed("online_network.encoder.", trunk)
    state.update(_prefixed("target_network.encoder.", trunk))
    state.update({"online_network.projector.model.0.weight": torch.randn(32, 512),
                  "target_network.projector.model.0.weight": torch.randn(32, 512),
                  "predictor.model.0.weight": torch.randn(32, 16)})
    config = _import(_lightning(state, learning_rate=0.2, base_encoder="resnet18"), "pl_bolts_byol", _trunk(net),
                     tmp_path)
    assert config["method"]["name"] == "byol" and config["license"] == "apache-2.0"


@pytest.mark.parametrize("change, problem", [
    (lambda s: s.update({"module.encoder_q.extra.weight": torch.zeros(1)}), "module.encoder_q.extra.weight"),
    (lambda s: s.pop("module.encoder_q.layer4.1.bn2.weight"), "missing ['layer4.1.bn2.weight']"),
    (lambda s: s.update({"module.encoder_q.layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)}), "wrong shapes"),
])
def test_bad_checkpoints_fail_once_and_write_nothing(tmp_path, change, problem):
    state = _prefixed("module.", _moco_state(_resnet(seed=11), mlp=True))
    change(state)
    torch.save({"state_dict": state}, tmp_path / "bad.pth.tar")
    with pytest.raises(ZooError) as err:
        import_legacy(str(tmp_path / "bad.pth.tar"), format="moco", out=str(tmp_path / "o"))
    assert problem in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth.tar"]


def test_reported_given_and_checked(tmp_path):
    net = _resnet(seed=12)
    given = {"metric": "imagenet/linear_top1", "value": 70.0, "source": "a README"}
    config = _import({"state_dict": _prefixed("module.", _moco_state(net, True))}, "moco", _trunk(net), tmp_path,
                     reported=given)
    assert config["reported"]["value"] == 70.0 and config["reported"]["source"] == "a README"
    with pytest.raises(ZooError, match="reported must be"):
        import_legacy(str(tmp_path / "release.pth"), format="moco", out=str(tmp_path / "x"), reported={"value": 1})


def test_registry_refuses_duplicates_and_suggests_names():
    with pytest.raises(ZooError, match="'moco' is already registered"):
        register_format(LegacyFormat(name="moco", source="x", license="mit", unwrap=plain_state, prefix=""))
    with pytest.raises(ZooError, match="unknown legacy checkpoint format 'mocco'; known formats: .*did you mean 'moco'"):
        FORMATS.get_format("mocco")
    assert all(FORMATS[name].license for name in FORMATS if name != "vissl")
    assert FORMATS["vissl"].license is None  # each VISSL import names its file's licence
