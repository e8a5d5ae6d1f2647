"""AMDIM checkpoints in their original layouts (amdim-public, pl_bolts) -> the amdim encoder, checked numerically.

``Original`` below re-expresses, as compactly as possible, the network of Philip-Bachman/amdim-public ``model.py``
(``Encoder``: ``layer_list`` of ``Conv3x3`` / ``ConvResNxN`` / ``ConvResBlock`` / ``MaybeBatchNorm2d``, and
``rkhs_block_{5,7}``) and of pl_bolts' ``amdim/networks.py``, with their module names, so that a checkpoint saved
from it has the exact original keys, and its forward is independent of ``zoo/parts/encoders/amdim.py``.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.errors import ZooError
from zoo.pretrained.convert.amdim import amdim_checkpoint, amdim_input, amdim_state


class MaybeBN(nn.Module):  # MaybeBatchNorm2d: always holds .bn, applies it only when use_bn
    def __init__(self, n, use_bn):
        super().__init__()
        self.bn, self.use_bn = nn.BatchNorm2d(n), use_bn

    def forward(self, x):
        return self.bn(x) if self.use_bn else x


class Conv3x3(nn.Module):  # pad (constant or reflect), conv with bias, [unused norm in pl_bolts], relu
    def __init__(self, n_in, n_out, kernel, stride, pad, reflect=False, keeps_norm=False):
        super().__init__()
        self.pad, self.mode = pad, "reflect" if reflect else "constant"
        self.conv = nn.Conv2d(n_in, n_out, kernel, stride, 0, bias=True)
        if keeps_norm:
            self.bn = MaybeBN(n_out, False)

    def forward(self, x):
        return F.relu(self.conv(F.pad(x, (self.pad,) * 4, mode=self.mode) if self.pad else x))


class ConvResNxN(nn.Module):  # pl_bolts adds conv3 to shrink channels; amdim-public asserts n_out >= n_in
    def __init__(self, n_in, n_out, width, stride, use_bn):
        super().__init__()
        self.width, self.stride, self.grow = width, stride, n_out - n_in
        self.conv1 = nn.Conv2d(n_in, n_out, width, stride, 0, bias=False)
        self.conv2 = nn.Conv2d(n_out, n_out, 1, 1, 0, bias=False)
        if self.grow < 0:
            self.conv3 = nn.Conv2d(n_in, n_out, width, stride, 0, bias=True)
        self.bn1 = MaybeBN(n_out, use_bn)

    def forward(self, x):
        if self.grow < 0:
            return self.conv2(F.relu(self.bn1(self.conv1(x)))) + self.conv3(x)
        skip = F.avg_pool2d(x, self.width, self.stride, 0)
        return self.conv2(F.relu(self.bn1(self.conv1(x)))) + F.pad(skip, (0, 0, 0, 0, 0, self.grow))


class ConvResBlock(nn.Module):
    def __init__(self, n_in, n_out, width, stride, depth, use_bn):
        super().__init__()
        self.layer_list = nn.Sequential(ConvResNxN(n_in, n_out, width, stride, use_bn),
                                        *[ConvResNxN(n_out, n_out, 1, 1, use_bn) for _ in range(depth - 1)])

    def forward(self, x):
        return self.layer_list(x)


class FakeRKHS(nn.Module):
    def __init__(self, n_in, n_out, use_bn, hidden_norm):
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 1, bias=False)
        setattr(self, hidden_norm, MaybeBN(n_out, use_bn))
        self.hidden_norm = hidden_norm
        self.conv2 = nn.Conv2d(n_out, n_out, 1, bias=False)
        self.bn_out = MaybeBN(n_out, True)
        self.shortcut = nn.Conv2d(n_in, n_out, 1, bias=True)

    def forward(self, x):
        h = self.conv2(F.relu(getattr(self, self.hidden_norm)(self.conv1(x))))
        return self.bn_out(h + self.shortcut(x))


class Original(nn.Module):
    """The AMDIM ``Encoder`` (layer indices and the r1/r5/r7 taps as model.py's ``dim2layer`` finds them)."""

    def __init__(self, size, ndf, n_rkhs, depth, use_bn, bolts=False):
        super().__init__()
        blk = lambda i, o, w, s: ConvResBlock(i, o, w, s, depth, use_bn)  # noqa: E731
        top = 4 if size == 32 else 8
        layers = [Conv3x3(3, ndf, 5, 2, 2, True, bolts)] if size == 128 else []
        layers.append(Conv3x3(3 if size != 128 else ndf, ndf, 3, 1, 0, False, bolts))
        if size == 32:
            layers += [ConvResNxN(ndf, ndf, 1, 1, use_bn), blk(ndf, 2 * ndf, 4, 2), blk(2 * ndf, 4 * ndf, 2, 2)]
        else:
            layers += [blk(ndf, 2 * ndf, 4, 2), blk(2 * ndf, 4 * ndf, 4, 2), blk(4 * ndf, 8 * ndf, 2, 2)]
        layers += [MaybeBN(top * ndf, use_bn), blk(top * ndf, top * ndf, 3, 1), blk(top * ndf, top * ndf, 3, 1),
                   ConvResNxN(top * ndf, n_rkhs, 3, 1, use_bn), MaybeBN(n_rkhs, True)]
        self.layer_list = nn.ModuleList(layers)
        self.taps = {7: len(layers) - 5, 5: len(layers) - 4, 1: len(layers) - 1}
        hidden = "bn1" if bolts else "bn_hid"
        self.rkhs_block_5 = FakeRKHS(top * ndf, n_rkhs, use_bn, hidden)
        self.rkhs_block_7 = FakeRKHS(top * ndf, n_rkhs, use_bn, hidden)

    def forward(self, x):
        acts = []
        for layer in self.layer_list:
            x = layer(x)
            acts.append(x)
        t = self.taps
        return acts[t[1]], self.rkhs_block_5(acts[t[5]]), self.rkhs_block_7(acts[t[7]])


def randomise(module):
    torch.manual_seed(0)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif tensor.is_floating_point():
                tensor.normal_(0, 0.3 if "conv" in name or "shortcut" in name else 0.5)
    return module.eval()


def public_checkpoint(path, size, use_bn, half=False):
    """``Checkpointer._get_state`` of amdim-public: the Model's state dict (DataParallel encoder, evaluator,
    g2l_loss mask) with hyperparams and cursor."""
    encoder = randomise(Original(size, 8, 64, 2, use_bn))  # n_rkhs >= the last block's channels, as model.py asserts
    model = nn.Module()
    model.encoder = nn.DataParallel(encoder)
    model.evaluator = nn.Sequential(nn.Linear(64, 10))
    model.g2l_loss = nn.Module()
    model.g2l_loss.masks_r5 = nn.Parameter(torch.zeros(25, 1, 5, 5, dtype=torch.uint8), requires_grad=False)
    state = model.state_dict()
    if half:  # apex O2 keeps convolutions in float16
        state = {k: v.half() if "conv" in k else v for k, v in state.items()}
        encoder.load_state_dict({k[len("encoder.module."):]: v.float() for k, v in state.items()
                                 if k.startswith("encoder.module.")})
    torch.save({"model": state, "cursor": {"info_epoch": 3, "info_step": 9, "classifier_epoch": 0,
                                           "classifier_step": 0},
                "hyperparams": {"ndf": 8, "n_classes": 10, "n_rkhs": 64, "tclip": 20.0, "n_depth": 2,
                                "encoder_size": size, "use_bn": use_bn}}, path)
    return encoder


def import_and_compare(path, original, format, tmp_path):
    state, hparams = amdim_checkpoint(torch.load(path, weights_only=True), format)
    part, inner, dropped = amdim_state(state, hparams, format)
    from zoo.pretrained.convert import import_legacy

    folder = import_legacy(str(path), format=format, out=str(tmp_path / "amdim"), name="amdim.imported")
    assert zoo.load_encoder(folder).zoo_config["input"]["size"] == [amdim_input(part)["size"]] * 2
    ours = zoo.load_encoder(folder)
    size = part.kwargs["image_size"]
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        r1, r5, r7 = original(x)
        got = ours.forward_features(x, maps=["r1", "r5", "r7"])
        pooled = ours(x)
    for name, want in (("r1", r1), ("r5", r5), ("r7", r7)):
        torch.testing.assert_close(got[name], want, atol=1e-5, rtol=1e-5, msg=name)
    torch.testing.assert_close(pooled, r1.flatten(1), atol=1e-5, rtol=1e-5)
    return part, dropped, ours


@pytest.mark.parametrize("size, use_bn, half", [(32, False, False), (64, True, False), (128, False, True)])
def test_amdim_public_checkpoint_imports_with_the_original_features(tmp_path, size, use_bn, half):
    original = public_checkpoint(tmp_path / "amdim_cpt.pth", size, use_bn, half)
    part, dropped, ours = import_and_compare(tmp_path / "amdim_cpt.pth", original, "amdim_public", tmp_path)
    assert part.kwargs == dict(in_channels=3, image_size=size, ndf=8, n_rkhs=64, depth=2, use_bn=use_bn)
    assert "evaluator.0.weight" in dropped and "g2l_loss.masks_r5" in dropped
    unused_norms = [k for k in dropped if k.startswith("encoder.")]
    assert all(".bn." in k or k.split(".")[-2] == "bn" for k in unused_norms)
    assert bool(unused_norms) == (not use_bn)  # with use_bn every MaybeBatchNorm2d applies and maps
    assert ours.zoo_config["license"] == "mit"


def test_pl_bolts_amdim_checkpoint_imports_with_the_original_features(tmp_path):
    original = randomise(Original(32, 8, 16, 3, False, bolts=True))  # n_rkhs 16 < 32: the conv3 shortcut
    hparams = {"datamodule": "cifar10", "encoder": "amdim_encoder", "image_channels": 3, "image_height": 32,
               "encoder_feature_dim": 8, "embedding_fx_dim": 16, "conv_block_depth": 3, "use_bn": False}
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in original.state_dict().items()},
                "hyper_parameters": hparams, "epoch": 1, "global_step": 5}, tmp_path / "amdim.ckpt")
    part, dropped, ours = import_and_compare(tmp_path / "amdim.ckpt", original, "pl_bolts_amdim", tmp_path)
    assert part.kwargs["depth"] == 3 and "encoder.layer_list.0.bn.bn.running_mean" in dropped
    assert "encoder.layer_list.7.conv3.weight" not in dropped
    assert ours.zoo_config["license"] == "apache-2.0"


def broken(tmp_path, edit):
    public_checkpoint(tmp_path / "c.pth", 32, True)
    ckpt = torch.load(tmp_path / "c.pth", weights_only=True)
    edit(ckpt)
    return lambda: amdim_state(*amdim_checkpoint(ckpt, "amdim_public"), "amdim_public")


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["model"].update({"encoder.module.layer_list.3.extra": torch.zeros(1)}),
     "amdim_public: unexpected encoder key 'encoder.module.layer_list.3.extra' (not part of AMDIM's 32px encoder "
     "in model.py / networks.py)"),
    (lambda c: c["model"].update({"projection.weight": torch.zeros(1)}),
     "amdim_public: unexpected key 'projection.weight' (the encoder is under 'encoder.module.'; known other modules: "
     "['evaluator.', 'g2l_loss.'])"),
    (lambda c: c["model"].pop("encoder.module.rkhs_block_7.shortcut.bias"),
     "amdim_public: the checkpoint lacks trunk weight(s) ['embed_7.shortcut.bias'] (1 missing)"),
    (lambda c: c["model"].update({"encoder.module.rkhs_block_7.shortcut.bias": torch.zeros(3)}),
     "amdim_public: 'encoder.module.rkhs_block_7.shortcut.bias' has shape [3], the amdim encoder's "
     "'embed_7.shortcut.bias' needs [64]"),
    (lambda c: c["hyperparams"].update(n_rkhs=32),
     "amdim_public: hyper-parameter n_rkhs=32 disagrees with the weights (64)"),
])
def test_a_broken_amdim_checkpoint_fails_in_one_line_naming_the_key(tmp_path, edit, message):
    with pytest.raises(ZooError) as err:
        broken(tmp_path, edit)()
    assert str(err.value) == message


def test_pl_bolts_amdim_with_a_resnet_encoder_is_refused(tmp_path):
    original = randomise(Original(32, 8, 16, 1, False, bolts=True))
    state = {f"encoder.{k}": v for k, v in original.state_dict().items()}
    with pytest.raises(ZooError, match=r"^pl_bolts_amdim: encoder='resnet18' is a torchvision ResNet, not the AMDIM "
                                       r"encoder; only encoder='amdim_encoder' checkpoints import with this format$"):
        amdim_state(state, {"encoder": "resnet18"}, "pl_bolts_amdim")
