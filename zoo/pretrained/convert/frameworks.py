"""Checkpoints of SSL frameworks whose trunk is a torchvision ResNet: solo-learn, lightly, mmselfsup/mmpretrain.

These frameworks train many methods, so the method row comes from the checkpoint where it says so, else from the
caller (``method=``, ``--method``).

- ``solo_learn``: vturrisi/solo-learn ``solo/methods/base.py`` builds ``self.backbone`` from torchvision's
  ``resnet18``/``resnet50`` (``solo/backbones/resnet/resnet.py``), sets ``fc = Identity`` and, for cifar10/cifar100,
  ``conv1 = Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)`` with ``maxpool = Identity`` (our small
  stem with ``small_stem_padding=2``). Lightning checkpoints: ``backbone.*``; ``projector.*``, ``classifier.*``
  (online linear head), ``momentum_backbone.*``/``momentum_projector.*``, ``predictor.*``, ``prototypes.*``,
  ``head.*``/``momentum_head.*``, ``queue``/``queue_ptr`` dropped. Input statistics: ``MEANS_N_STD`` of
  ``solo/data/pretrain_dataloader.py``. Licence: MIT (LICENSE).
- ``lightly``: lightly-ai/lightly ``benchmarks/imagenet/resnet50/{simclr,byol,mocov2}.py`` keep a torchvision
  ``resnet50`` with ``fc = Identity()`` as ``self.backbone``; ``projection_head.*``, ``prediction_head.*``,
  ``teacher_backbone.*``, ``teacher_projection_head.*``, ``query_backbone.*``, ``query_projection_head.*`` and
  ``online_classifier.*`` are dropped (in ``mocov2.py`` ``backbone`` is the momentum-updated encoder it evaluates).
  Its examples use ``nn.Sequential(*list(resnet.children())[:-1])``, whose ``backbone.{0,1,4,5,6,7}`` are
  ``conv1``, ``bn1``, ``layer1``..``layer4``: both layouts map. Input: lightly's ``IMAGENET_NORMALIZE``. Licence: MIT.
- ``mmselfsup``: open-mmlab/mmselfsup ``tools/model_converters/extract_backbone_weights.py`` keeps
  ``state_dict`` keys starting with ``backbone`` (and writes ``{'state_dict', 'author': 'MMSelfSup'}`` without the
  prefix: read too). mmcv/mmpretrain's ``ResNet`` (``mmpretrain/models/backbones/resnet.py``) names its layers as
  torchvision does (``conv1``, ``bn1`` via ``build_norm_layer(postfix=1)``, ``layerI.N.{conv,bn}K``,
  ``downsample.0/1``) with ``style='pytorch'`` (stride in the 3x3 conv), the style its SSL configs use; a deep
  stem (``stem.*``), ``avg_down`` shortcuts or GroupNorm do not match and are refused. ``neck.*``, ``head.*``,
  ``momentum_encoder.*``/``target_net.*``, ``encoder_q.*`` (0.x: the same tensors as ``backbone``),
  ``encoder_k.*``, ``queue``/``queue_ptr``, ``predictor.*`` and ``data_preprocessor.*`` are dropped. Input: its
  ``data_preprocessor`` mean [123.675, 116.28, 103.53] / std [58.395, 57.12, 57.375] on 0..255 RGB, i.e. the
  ImageNet statistics of the dataset presets (``dataset=`` picks another). Licence: Apache-2.0 (LICENSE).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

from torch import Tensor

from zoo.pretrained.convert.formats import LegacyFormat, Preprocess, register_format
from zoo.pretrained.convert.reading import layout_error, lightning_state, tensors_only, top_level

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SOLO_STATS = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 32),
              "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 32),
              "stl10": ((0.4914, 0.4823, 0.4466), (0.247, 0.243, 0.261), 96),
              "imagenet100": IMAGENET_STATS + (224,), "imagenet": IMAGENET_STATS + (224,)}
SOLO_METHODS = {"simclr": "simclr", "byol": "byol", "mocov2plus": "moco_v2", "swav": "swav"}


def solo_hparams(hparams: Mapping[str, Any]) -> Dict[str, Any]:
    """``method`` and ``dataset`` from solo-learn's hyper-parameters (flat in 0.x, under ``cfg`` in 1.x)."""
    cfg: Mapping[str, Any] = hparams["cfg"] if isinstance(hparams.get("cfg"), Mapping) else hparams
    data: Mapping[str, Any] = cfg["data"] if isinstance(cfg.get("data"), Mapping) else cfg
    found = {"method": cfg.get("method"), "dataset": data.get("dataset")}
    return {k: v for k, v in found.items() if isinstance(v, str)}


register_format(LegacyFormat(
    name="solo_learn", source="vturrisi/solo-learn solo/methods/base.py, solo/backbones/resnet/resnet.py",
    license="mit", unwrap=lightning_state, prefix="backbone.",
    dropped=("projector.", "classifier.", "momentum_backbone.", "momentum_projector.", "predictor.", "prototypes.",
             "head.", "momentum_head.", "queue"),
    options={"small_stem_padding": 2, "norms": SOLO_STATS, "method_names": SOLO_METHODS, "hparams": solo_hparams}))

_LIGHTLY_SEQUENTIAL = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


def lightly_name(key: str) -> str:
    """``nn.Sequential(*list(resnet.children())[:-1])`` index -> torchvision name; other names unchanged."""
    head, _, rest = key.partition(".")
    return f"{_LIGHTLY_SEQUENTIAL[head]}.{rest}" if head in _LIGHTLY_SEQUENTIAL and rest else key


register_format(LegacyFormat(
    name="lightly", source="lightly-ai/lightly benchmarks/imagenet/resnet50/simclr.py, byol.py, mocov2.py",
    license="mit", unwrap=lightning_state, prefix="backbone.",
    dropped=("projection_head.", "prediction_head.", "teacher_backbone.", "teacher_projection_head.",
             "query_backbone.", "query_projection_head.", "online_classifier."),
    rename=lightly_name, preprocess=Preprocess(*IMAGENET_STATS, 0, "lightly.transforms.utils.IMAGENET_NORMALIZE")))


def mmselfsup_state(ckpt: Any, path: str, format: str) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        top = top_level(ckpt)
        raise layout_error(format, path, f"no 'state_dict' (top level {top})")
    state = tensors_only(ckpt["state_dict"], format, path)
    extracted: Optional[str] = ckpt.get("author") if isinstance(ckpt.get("author"), str) else None
    if extracted == "MMSelfSup":  # extract_backbone_weights.py output: the backbone without its prefix
        state = {f"backbone.{k}": v for k, v in state.items()}
    return state, {}


register_format(LegacyFormat(
    name="mmselfsup", source="open-mmlab/mmselfsup tools/model_converters/extract_backbone_weights.py; "
                             "open-mmlab/mmpretrain mmpretrain/models/backbones/resnet.py",
    license="apache-2.0", unwrap=mmselfsup_state, prefix="backbone.",
    dropped=("neck.", "head.", "momentum_encoder.", "target_net.", "encoder_q.", "encoder_k.", "queue", "predictor.",
             "data_preprocessor."),
    options={"method_names": {}}))
