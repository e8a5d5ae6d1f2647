"""``python -m training export SOURCE --out OUT --format torchvision|timm``: a ResNet encoder for other libraries.

- ``torchvision``: one file, a plain ``torch.save`` dict of tensors under torchvision's ResNet names (``conv1``,
  ``bn1``, ``layerI.N.*``; torchvision ``models/resnet.py``) without ``fc``. Load it strictly with::

      model = torchvision.models.resnet50()          # the depth the export reports
      model.fc = torch.nn.Identity()                 # (B, 2048) features, as zoo.load_encoder gives
      model.load_state_dict(torch.load(FILE, weights_only=True))

  (or keep the classifier: ``load_state_dict(sd, strict=False)`` reports only ``fc.weight``/``fc.bias`` missing).
- ``timm``: a folder in timm's Hugging Face Hub layout (timm ``models/_hub.py``: ``save_for_hf`` and
  ``_parse_model_cfg``): ``model.safetensors`` (timm's ResNet names, no ``fc``), ``config.json`` with
  ``architecture``, ``num_classes`` 0, ``num_features``, ``global_pool`` and ``pretrained_cfg`` (input size, mean,
  std, bilinear ``squash`` resize at ``crop_pct`` 1.0: what ``zoo.eval_transform`` does), ``model_args`` when the
  trunk is not the stock one (``in_chans``, width-scaled ``channels``), and a model card. Uploaded to ``ORG/NAME``,
  ``timm.create_model("hf-hub:ORG/NAME", pretrained=True, num_classes=N)`` loads it for fine-tuning (timm drops
  the classifier of a checkpoint whose ``num_classes`` differs and initialises a fresh one).

Only the ``resnet`` encoder part with the 7x7 ImageNet stem and PyTorch padding exports: neither library has the
3x3 stride-1 stem without max-pool (``small_image_stem``; timm's ``stem_type`` offers 7x7, or three 3x3
convolutions with stride 2) or TensorFlow's ``SAME`` padding of the strided layers (``same_padding``, which BYOL's
converted checkpoints need), and AMDIM's and CPC's trunks have no counterpart in either. Whatever the target
cannot reproduce exactly is refused with one line, never written approximately.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, Mapping

import torch

from zoo.atomic import atomic_file
from zoo.errors import ZooError
from zoo.pretrained.exported import replace_dir, staging_dir
from zoo.pretrained.licenses import config_license

INTEROP_FORMATS = ("torchvision", "timm")
_STEM = {"stem.0.": "conv1.", "stem.1.": "bn1."}


def check_exportable(encoder_part: Mapping[str, Any], input_config: Mapping[str, Any], format: str) -> Dict[str, Any]:
    """The ``resnet`` part's arguments if ``format`` can express the encoder, else one ZooError line saying why."""
    if format not in INTEROP_FORMATS:
        raise ZooError(f"unknown export format {format!r}; choose 'zoo' (default), 'torchvision' or 'timm'")
    kwargs = {k: v for k, v in encoder_part.items() if k != "name"}
    if encoder_part.get("name") != "resnet":
        raise ZooError(f"--format {format} exports ResNet encoders only (the 'resnet' part); this encoder is "
                       f"{encoder_part.get('name')!r}, which {format} has no model for")
    if kwargs.get("small_image_stem"):
        raise ZooError(f"--format {format}: this ResNet has the small-image stem (3x3 stride-1 conv1, no max-pool), "
                       f"which {format}'s ResNets cannot express; only the 7x7 ImageNet stem exports")
    if kwargs.get("same_padding"):
        raise ZooError(f"--format {format}: this ResNet pads its strided convolutions and max-pool as TensorFlow's "
                       f"'SAME' (the BYOL/SimCLR TF conversions), which {format}'s ResNets cannot express; the export "
                       "would give other features (up to 1.28 apart in a BYOL import), so none is written")
    if "patch" in input_config:
        raise ZooError(f"--format {format}: this encoder reads a patch grid, which {format} does not preprocess")
    if format == "torchvision":
        if float(kwargs.get("width", 1.0)) != 1.0:
            raise ZooError(f"--format torchvision: a width-scaled ResNet (width {kwargs['width']}) has no torchvision "
                           "model (wide_resnet50_2 widens only the bottleneck convolutions); use --format timm")
        if int(kwargs.get("in_channels", 3)) != 3:
            raise ZooError(f"--format torchvision: torchvision's ResNets take 3 input channels, this encoder takes "
                           f"{kwargs['in_channels']}; use --format timm (it records in_chans)")
    return kwargs


def torchvision_state(encoder: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """Our ``ResNetEncoder`` state under torchvision's (= timm's) ResNet names: ``stem.0`` -> ``conv1``,
    ``stem.1`` -> ``bn1``, ``layerI.*`` unchanged."""
    out: Dict[str, torch.Tensor] = {}
    for key, value in encoder.state_dict().items():
        prefix = next((p for p in _STEM if key.startswith(p)), None)
        name = _STEM[prefix] + key[len(prefix):] if prefix else key
        if not name.startswith(("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")):
            raise ZooError(f"ResNet export: parameter {key!r} has no place in a torchvision ResNet")
        out[name] = value.detach().cpu().contiguous().clone()
    return out


def export_torchvision(encoder: torch.nn.Module, config: Mapping[str, Any], out: str | Path,
                       overwrite: bool = False) -> Dict[str, Any]:
    """Write the torchvision state dict file ``out`` atomically; returns the load call and the preprocessing."""
    kwargs = check_exportable(config["encoder"], config["input"], "torchvision")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ZooError(f"{out} already exists; pass --overwrite to replace it")
    if out.is_dir():
        raise ZooError(f"{out} is a folder; --format torchvision writes one file (e.g. resnet50.pth)")
    state = torchvision_state(encoder)
    with atomic_file(out) as handle:
        torch.save(state, handle)
    arch = kwargs.get("arch", "resnet50")
    return {"format": "torchvision", "file": str(out), "arch": arch,
            "load": f"model = torchvision.models.{arch}(); model.fc = torch.nn.Identity(); "
                    f"model.load_state_dict(torch.load({str(out)!r}, weights_only=True))",
            "input": _input_summary(config["input"]), "license": config_license(config, required=False) or "other"}


def timm_config(encoder: Any, config: Mapping[str, Any], kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """timm's Hub ``config.json`` for our ResNet (fields as ``timm.models._hub.save_config_for_hf`` writes them)."""
    inp = config["input"]
    model_args: Dict[str, Any] = {}
    if int(kwargs.get("in_channels", 3)) != 3:
        model_args["in_chans"] = int(kwargs["in_channels"])
    width = float(kwargs.get("width", 1.0))
    if width != 1.0:  # as ResNetEncoder builds it (zoo/parts/encoders/resnet.py, _timm_resnet)
        model_args["channels"] = [int(round(c * width)) for c in (64, 128, 256, 512)]
        model_args["stem_width"] = int(round(64 * width))
    size = [int(s) for s in inp["size"]]
    pretrained_cfg = {
        "tag": (config.get("name") or "contrastive_zoo").replace(".", "_"),
        "custom_load": False,
        "input_size": [int(inp["channels"]), *size],
        "fixed_input_size": False,
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "squash",  # the whole image resized to input_size, no crop: zoo.eval_transform
        "mean": [float(m) for m in inp["mean"]],
        "std": [float(s) for s in inp["std"]],
        "num_classes": 0,
        "pool_size": [max(1, size[0] // 32), max(1, size[1] // 32)],
        "first_conv": "conv1",
        "classifier": "fc",
        "license": config_license(config, required=False) or "other",
    }
    hf_config: Dict[str, Any] = {"architecture": kwargs.get("arch", "resnet50"), "num_classes": 0,
                                 "num_features": int(encoder.num_features), "global_pool": "avg"}
    if model_args:
        hf_config["model_args"] = model_args
    hf_config["pretrained_cfg"] = pretrained_cfg
    return hf_config


def timm_card(hf_config: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    from huggingface_hub import ModelCardData

    license = hf_config["pretrained_cfg"]["license"]
    data = ModelCardData(library_name="timm", license=license, tags=["timm", "image-feature-extraction",
                                                                     "self-supervised"],
                         model_name=config.get("name") or "contrastive-zoo encoder")
    return (f"---\n{data.to_yaml().strip()}\n---\n\n# {config.get('name') or 'contrastive-zoo encoder'} (timm)\n\n"
            f"A `{hf_config['architecture']}` trunk exported by contrastive-zoo (`python -m training export "
            "--format timm`), without a classifier. Upload this folder to `ORG/NAME`, then:\n\n"
            "```python\nimport timm\nmodel = timm.create_model(\"hf-hub:ORG/NAME\", pretrained=True, num_classes=N)\n"
            "transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))\n```\n\n"
            f"Licence of the weights: `{license}`.\n")


def export_timm(encoder: torch.nn.Module, config: Mapping[str, Any], out: str | Path,
                overwrite: bool = False) -> Dict[str, Any]:
    """Write the timm Hub folder ``out`` atomically (staged beside it, then renamed)."""
    from safetensors.torch import save_file

    kwargs = check_exportable(config["encoder"], config["input"], "timm")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ZooError(f"{out} already exists; pass --overwrite to replace it")
    hf_config = timm_config(encoder, config, kwargs)
    tmp = staging_dir(out)
    try:
        save_file(torchvision_state(encoder), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        (tmp / "README.md").write_text(timm_card(hf_config, config))
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"format": "timm", "folder": str(out), "architecture": hf_config["architecture"],
            "load": 'timm.create_model("hf-hub:ORG/NAME", pretrained=True, num_classes=N) once uploaded; offline: '
                    f'timm.create_model({hf_config["architecture"]!r}, pretrained=True, num_classes=N, '
                    f'pretrained_cfg_overlay=dict(file={str(out / "model.safetensors")!r}, num_classes=0))',
            "input": _input_summary(config["input"]), "license": hf_config["pretrained_cfg"]["license"]}


def export_interop(encoder: torch.nn.Module, config: Mapping[str, Any], out: str | Path, format: str,
                   overwrite: bool = False) -> Dict[str, Any]:
    if format == "torchvision":
        return export_torchvision(encoder, config, out, overwrite=overwrite)
    if format == "timm":
        return export_timm(encoder, config, out, overwrite=overwrite)
    check_exportable(config.get("encoder") or {}, config.get("input") or {}, format)  # raises: unknown format
    raise AssertionError(format)  # pragma: no cover


def _input_summary(inp: Mapping[str, Any]) -> Dict[str, Any]:
    """The preprocessing the weights expect: resize the whole image to ``size`` (bilinear), scale to [0, 1],
    normalise with ``mean``/``std``."""
    return {"channels": inp["channels"], "size": list(inp["size"]), "mean": list(inp["mean"]),
            "std": list(inp["std"])}
