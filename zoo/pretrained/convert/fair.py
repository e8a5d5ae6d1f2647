"""Releases of facebookresearch projects: SwAV, MoCo v1/v2, VISSL.

- ``swav_fair``: facebookresearch/swav ``hubconf.py`` reads ``swav_800ep_pretrain.pth.tar`` as a plain state dict,
  strips ``module.`` and loads torchvision's ``resnet50``; ``eval_linear.py`` also unwraps ``{"state_dict": ...}``
  (training checkpoints, beside ``epoch``/``optimizer``/``amp``). ``src/resnet50.py`` uses torchvision's names plus
  ``projection_head.*`` / ``prototypes.*`` (dropped) and pads by 1 before a padding-2 7x7 ``conv1`` (= padding 3).
  Normalisation is SwAV's own (``src/multicropdataset.py``: red std 0.228). Its ``resnet50w2/w4/w5`` widen the
  stem too, which the resnet encoder's width multiplier does not: refused. Licence: CC-BY-NC 4.0 (LICENSE).
- ``moco``: facebookresearch/moco ``main_lincls.py`` loads ``checkpoint["state_dict"]`` of
  ``{epoch, arch, state_dict, optimizer}``, keeps ``module.encoder_q.*`` minus ``module.encoder_q.fc`` (v1: one
  linear layer; v2: the MLP ``fc.0``/``fc.2``) and asserts that only ``fc.*`` is missing from torchvision's model;
  ``module.encoder_k.*`` (momentum encoder), ``module.queue`` and ``module.queue_ptr`` (``moco/builder.py``) are
  dropped. Input: ImageNet mean/std (``main_lincls.py``). Licence: recorded as CC-BY-NC 4.0, the stricter of the
  repository's two statements: its README's licence section (beside the checkpoint links) reads CC-BY-NC 4.0,
  while the LICENSE file became MIT in commit 7397dfe ("Relicense MoCo under MIT", Jan 2023). Whoever has
  settled which covers the released weights passes ``license="mit"`` (``--license mit``).
- ``vissl``: facebookresearch/vissl ``extra_scripts/convert_vissl_to_torchvision.py`` takes
  ``classy_state_dict.base_model.model.trunk`` (or a converted file's ``model_state_dict``) and strips
  ``_feature_blocks.`` to get torchvision names; ``classy_state_dict.base_model.model.heads.*`` are dropped.
  Input: ImageNet mean/std. Licence: none by default. VISSL's own trainings are MIT (README, "VISSL relicensed
  under MIT License", May 2021), but its MODEL_ZOO also re-hosts other projects' weights (SwAV, DeepCluster-v2)
  under their CC-BY-NC 4.0 licence, so every import names the file's licence (``--license``).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

from torch import Tensor

from zoo.pretrained.convert.formats import LegacyFormat, Preprocess, Reported, register_format
from zoo.pretrained.convert.reading import flatten, layout_error, plain_state, tensors_only, top_level

IMAGENET = Preprocess((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 224, "torchvision's ImageNet statistics")

register_format(LegacyFormat(
    name="swav_fair", source="facebookresearch/swav hubconf.py, eval_linear.py, src/resnet50.py", license="cc-by-nc-4.0",
    unwrap=plain_state, prefix="module.", method="swav", inner_dropped=("projection_head.", "prototypes."),
    options={"pads_input": True, "prefix_optional": True},
    preprocess=Preprocess((0.485, 0.456, 0.406), (0.228, 0.224, 0.225), 224,
                          "facebookresearch/swav src/multicropdataset.py"),
    reported={"swav_800ep_pretrain.pth.tar": Reported("imagenet/linear_top1", 75.3,
                                                      "facebookresearch/swav README.md (model zoo table)")}))


def moco_state(ckpt: Any, path: str, format: str) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """``{epoch, arch, state_dict, optimizer}`` -> the state dict, and ``arch`` to cross-check the tensors."""
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        top = top_level(ckpt)
        raise layout_error(format, path, f"no 'state_dict' (top level {top}); main_lincls.py reads "
                                         "checkpoint['state_dict']")
    arch = ckpt.get("arch")
    return tensors_only(ckpt["state_dict"], format, path), {"arch": arch} if isinstance(arch, str) else {}


_MOCO_README = "facebookresearch/moco README.md (Models table, top-1 acc.)"
register_format(LegacyFormat(
    name="moco", source="facebookresearch/moco main_lincls.py, moco/builder.py", license="cc-by-nc-4.0",
    unwrap=moco_state,
    prefix="module.encoder_q.", method="moco_v2", dropped=("module.encoder_k.", "module.queue"),
    inner_dropped=("fc.",), preprocess=IMAGENET._replace(why="facebookresearch/moco main_lincls.py"),
    reported={"moco_v1_200ep_pretrain.pth.tar": Reported("imagenet/linear_top1", 60.6, _MOCO_README),
              "moco_v2_200ep_pretrain.pth.tar": Reported("imagenet/linear_top1", 67.7, _MOCO_README),
              "moco_v2_800ep_pretrain.pth.tar": Reported("imagenet/linear_top1", 71.1, _MOCO_README)}))


def vissl_state(ckpt: Any, path: str, format: str) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """VISSL's nested ``classy_state_dict.base_model.model.{trunk,heads}`` (or ``model_state_dict``) flattened."""
    model: Any = None
    if isinstance(ckpt, Mapping) and isinstance(ckpt.get("classy_state_dict"), Mapping):
        model = ckpt["classy_state_dict"].get("base_model", {})
        model = model.get("model") if isinstance(model, Mapping) else None
    elif isinstance(ckpt, Mapping) and isinstance(ckpt.get("model_state_dict"), Mapping):
        model = {"trunk": ckpt["model_state_dict"]}
    if not isinstance(model, Mapping) or not isinstance(model.get("trunk"), Mapping):
        top = top_level(ckpt)
        raise layout_error(format, path, f"no classy_state_dict.base_model.model.trunk (top level {top})")
    return tensors_only(flatten(model), format, path), {}


register_format(LegacyFormat(
    name="vissl", source="facebookresearch/vissl extra_scripts/convert_vissl_to_torchvision.py", license=None,
    unwrap=vissl_state, prefix="trunk._feature_blocks.", dropped=("heads.",),
    options={"license_why": "VISSL's own trainings are MIT; the SwAV and DeepCluster-v2 files it re-hosts are "
                            "cc-by-nc-4.0"},
    preprocess=IMAGENET._replace(why="VISSL's ImageNet benchmark configs (Normalize with ImageNet statistics)")))
