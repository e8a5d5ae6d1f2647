"""AMDIM checkpoints (Bachman et al., arXiv:1906.00910) mapped onto the ``amdim`` encoder part.

Two layouts, read from the projects' own code:

- ``amdim_public``: the authors' release (Philip-Bachman/amdim-public, MIT; ``amdim_ndf256_rkhs2048_rd10.pth``,
  ``amdim_ndf320_rkhs2560_rd10.pth``). ``checkpoint.py`` (``Checkpointer._get_state``) saves
  ``{'model': Model.state_dict(), 'hyperparams': {ndf, n_classes, n_rkhs, tclip, n_depth, encoder_size, use_bn},
  'cursor': {...}}``. In ``model.py`` the ``Model`` wraps its ``Encoder`` in ``nn.DataParallel``, so the trunk is
  ``encoder.module.layer_list.N.*`` plus ``encoder.module.rkhs_block_{5,7}.*`` (``FakeRKHSConvNet``; its hidden
  norm is ``bn_hid``, ``bn1`` in revisions before 2019-08); ``evaluator.*`` (the online MLP and linear classifiers)
  and ``g2l_loss.masks_r5`` (``costs.py``, a constant sampling mask) are dropped. Runs with ``--amp`` (apex O2,
  ``mixed_precision.py``) store half-precision convolutions: they are widened to float32.
- ``pl_bolts_amdim``: a Lightning checkpoint of pl_bolts' ``AMDIM`` (Lightning-Universe/lightning-bolts, Apache-2.0;
  ``src/pl_bolts/models/self_supervised/amdim/amdim_module.py``, ``networks.py``): ``state_dict`` with
  ``encoder.layer_list.N.*`` / ``encoder.rkhs_block_{5,7}.*`` (hidden norm ``bn1``) and the hyper-parameters
  ``encoder_feature_dim`` (ndf), ``embedding_fx_dim`` (n_rkhs), ``conv_block_depth``, ``image_height``,
  ``image_channels``, ``use_bn``; ``contrastive_task.*`` is dropped. Its ``Conv3x3`` keeps an unused
  ``MaybeBatchNorm2d`` (``bn.bn.*``), dropped too.

Both build the same network, which ``zoo/parts/encoders/amdim.py`` rewrites under its own names: ``layer_list``
holds, for 32 px inputs, ``Conv3x3``, ``ConvResNxN``, two ``ConvResBlock`` (``layer_list.J`` of ``ConvResNxN``), a
``MaybeBatchNorm2d`` (the 7x7 map), a block (5x5), a block, a ``ConvResNxN`` and a batch norm (1x1); 64 px drops
the ``ConvResNxN`` and adds a block; 128 px starts with a reflect-padded 5x5/2 ``Conv3x3``. ``MaybeBatchNorm2d``
always holds a ``BatchNorm2d`` (``.bn``) but applies it only when ``use_bn`` (always for the output norms), so with
``use_bn=False`` those statistics are unused and dropped by name. Every other key maps exactly once; anything
else is an error naming the key.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn

from zoo.build import build_encoder
from zoo.errors import ZooError
from zoo.pretrained.convert.formats import LegacyFormat, Trunk, TrunkResult, register_format, register_trunk
from zoo.pretrained.convert.reading import top_level
from zoo.spec import Part


class AmdimFormat(NamedTuple):
    prefix: Tuple[str, ...]  # where the encoder's keys live (first match wins)
    dropped: Tuple[str, ...]  # other modules of the checkpoint, dropped by prefix
    release: str


AMDIM_FORMATS: Dict[str, AmdimFormat] = {
    "amdim_public": AmdimFormat(("encoder.module.", "encoder."), ("evaluator.", "g2l_loss."),
                                "Philip-Bachman/amdim-public (checkpoint.py, model.py)"),
    "pl_bolts_amdim": AmdimFormat(("encoder.",), ("contrastive_task.", "non_linear_evaluator."),
                                  "Lightning-Universe/lightning-bolts (models/self_supervised/amdim)"),
}
_CIFAR = ([125.3 / 255, 123.0 / 255, 113.9 / 255], [63.0 / 255, 62.1 / 255, 66.7 / 255])
# evaluation preprocessing per encoder size (amdim-public datasets.py test transforms; pl_bolts amdim_transforms.py)
AMDIM_INPUTS: Dict[int, Dict[str, Any]] = {
    32: {"dataset": "cifar10", "size": 32, "mean": _CIFAR[0], "std": _CIFAR[1], "resize": None},
    64: {"dataset": "stl10", "size": 64, "mean": [0.43, 0.42, 0.39], "std": [0.27, 0.26, 0.27], "resize": 70,
         "interpolation": "bicubic"},
    128: {"dataset": "imagenet", "size": 128, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
          "resize": 146, "interpolation": "bicubic"},
}
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"


def amdim_checkpoint(ckpt: Any, format: str) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """The flat state dict and hyper-parameters of a loaded AMDIM checkpoint (``torch.load(weights_only=True)``)."""
    keys = {"amdim_public": ("model", "hyperparams"), "pl_bolts_amdim": ("state_dict", "hyper_parameters")}[format]
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get(keys[0]), Mapping):
        top = top_level(ckpt)
        raise ZooError(f"{format}: expected a checkpoint with {keys[0]!r} and {keys[1]!r}, found {top}")
    hparams = ckpt.get(keys[1])
    return dict(ckpt[keys[0]]), dict(hparams) if isinstance(hparams, Mapping) else {}


def amdim_part(inner: Mapping[str, Tensor], hparams: Mapping[str, Any], format: str) -> Part:
    """The ``amdim`` part the trunk's tensors describe; hyper-parameters that disagree with them are an error."""
    if "layer_list.0.conv.weight" not in inner or "rkhs_block_5.conv1.weight" not in inner:
        raise ZooError(f"{format}: no AMDIM encoder found (layer_list.0.conv.weight and rkhs_block_5.conv1.weight "
                       f"missing; keys start {sorted(inner)[:3]})")
    ndf, channels, kernel = (int(s) for s in inner["layer_list.0.conv.weight"].shape[:3])
    size = 128 if kernel == 5 else 32 if "layer_list.1.conv1.weight" in inner else 64
    depth = 1 + max(int(m.group(1)) for m in (re.match(r"layer_list\.2\.layer_list\.(\d+)\.", k) for k in inner) if m)
    found = {"ndf": ndf, "n_rkhs": int(inner["rkhs_block_5.conv1.weight"].shape[0]), "n_depth": depth,
             "encoder_size": size, "num_channels": channels}
    names = {"amdim_public": {}, "pl_bolts_amdim": {"ndf": "encoder_feature_dim", "n_rkhs": "embedding_fx_dim",
                                                    "n_depth": "conv_block_depth", "encoder_size": "image_height",
                                                    "num_channels": "image_channels"}}[format]
    for ours, value in found.items():
        stated = hparams.get(names.get(ours, ours))
        if isinstance(stated, int) and not isinstance(stated, bool) and stated != value:
            raise ZooError(f"{format}: hyper-parameter {names.get(ours, ours)}={stated} disagrees with the weights "
                           f"({value})")
    if format == "pl_bolts_amdim" and hparams.get("encoder", "amdim_encoder") != "amdim_encoder":
        raise ZooError(f"pl_bolts_amdim: encoder={hparams.get('encoder')!r} is a torchvision ResNet, not the AMDIM "
                       "encoder; only encoder='amdim_encoder' checkpoints import with this format")
    return Part.of("amdim", in_channels=channels, image_size=size, ndf=ndf, n_rkhs=found["n_rkhs"], depth=depth,
                   use_bn=bool(hparams.get("use_bn", False)))


def _slots(encoder: Any) -> List[str]:
    """Our module path for each ``layer_list`` index: the trunk's modules that hold weights (or stand for an
    unused batch norm), then the 5x5 block and the three parts of the 1x1 head."""
    trunk = [f"trunk.{i}" for i, m in enumerate(encoder.trunk)
             if not isinstance(m, (nn.ReLU, nn.ReflectionPad2d))]
    return trunk + ["to_5", "to_1.0", "to_1.1", "to_1.2"]


Mapped = Optional[Tuple[Optional[str], bool]]  # None: unknown key; (None, _): never applied; (name, only_with_bn)


def _resnxn(rest: str) -> Mapped:
    """``ConvResNxN`` names -> ``ResNxN`` names (``conv3``, the channel-reducing shortcut, is ``shortcut``)."""
    if re.fullmatch(r"conv[12]\.weight", rest):
        return rest, False
    if re.fullmatch(r"conv3\.(weight|bias)", rest):
        return "shortcut." + rest.split(".", 1)[1], False
    match = re.fullmatch(rf"bn1\.bn\.{_BN}", rest)
    return ("bn1." + match.group(1), True) if match else None


def _target(sub: str, slots: List[str]) -> Mapped:
    """Our name for one trunk key (see ``Mapped``)."""
    match = re.fullmatch(r"rkhs_block_([57])\.(.+)", sub)
    if match:
        head, rest = f"embed_{match.group(1)}", match.group(2)
        if re.fullmatch(r"conv[12]\.weight|shortcut\.(weight|bias)", rest):
            return f"{head}.{rest}", False
        norm = re.fullmatch(rf"(bn1|bn_hid|bn_out)\.bn\.{_BN}", rest)
        if not norm:
            return None
        hidden = norm.group(1) != "bn_out"
        return f"{head}.{'bn1' if hidden else 'bn_out'}.{norm.group(2)}", hidden
    match = re.fullmatch(r"layer_list\.(\d+)\.(.+)", sub)
    if not match or int(match.group(1)) >= len(slots):
        return None
    slot, rest = slots[int(match.group(1))], match.group(2)
    conv = re.fullmatch(r"conv\.(weight|bias)", rest)
    if conv:
        return f"{slot}.{conv.group(1)}", False
    if re.fullmatch(rf"bn\.bn\.{_BN}", rest):  # Conv3x3's norm: the Encoder builds every Conv3x3 with use_bn=False
        return None, True
    norm = re.fullmatch(rf"bn\.{_BN}", rest)
    if norm:  # a MaybeBatchNorm2d slot: the 7x7 map's applies with use_bn, the 1x1 output's always
        return f"{slot}.{norm.group(1)}", slot.startswith("trunk.")
    block = re.fullmatch(r"layer_list\.(\d+)\.(.+)", rest)
    mapped = _resnxn(block.group(2) if block else rest)
    if mapped is None:
        return None
    return (f"{slot}.{block.group(1)}.{mapped[0]}" if block else f"{slot}.{mapped[0]}"), mapped[1]


def amdim_state(state: Mapping[str, Tensor], hparams: Mapping[str, Any], format: str = "amdim_public"
                ) -> Tuple[Part, Dict[str, Tensor], List[str]]:
    """Map an AMDIM checkpoint's flat state dict onto the ``amdim`` encoder part.

    Returns the part, the encoder's state under our names (float32; loads with ``strict=True``) and the sorted
    list of dropped keys (classifiers, loss buffers, batch norms that ``use_bn=False`` never applies). An
    unexpected key, a missing trunk key or a wrong shape raises one ZooError naming it.
    """
    if format not in AMDIM_FORMATS:
        raise ZooError(f"unknown AMDIM checkpoint format {format!r}; known: {sorted(AMDIM_FORMATS)}")
    fmt = AMDIM_FORMATS[format]
    inner: Dict[str, Tensor] = {}
    origin: Dict[str, str] = {}  # inner name -> the checkpoint's key, for messages
    dropped: List[str] = []
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise ZooError(f"{format}: entry {key!r} is a {type(value).__name__}, not a tensor")
        prefix = next((p for p in fmt.prefix if key.startswith(p)), None)
        if prefix is not None:
            inner[key[len(prefix):]], origin[key[len(prefix):]] = value, key
        elif key.startswith(fmt.dropped):
            dropped.append(key)
        else:
            raise ZooError(f"{format}: unexpected key {key!r} (the encoder is under {fmt.prefix[0]!r}; known other "
                           f"modules: {list(fmt.dropped)})")
    part, out, unused = amdim_trunk(inner, hparams, format, origin)
    return part, out, sorted(dropped + unused)


def amdim_trunk(inner: Mapping[str, Tensor], hparams: Mapping[str, Any], format: str,
                origin: Optional[Mapping[str, str]] = None) -> Tuple[Part, Dict[str, Tensor], List[str]]:
    """The trunk's keys (prefix removed) under our names: the part, the state, and the keys dropped as never
    applied (``origin`` maps a trunk key back to the checkpoint's, for messages)."""
    origin = origin or {}
    part = amdim_part(inner, hparams, format)
    encoder = build_encoder(part)
    expected = encoder.state_dict()
    slots, out, dropped = _slots(encoder), {}, []
    for sub, value in inner.items():
        key = origin.get(sub, sub)
        mapped = _target(sub, slots)
        if mapped is None:
            raise ZooError(f"{format}: unexpected encoder key {key!r} (not part of AMDIM's "
                           f"{part.kwargs['image_size']}px encoder in model.py / networks.py)")
        target, only_with_bn = mapped
        if target is None or (only_with_bn and not part.kwargs["use_bn"]):
            dropped.append(key)
            continue
        if target not in expected:  # pragma: no cover - every mapped name is built by AMDIMEncoder
            raise ZooError(f"{format}: encoder key {key!r} maps to {target!r}, which the amdim encoder does not have")
        if tuple(value.shape) != tuple(expected[target].shape):
            raise ZooError(f"{format}: {key!r} has shape {list(value.shape)}, the amdim encoder's {target!r} needs "
                           f"{list(expected[target].shape)}")
        if target in out:
            raise ZooError(f"{format}: {key!r} maps onto {target!r} a second time")
        out[target] = value.float() if value.is_floating_point() else value
    for target, value in expected.items():  # counters older checkpoints lack; unused at evaluation
        if target.endswith("num_batches_tracked") and target not in out:
            out[target] = torch.zeros_like(value)
    missing = sorted(set(expected) - set(out))
    if missing:
        raise ZooError(f"{format}: the checkpoint lacks trunk weight(s) {missing[:5]} ({len(missing)} missing)")
    return part, out, sorted(dropped)


def amdim_input(part: Part) -> Dict[str, Any]:
    """The evaluation preprocessing AMDIM's own code applies for this encoder size (``resize``: the shorter side
    before a centre crop to ``size``; None when images are already ``size``)."""
    return dict(AMDIM_INPUTS[int(part.kwargs["image_size"])])


# --- the two formats in ``zoo.pretrained.convert.FORMATS`` -------------------------------------------------------

def _unwrap(ckpt: Any, path: str, format: str) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    return amdim_checkpoint(ckpt, format)


def _convert(inner: Dict[str, Tensor], fmt: LegacyFormat, hparams: Mapping[str, Any]) -> TrunkResult:
    part, state, unused = amdim_trunk(inner, hparams, fmt.name)
    preset = AMDIM_INPUTS[int(part.kwargs["image_size"])]["dataset"]
    return TrunkResult(part, state, preset, None, tuple(unused))


def _without_data_parallel(key: str) -> str:
    return key[len("module."):] if key.startswith("module.") else key


# AMDIM's evaluation sizes (32, 64 and 128 px) with their datasets' statistics; AMDIM's own test transform resizes
# the shorter side (70 of 64, 146 of 128) and centre-crops, which ``zoo.eval_transform`` replaces with a resize
_NORMS = {v["dataset"]: (tuple(v["mean"]), tuple(v["std"]), int(v["size"])) for v in AMDIM_INPUTS.values()}
register_trunk("amdim", Trunk(re.compile(r"^(layer_list\.\d+|rkhs_block_[57])\..+$"), _convert,
                               anchor="layer_list.0.conv.weight"))
register_format(LegacyFormat(
    name="amdim_public", source="Philip-Bachman/amdim-public checkpoint.py, model.py", license="mit",
    unwrap=_unwrap, prefix="encoder.", method="amdim", dropped=AMDIM_FORMATS["amdim_public"].dropped,
    kind="amdim", rename=_without_data_parallel, options={"norms": _NORMS}))
register_format(LegacyFormat(
    name="pl_bolts_amdim", source="Lightning-Universe/lightning-bolts src/pl_bolts/models/self_supervised/amdim/"
                                  "amdim_module.py, networks.py", license="apache-2.0",
    unwrap=_unwrap, prefix="encoder.", method="amdim", dropped=AMDIM_FORMATS["pl_bolts_amdim"].dropped,
    kind="amdim", options={"norms": _NORMS}))
