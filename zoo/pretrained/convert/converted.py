"""PyTorch conversions of TensorFlow / JAX releases: SimCLR v1, SimCLR v2, BYOL.

- ``simclr_v1``: tonylins/simclr-converter ``convert.py`` writes ``{'state_dict': model.state_dict()}`` of its
  ``resnet_wider.py`` ResNet (torchvision's names and padding; ``fc`` holds the supervised head, whose bias it
  never copies: dropped). ``eval.py`` feeds ``ToTensor()`` images "without normalization, as the original TF
  models were not trained with normalization": mean 0, std 1 on [0, 1]. ``resnet50x2``/``x4`` widen the stem to
  128/256 channels, which the resnet encoder's width multiplier does not: refused. Licence: Apache-2.0
  (google-research/simclr and the converter's LICENSE).
- ``simclr_v2``: Separius/SimCLRv2-Pytorch ``convert.py`` writes ``{'resnet': ..., 'head': ...}`` of its
  ``resnet.py`` (``net.0`` stem, ``net.{1-4}.blocks.N.net.{0..5}`` conv/BN pairs, ``projection.{shortcut,bn.0}``,
  ``fc``), renamed here to torchvision's names; ``head.*`` (the contrastive MLP) and ``fc.*`` are dropped.
  ``verify.py`` feeds ``ToTensor()`` images (no normalisation). Selective-kernel (``_sk1``) checkpoints (SK
  convolutions, a three-conv stem, average-pool shortcuts) and widths 2x/3x (wider stem) are refused; depths
  50/101/152 at 1x import. Licence: Apache-2.0.
- ``byol``: ajtejankar/byol-convert ``convert.py`` turns deepmind's ``pretrain_res50x1.pkl`` into a flat state dict
  with torchvision's names (``fc`` = the online linear classifier: dropped) saved as ``pretrain_res50x1.pth.tar``;
  its ``resnet.py`` runs it with TensorFlow ``SAME`` padding (``pad_same``) in the strided layers, which the
  resnet encoder's ``same_padding`` reproduces. ``validate.py``: ImageNet mean/std. The official ``.pkl`` is a
  dill pickle (``checkpointing.py``), readable only by running pickled code: refused, naming the safe route.
  Licence: Apache-2.0 (google-deepmind/deepmind-research).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Tuple

from torch import Tensor

from zoo.errors import ZooError
from zoo.pretrained.convert.formats import LegacyFormat, Preprocess, Reported, register_format
from zoo.pretrained.convert.reading import layout_error, plain_state, tensors_only, top_level

UNIT_RANGE = Preprocess((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 224, "")

register_format(LegacyFormat(
    name="simclr_v1", source="tonylins/simclr-converter convert.py, resnet_wider.py, eval.py", license="apache-2.0",
    unwrap=plain_state, prefix="", method="simclr", inner_dropped=("fc.",),
    preprocess=UNIT_RANGE._replace(why="tonylins/simclr-converter eval.py (ToTensor only, no normalization)"),
    reported={"resnet50-1x.pth": Reported("imagenet/linear_top1", 69.1, "tonylins/simclr-converter README.md "
                                          "(TensorFlow Top-1 column, google-research/simclr's release)")}))


def simclr_v2_state(ckpt: Any, path: str, format: str) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("resnet"), Mapping):
        top = top_level(ckpt)
        raise layout_error(format, path, f"no 'resnet' state dict (top level {top}); Separius/SimCLRv2-Pytorch "
                                         "saves {'resnet': ..., 'head': ...}")
    state = {f"resnet.{k}": v for k, v in ckpt["resnet"].items()}
    head = ckpt.get("head")
    state.update({f"head.{k}": v for k, v in (head.items() if isinstance(head, Mapping) else ())})
    return tensors_only(state, format, path), {}


_V2_NAMES = (
    (re.compile(r"^net\.0\.0\.weight$"), lambda m: "conv1.weight"),
    (re.compile(r"^net\.0\.1\.0\.(\w+)$"), lambda m: f"bn1.{m[1]}"),
    (re.compile(r"^net\.([1-4])\.blocks\.(\d+)\.net\.([024])\.weight$"),
     lambda m: f"layer{m[1]}.{m[2]}.conv{int(m[3]) // 2 + 1}.weight"),
    (re.compile(r"^net\.([1-4])\.blocks\.(\d+)\.net\.([135])\.0\.(\w+)$"),
     lambda m: f"layer{m[1]}.{m[2]}.bn{(int(m[3]) + 1) // 2}.{m[4]}"),
    (re.compile(r"^net\.([1-4])\.blocks\.(\d+)\.projection\.shortcut\.weight$"),
     lambda m: f"layer{m[1]}.{m[2]}.downsample.0.weight"),
    (re.compile(r"^net\.([1-4])\.blocks\.(\d+)\.projection\.bn\.0\.(\w+)$"),
     lambda m: f"layer{m[1]}.{m[2]}.downsample.1.{m[3]}"),
)


def simclr_v2_name(key: str) -> str:
    """Separius' ``resnet.py`` name -> torchvision's (unchanged when it is none of its layout's names)."""
    for pattern, name in _V2_NAMES:
        found = pattern.match(key)
        if found:
            return name(found)
    return key


def refuse_selective_kernel(state: Mapping[str, Tensor], path: str) -> None:
    sk = sorted(k for k in state if re.match(r"^resnet\.net\.0\.[2-9]\.", k) or "main_conv" in k
                or "mixing_conv" in k or ".projection.shortcut.2." in k)
    if sk:
        raise ZooError(f"simclr_v2: {path} is a selective-kernel (sk1) ResNet (e.g. {sk[0]!r}): its SK convolutions, "
                       "three-conv stem and average-pool shortcuts are not a torchvision ResNet, so the resnet encoder "
                       "cannot load it; only the sk0 checkpoints (e.g. r50_1x_sk0.pth) import")


register_format(LegacyFormat(
    name="simclr_v2", source="Separius/SimCLRv2-Pytorch convert.py, resnet.py, verify.py", license="apache-2.0",
    unwrap=simclr_v2_state, prefix="resnet.", method="simclr", dropped=("head.",), inner_dropped=("fc.",),
    rename=simclr_v2_name, check=refuse_selective_kernel,
    preprocess=UNIT_RANGE._replace(why="Separius/SimCLRv2-Pytorch verify.py (ToTensor only, no normalisation)"),
    reported={"r50_1x_sk0.pth": Reported("imagenet/linear_top1", 71.7, "Separius/SimCLRv2-Pytorch README.md (TF "
                                         "column, google-research/simclr's release)")}))

BYOL_SAFE_ROUTE = ("; the official BYOL release (pretrain_res50x1.pkl) is a dill pickle of Haiku parameters that "
                   "only runs as code: convert it in an isolated environment with ajtejankar/byol-convert "
                   "(python convert.py pretrain_res50x1.pkl pretrain_res50x1.pth.tar) and import the .pth.tar")
register_format(LegacyFormat(
    name="byol", source="ajtejankar/byol-convert convert.py, resnet.py, validate.py", license="apache-2.0",
    unwrap=plain_state, prefix="", method="byol", inner_dropped=("fc.",),
    options={"same_padding": True, "safe_route": BYOL_SAFE_ROUTE, "refused_suffixes": (".pkl", ".dill")},
    preprocess=Preprocess((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 224, "ajtejankar/byol-convert validate.py"),
    reported={"pretrain_res50x1.pth.tar": Reported("imagenet/linear_top1", 74.4, "google-deepmind/deepmind-research "
                                                   "byol/README.md ('should evaluate to ~74.4% top-1 accuracy')")}))
