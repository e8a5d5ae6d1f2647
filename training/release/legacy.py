"""Import encoders from legacy checkpoints (pl_bolts, facebookresearch/swav) as zoo exported folders.

Checkpoints are read with ``torch.load(weights_only=True)`` only (tensors and plain containers, never arbitrary
pickled objects); encoder keys are mapped onto a registered encoder, loaded strictly and written as an exported
folder (``zoo.load_encoder(out)`` loads it). Layouts, checked against Lightning-Universe/lightning-bolts
(``src/pl_bolts/models/self_supervised/...``) and facebookresearch/swav:

- ``pl_bolts_simclr``: Lightning checkpoint of ``SimCLR`` (``simclr/simclr_module.py``); the trunk is
  ``self.encoder``, a ``resnets.py`` ResNet with torchvision's names (``conv1``, ``bn1``, ``layerI.N.{conv,bn}K``,
  ``downsample.0/1``, an unused ``fc``): ``encoder.conv1.*`` -> ``stem.0.*``, ``encoder.bn1.*`` -> ``stem.1.*``,
  ``encoder.layerI.*`` -> ``layerI.*``; ``encoder.fc.*`` and ``projection.*`` (MLP head) are dropped.
  ``first_conv=False`` (3x3/1 conv1) with ``maxpool1=False`` (kernel-1 max-pool) is our ``small_image_stem``.
- ``pl_bolts_swav``: ``SwAV`` (``swav/swav_module.py``); the trunk is ``self.model`` (``swav/swav_resnet.py``, same
  names, plus ``projection_head.*`` / ``prototypes.*``, dropped). Its ``forward_backbone`` zero-pads the input by
  1 before ``conv1``: with the 7x7 stem (padding 2) that equals torchvision's padding 3; with the 3x3 stem the
  extra pixel changes the maps, so that variant is refused rather than imported inexactly.
- ``pl_bolts_cpc``: ``CPC`` v2 (``cpc/cpc_module.py``); ``self.encoder`` is ``cpc_resnet101`` (``cpc/networks.py``:
  ``CPCResNet`` of ``LNBottleneck`` blocks whose layer norms are sized for one patch size), loaded under the same
  names into our ``cpc_resnet`` encoder (``zoo/parts/encoders/cpc_resnet.py``); ``contrastive_task.*`` is dropped.
  Patch size: ``hyper_parameters["patch_size"]`` when it fits ``ln1``, else twice ``ln1``'s height; overlap:
  ``patch_overlap`` (default half a patch, as its ``Patchify`` transforms); image: the 7x7 patch grid it trains
  on (CIFAR-10 8px patches of 32px, STL-10 16 of 64, ImageNet 32 of 128).
- ``swav_fair``: released facebookresearch/swav checkpoints: ``hubconf.py`` reads ``swav_800ep_pretrain.pth.tar``
  as a plain state dict, strips ``module.`` and loads torchvision's ``resnet50`` non-strictly (``eval_linear.py``
  also unwraps ``{"state_dict": ...}``). ``src/resnet50.py`` uses torchvision's names plus ``projection_head.*`` /
  ``prototypes.*`` (dropped) and pads by 1 before a padding-2 7x7 ``conv1`` (= padding 3). Normalisation is
  SwAV's own (``src/multicropdataset.py``, red std 0.228). Its ``resnet50w2/w4/w5`` widen stem and bottlenecks
  beyond what the resnet encoder's width multiplier (timm: stages scaled, 64-channel stem) expresses: refused.

Depth and width come from the tensors (blocks per stage, bottleneck or basic, first-stage channels); BN counters
(``num_batches_tracked``) that old checkpoints lack are filled with 0.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from training.release.export import write_export
from zoo.build import build_encoder
from zoo.errors import ZooError
from zoo.methods import get_method
from zoo.parts.encoders.cpc_resnet import STEM_CHANNELS
from zoo.pretrained.exported import load_state_strict
from zoo.spec import Part


class LegacyFormat(NamedTuple):
    method: str                    # the method row the weights were trained with
    lightning: bool                # a Lightning checkpoint ({"state_dict": ..., "hyper_parameters": ...})
    prefix: str                    # where the encoder's keys live
    ignored: Tuple[str, ...]       # other modules of the checkpoint (heads, online evaluators), dropped
    inner_ignored: Tuple[str, ...]  # parts of the encoder module that are not the trunk, dropped
    kind: str                      # the trunk's key layout: "resnet" (torchvision names) or "cpc_resnet"
    pads_input: bool               # zero-pads the input by 1 before conv1 (SwAV's forward_backbone)


FORMATS: Dict[str, LegacyFormat] = {
    "pl_bolts_simclr": LegacyFormat("simclr", True, "encoder.", ("projection.", "non_linear_evaluator."), ("fc.",),
                                    "resnet", False),
    "pl_bolts_swav": LegacyFormat("swav", True, "model.", ("non_linear_evaluator.",),
                                  ("projection_head.", "prototypes."), "resnet", True),
    "pl_bolts_cpc": LegacyFormat("cpc_v2", True, "encoder.", ("contrastive_task.", "non_linear_evaluator."), (),
                                 "cpc_resnet", False),
    "swav_fair": LegacyFormat("swav", False, "module.", (), ("projection_head.", "prototypes."), "resnet", True),
}
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_LAYOUTS = {
    "resnet": re.compile(rf"^(conv1\.weight|bn1\.{_BN}|layer[1-4]\.\d+\.(conv[1-3]\.weight|bn[1-3]\.{_BN}"
                         rf"|downsample\.0\.weight|downsample\.1\.{_BN}))$"),
    "cpc_resnet": re.compile(r"^(conv1\.weight|ln1\.(weight|bias)|layer[1-4]\.\d+\.(conv[1-3]\.weight"
                             r"|ln[1-3]\.(weight|bias)|downsample\.0\.weight|downsample\.1\.(weight|bias)))$"),
}
_RESNETS = {(False, (2, 2, 2, 2)): "resnet18", (False, (3, 4, 6, 3)): "resnet34", (True, (3, 4, 6, 3)): "resnet50",
            (True, (3, 4, 23, 3)): "resnet101", (True, (3, 8, 36, 3)): "resnet152"}
# input presets per dataset (pl_bolts' dataset_normalizations.py; SwAV's own std for swav_fair below)
_NORMS = {"imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
          "cifar10": ([125.3 / 255, 123.0 / 255, 113.9 / 255], [63.0 / 255, 62.1 / 255, 66.7 / 255]),
          "stl10": ([0.43, 0.42, 0.39], [0.27, 0.26, 0.27])}
_SIZES = {"imagenet": 224, "cifar10": 32, "stl10": 96}
_ALIASES = {"imagenet2012": "imagenet", "imagenet1k": "imagenet", "imagenet128": "imagenet", "cifar": "cifar10"}


def import_legacy(path: str, *, format: str, out: str, name: Optional[str] = None, dataset: Optional[str] = None,
                  overwrite: bool = False) -> str:
    """Convert a legacy checkpoint's encoder into an exported folder loadable by ``zoo.load_encoder(out)``.

    Args:
        path: the legacy checkpoint (read with ``torch.load(weights_only=True)`` only).
        format: its layout, one of ``FORMATS``: pl_bolts_simclr, pl_bolts_swav, pl_bolts_cpc, swav_fair.
        out: folder to create (written atomically).
        name: entry name to record, e.g. ``simclr.imagenet_pl_bolts``.
        dataset: pre-training dataset (``imagenet``, ``cifar10``, ``stl10`` pick the input normalisation); default:
            the checkpoint's ``hyper_parameters["dataset"]``, else inferred from the stem / patch size.
        overwrite: replace ``out`` if it exists.
    """
    if format not in FORMATS:
        raise ZooError(f"unknown legacy checkpoint format {format!r}; known formats: {sorted(FORMATS)}")
    fmt = FORMATS[format]
    ckpt = read_legacy(path)
    state, hparams = checkpoint_state(ckpt, format, path)
    inner = encoder_keys(state, format, path)
    if fmt.kind == "cpc_resnet":
        part, inferred, grid = cpc_part(inner, hparams)
    else:
        (part, inferred), grid = resnet_part(inner, format, hparams), None
        inner = {_resnet_name(k): v for k, v in inner.items()}
    named = [d for d in (dataset, hparams.get("dataset")) if isinstance(d, str) and d]
    given = _ALIASES.get(named[0].lower(), named[0].lower()) if named else inferred
    preset = given if given in _NORMS else inferred  # an unknown dataset name keeps the stem's input preset
    dataset = given if given in _NORMS else named[0]
    mean, std = (list(v) for v in _NORMS[preset])
    if format == "swav_fair" and preset == "imagenet":
        std[0] = 0.228
    # a 7x7 grid of patches for CPC, as pl_bolts trains it
    size = _SIZES[preset] if grid is None else grid[0] + 6 * (grid[0] - grid[1])
    augment: Dict[str, Any] = {"size": size, "mean": mean, "std": std}
    if fmt.method == "swav":
        augment["small_size"] = {"imagenet": 96, "stl10": 36}.get(preset, max(8, round(size * 96 / 224)))
    augment.update({} if grid is None else {"patch": grid[0], "overlap": grid[1]})
    method = get_method(fmt.method).with_overrides(augment=augment, encoder=part.to_dict())
    encoder = build_encoder(method.encoder)
    for key, value in encoder.state_dict().items():  # counters older checkpoints lack; unused at evaluation
        if key.endswith("num_batches_tracked") and key not in inner:
            inner[key] = torch.zeros_like(value)
    load_state_strict(encoder, inner, f"{Path(path).name} ({format} encoder weights)")
    where = (f"Imported from a legacy {format} checkpoint ({Path(path).name}) into a local exported folder; "
             "not published to any hub yet.")
    folder = write_export(out, method, encoder, name=name, dataset=dataset, where=where, overwrite=overwrite,
                          recipe={"legacy_format": format, "legacy_checkpoint": Path(path).name,
                                  "legacy_hyper_parameters": _plain(hparams)},
                          training=imported_training(format, Path(path).name,
                                                     ckpt if isinstance(ckpt, Mapping) else {}))
    return str(folder)


def _resnet_name(key: str) -> str:
    """torchvision ResNet parameter name -> ``ResNetEncoder`` name (its stem is ``Sequential(conv1, bn1, ...)``)."""
    head, _, rest = key.partition(".")
    return f"{dict(conv1='stem.0', bn1='stem.1').get(head, head)}.{rest}"


def read_legacy(path: str | Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, any failure as a one-line ZooError."""
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"legacy checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refusals, truncated files, non-checkpoints alike
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        reason = (f"it contains a pickled {found.group(1)} object, which weights_only loading refuses" if found
                  else f"{type(err).__name__}: {(str(err).strip().splitlines() or ['?'])[0]}")
        raise ZooError(f"{path} cannot be read with torch.load(weights_only=True): {reason}; legacy checkpoints are "
                       "only imported as plain tensors and containers") from None


def _layout_error(format: str, path: str, detail: str) -> ZooError:
    return ZooError(f"unknown legacy key layout for format {format!r} in {Path(path).name}: {detail}; "
                    f"known formats: {sorted(FORMATS)}")


def checkpoint_state(ckpt: Any, format: str, path: str) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """The flat state dict and (Lightning) hyper-parameters of a loaded checkpoint."""
    hparams: Any = None
    if FORMATS[format].lightning:
        if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
            top = sorted(map(str, ckpt))[:5] if isinstance(ckpt, Mapping) else type(ckpt).__name__
            raise _layout_error(format, path, f"not a Lightning checkpoint (no 'state_dict'; top level {top})")
        state, hparams = ckpt["state_dict"], ckpt.get("hyper_parameters")
    else:
        state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else ckpt
    if not isinstance(state, Mapping):
        raise _layout_error(format, path, f"it holds a {type(state).__name__}, not a state dict")
    not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(v, Tensor))
    if not_tensors:
        raise _layout_error(format, path, f"non-tensor entries {not_tensors[:5]} where a state dict belongs")
    return dict(state), dict(hparams) if isinstance(hparams, Mapping) else {}


def encoder_keys(state: Mapping[str, Tensor], format: str, path: str) -> Dict[str, Tensor]:
    """The encoder's tensors with the format's prefix removed; other known keys dropped; anything else an error."""
    fmt = FORMATS[format]
    inner: Dict[str, Tensor] = {}
    unmatched: List[str] = []
    for key, value in state.items():
        if key.startswith(fmt.prefix):
            sub = key[len(fmt.prefix):]
        elif not fmt.lightning:  # facebookresearch/swav weights saved without DistributedDataParallel
            sub = key
        else:
            unmatched += [] if key.startswith(fmt.ignored) else [key]
            continue
        if sub.startswith(fmt.inner_ignored):
            continue
        if _LAYOUTS[fmt.kind].match(sub):
            inner[sub] = value
        else:
            unmatched.append(key)
    if unmatched or "conv1.weight" not in inner:
        detail = f"{len(unmatched)} key(s) match none of its patterns" if unmatched else "no encoder conv1 found"
        raise _layout_error(format, path, f"{detail}, e.g. {sorted(unmatched)[:5] or sorted(state)[:5]} (expected a "
                                          f"{fmt.kind} trunk under {fmt.prefix!r})")
    return inner


def _stage_blocks(inner: Mapping[str, Tensor]) -> Tuple[int, ...]:
    """Blocks per stage: one more than the highest ``layerI.N`` index of each stage."""
    found = [re.match(r"layer([1-4])\.(\d+)\.", key) for key in inner]
    return tuple(max([int(m.group(2)) + 1 for m in found if m and m.group(1) == str(i)], default=0) for i in range(1, 5))


def resnet_part(inner: Mapping[str, Tensor], format: str, hparams: Mapping[str, Any]) -> Tuple[Part, str]:
    """The ``resnet`` encoder part a torchvision-layout trunk needs, and the dataset preset its stem suggests."""
    bottleneck = "layer1.0.conv3.weight" in inner
    blocks = _stage_blocks(inner)
    arch = _RESNETS.get((bottleneck, blocks))
    if arch is None:
        raise ZooError(f"{format}: a ResNet with {list(blocks)} {'bottleneck' if bottleneck else 'basic'} blocks per "
                       f"stage is none of {sorted(set(_RESNETS.values()))}")
    stem_out, in_channels, kernel = (int(s) for s in inner["conv1.weight"].shape[:3])
    small, maxpool = kernel == 3, hparams.get("maxpool1")
    if kernel not in (3, 7):
        raise ZooError(f"{format}: conv1 is {kernel}x{kernel}; only the 7x7 and 3x3 (small-image) stems map")
    if isinstance(maxpool, bool) and maxpool == small:
        raise ZooError(f"{format}: the checkpoint pairs a {kernel}x{kernel} conv1 with maxpool1={maxpool}; the resnet "
                       "encoder has the 7x7 stem with max-pool or the 3x3 stem without it, nothing in between")
    if small and FORMATS[format].pads_input:
        raise ZooError(f"{format}: this SwAV ResNet zero-pads the input by 1 before its 3x3 conv1 (forward_backbone), "
                       "so its maps differ from the resnet encoder's small_image_stem; only the 7x7 stem imports")
    out1 = int(inner[f"layer1.0.conv{3 if bottleneck else 2}.weight"].shape[0])
    width, inner1 = out1 / (64 * (4 if bottleneck else 1)), int(inner["layer1.0.conv1.weight"].shape[0])
    if stem_out != 64 or inner1 != round(64 * width):
        raise ZooError(f"{format}: a widened ResNet (stem {stem_out} channels, first bottleneck {inner1} -> {out1}) "
                       "cannot be expressed by the resnet encoder's width multiplier (timm keeps a 64-channel stem "
                       "and bottleneck width = planes)")
    kwargs: Dict[str, Any] = {"arch": arch, "in_channels": in_channels, "small_image_stem": small}
    if width != 1.0:
        kwargs.update(width=width, backend="timm")
    return Part.of("resnet", **kwargs), "cifar10" if small else "imagenet"


def cpc_part(inner: Mapping[str, Tensor], hparams: Mapping[str, Any]) -> Tuple[Part, str, Tuple[int, int]]:
    """The ``cpc_resnet`` part of a pl_bolts CPCResNet trunk, the dataset its patch size suggests, (patch, overlap)."""
    stem_out, in_channels = (int(s) for s in inner["conv1.weight"].shape[:2])
    ln1 = tuple(int(s) for s in inner["ln1.weight"].shape) if "ln1.weight" in inner else ()
    if stem_out != STEM_CHANNELS or len(ln1) != 3 or ln1[0] != stem_out or ln1[1] != ln1[2]:
        raise ZooError(f"pl_bolts_cpc: conv1 {stem_out} channels with ln1 {list(ln1)} is not pl_bolts' CPCResNet stem")
    patch = hparams.get("patch_size")
    if not isinstance(patch, int) or (patch - 1) // 2 + 1 != ln1[1]:
        patch = 2 * ln1[1]
    overlap = hparams.get("patch_overlap")
    if not isinstance(overlap, int) or not 0 <= overlap < patch:
        overlap = patch // 2
    width = int(inner["layer1.0.conv1.weight"].shape[0])  # planes 64 -> width_per_group
    part = Part.of("cpc_resnet", patch_size=patch, layers=list(_stage_blocks(inner)), in_channels=in_channels,
                   width_per_group=width)
    return part, {8: "cifar10", 16: "stl10"}.get(patch, "imagenet"), (patch, overlap)


def _plain(value: Any) -> Any:
    """JSON-safe copy of hyper-parameters (anything unusual becomes its repr)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    ok = value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and abs(value) < 1e308)
    return value if ok else repr(value)


def imported_training(format: str, basename: str, ckpt: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``training`` block of an imported folder's config: where it came from, and the checkpoint's counters."""
    training: Dict[str, Any] = {"source": f"imported from {format} checkpoint {basename}"}
    for key in ("epoch", "global_step"):
        if isinstance(ckpt.get(key), int) and not isinstance(ckpt.get(key), bool):
            training[f"checkpoint_{key}"] = ckpt[key]
    return training
