"""pl_bolts Lightning checkpoints (Lightning-Universe/lightning-bolts, ``src/pl_bolts/models/self_supervised/``).

Each is ``{"state_dict", "hyper_parameters", "epoch", "global_step", ...}``; the module attributes give the keys:

- ``pl_bolts_simclr`` (``simclr/simclr_module.py``): trunk ``self.encoder``, a ``resnets.py`` ResNet with
  torchvision's names (and an unused ``fc``, dropped); ``projection.*`` (MLP head) dropped. ``first_conv=False``
  (3x3/1 conv1) with ``maxpool1=False`` is our ``small_image_stem``.
- ``pl_bolts_swav`` (``swav/swav_module.py``): trunk ``self.model`` (``swav/swav_resnet.py``) with
  ``projection_head.*`` / ``prototypes.*`` inside it, dropped. ``forward_backbone`` zero-pads the input by 1
  before a padding-2 7x7 conv1 (= torchvision's padding 3); with the 3x3 stem the extra pixel changes the maps,
  so that variant is refused.
- ``pl_bolts_cpc`` (``cpc/cpc_module.py``): ``self.encoder`` is ``cpc_resnet101`` (``cpc/networks.py``), loaded
  under the same names into our ``cpc_resnet``; ``contrastive_task.*`` dropped. Patch size from
  ``hyper_parameters["patch_size"]`` when it fits ``ln1``, else twice ``ln1``'s height; overlap from
  ``patch_overlap`` (default half a patch); the image is the 7x7 patch grid it trains on.
- ``pl_bolts_moco`` (``moco/moco2_module.py`` ``Moco_v2``; ``moco/moco_module.py`` ``MoCo``): trunk
  ``encoder_q``, a torchvision model built with ``num_classes=emb_dim`` (its ``fc``, or the ``use_mlp``
  ``fc.0``/``fc.2`` MLP, dropped); ``encoder_k.*`` (momentum encoder), ``head_q.*``/``head_k.*``, ``queue``,
  ``queue_ptr``, ``val_queue``, ``val_queue_ptr`` (``queue.representations``/``queue.pointer`` in ``MoCo``)
  dropped. Both files state "licensed under Attribution-NonCommercial 4.0 International" in their header.
- ``pl_bolts_byol`` (``byol/byol_module.py``, ``byol/models.py``): trunk ``online_network.encoder``
  (``torchvision_ssl_encoder``: the ``resnets.py`` ResNet, ``fc`` = Identity); ``online_network.projector.*``,
  ``online_network.predictor.*`` (older releases), ``predictor.*`` and the EMA ``target_network.*`` dropped.

All of them drop ``non_linear_evaluator.*`` (the online evaluator of versions up to ~0.3). Licence: the
repository's Apache-2.0, except MoCo's files as above.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping

from torch import Tensor

from zoo.errors import ZooError
from zoo.parts.encoders.cpc_resnet import STEM_CHANNELS
from zoo.pretrained.convert.formats import LegacyFormat, Trunk, TrunkResult, register_format, register_trunk
from zoo.pretrained.convert.reading import lightning_state
from zoo.pretrained.convert.resnet_trunk import stage_blocks
from zoo.spec import Part

_REPO = "Lightning-Universe/lightning-bolts src/pl_bolts/models/self_supervised/"
_EVALUATOR = ("non_linear_evaluator.",)

register_format(LegacyFormat(
    name="pl_bolts_simclr", source=_REPO + "simclr/simclr_module.py", license="apache-2.0", unwrap=lightning_state,
    prefix="encoder.", method="simclr", dropped=("projection.",) + _EVALUATOR, inner_dropped=("fc.",)))
register_format(LegacyFormat(
    name="pl_bolts_swav", source=_REPO + "swav/swav_module.py", license="apache-2.0", unwrap=lightning_state,
    prefix="model.", method="swav", dropped=_EVALUATOR, inner_dropped=("projection_head.", "prototypes."),
    options={"pads_input": True}))
register_format(LegacyFormat(
    name="pl_bolts_moco", source=_REPO + "moco/moco2_module.py and moco/moco_module.py", license="cc-by-nc-4.0",
    unwrap=lightning_state, prefix="encoder_q.", method="moco_v2",
    dropped=("encoder_k.", "head_q.", "head_k.", "queue", "val_queue") + _EVALUATOR, inner_dropped=("fc.",)))
register_format(LegacyFormat(
    name="pl_bolts_byol", source=_REPO + "byol/byol_module.py and byol/models.py", license="apache-2.0",
    unwrap=lightning_state, prefix="online_network.encoder.", method="byol",
    dropped=("online_network.projector.", "online_network.predictor.", "target_network.", "predictor.")
    + _EVALUATOR, inner_dropped=("fc.",)))

# --- CPC v2: pl_bolts' CPCResNet (layer norms sized for one patch size) ---
_CPC = re.compile(r"^(conv1\.weight|ln1\.(weight|bias)|layer[1-4]\.\d+\.(conv[1-3]\.weight"
                  r"|ln[1-3]\.(weight|bias)|downsample\.0\.weight|downsample\.1\.(weight|bias)))$")


def cpc_trunk(inner: Dict[str, Tensor], fmt: LegacyFormat, hparams: Mapping[str, Any]) -> TrunkResult:
    """The ``cpc_resnet`` part of a pl_bolts CPCResNet trunk, the dataset its patch size suggests, (patch, overlap)."""
    stem_out, in_channels = (int(s) for s in inner["conv1.weight"].shape[:2])
    ln1 = tuple(int(s) for s in inner["ln1.weight"].shape) if "ln1.weight" in inner else ()
    if stem_out != STEM_CHANNELS or len(ln1) != 3 or ln1[0] != stem_out or ln1[1] != ln1[2]:
        raise ZooError(f"{fmt.name}: conv1 {stem_out} channels with ln1 {list(ln1)} is not pl_bolts' CPCResNet stem")
    patch = hparams.get("patch_size")
    if not isinstance(patch, int) or (patch - 1) // 2 + 1 != ln1[1]:
        patch = 2 * ln1[1]
    overlap = hparams.get("patch_overlap")
    if not isinstance(overlap, int) or not 0 <= overlap < patch:
        overlap = patch // 2
    width = int(inner["layer1.0.conv1.weight"].shape[0])  # planes 64 -> width_per_group
    part = Part.of("cpc_resnet", patch_size=patch, layers=list(stage_blocks(inner)), in_channels=in_channels,
                   width_per_group=width)
    return TrunkResult(part, dict(inner), {8: "cifar10", 16: "stl10"}.get(patch, "imagenet"), (patch, overlap))


register_trunk("cpc_resnet", Trunk(_CPC, cpc_trunk))
register_format(LegacyFormat(
    name="pl_bolts_cpc", source=_REPO + "cpc/cpc_module.py", license="apache-2.0", unwrap=lightning_state,
    prefix="encoder.", method="cpc_v2", dropped=("contrastive_task.",) + _EVALUATOR, kind="cpc_resnet"))
