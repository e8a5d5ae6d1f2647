"""Exported encoder folders: ``model.safetensors`` + ``config.json`` + ``README.md`` (the Hub layout).

Writing is atomic: the folder is assembled under a temporary name beside the target and renamed into place,
so an interrupted export leaves either the old folder or the new one, never half of one. Loading validates
``config.json`` before building anything, rebuilds the encoder from its registered part, loads the weights with
``strict=True`` and returns the encoder in eval mode. Weights are only ever read from safetensors.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Mapping

import torch
from torch import Tensor

from zoo.atomic import give_umask_modes, temp_dir_beside
from zoo.build import build_encoder
from zoo.errors import ZooError
from zoo.images import image_to_tensor
from zoo.parts.augment import eval_preprocess
from zoo.parts.encoders.base import Encoder
from zoo.spec import Part

FORMAT = "contrastive-zoo/encoder@1"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
MAX_PARAMETERS = 2_000_000_000  # no exported encoder of ours comes near; a larger config is a typo or an attack
_REQUIRED = {"format": str, "encoder": dict, "input": dict, "num_features": int, "method": dict}


def write_exported(out_dir: str | os.PathLike, encoder: Encoder, config: Mapping[str, Any], card: str,
                   overwrite: bool = False) -> Path:
    """Write an exported folder atomically; refuses to replace an existing one unless ``overwrite``."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ZooError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    check_finite(state, f"the encoder to export to {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out)
    try:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (tmp / CARD).write_text(card)
        validate_config(json.loads((tmp / CONFIG).read_text()), source=str(tmp / CONFIG))
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def staging_dir(target: Path) -> Path:
    """A fresh folder beside ``target`` to assemble it in, readable like any folder (``zoo.atomic``)."""
    return temp_dir_beside(target)


def replace_dir(new: Path, target: Path) -> None:
    """Rename the staged folder ``new`` over ``target`` (the old one is kept aside until then), its files given the
    umask's permissions first (``zoo.atomic.give_umask_modes``)."""
    give_umask_modes(new)
    if not target.exists():
        os.rename(new, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def validate_config(config: Any, source: str = CONFIG) -> Dict[str, Any]:
    """Check ``config.json`` before any module is built; raises ZooError naming the bad field."""
    if not isinstance(config, dict):
        raise ZooError(f"{source}: expected a JSON object, got {type(config).__name__}")
    for key, kind in _REQUIRED.items():
        if key not in config:
            raise ZooError(f"{source}: missing required field {key!r}")
        if not isinstance(config[key], kind) or isinstance(config[key], bool):
            raise ZooError(f"{source}: field {key!r} must be {kind.__name__}, got {type(config[key]).__name__}")
    if config["format"] != FORMAT:
        raise ZooError(f"{source}: unsupported format {config['format']!r} (this version reads {FORMAT!r})")
    validate_input(config["input"], source)
    if not 0 < config["num_features"] <= 1 << 20:
        raise ZooError(f"{source}: num_features {config['num_features']} is out of range")
    Part.from_dict(config["encoder"])
    return config


def validate_input(inp: Any, source: str) -> Mapping[str, Any]:
    """Check a config's ``input`` block (what ``EvalTransform`` needs); raises ZooError naming the bad field."""
    if not isinstance(inp, Mapping):
        raise ZooError(f"{source}: input must be a JSON object, got {type(inp).__name__}")
    for key in ("channels", "size", "mean", "std"):
        if key not in inp:
            raise ZooError(f"{source}: input.{key} is missing")
    if not (isinstance(inp["size"], list) and len(inp["size"]) == 2
            and all(isinstance(s, int) and 0 < s <= 4096 for s in inp["size"])):
        raise ZooError(f"{source}: input.size must be [height, width] within 1..4096, got {inp['size']!r}")
    if not isinstance(inp["channels"], int) or not 0 < inp["channels"] <= 64:
        raise ZooError(f"{source}: input.channels must be an int in 1..64, got {inp['channels']!r}")
    for key in ("mean", "std"):
        values = inp[key]
        if not (isinstance(values, list) and len(values) == inp["channels"]
                and all(isinstance(v, (int, float)) for v in values)):
            raise ZooError(f"{source}: input.{key} must be {inp['channels']} numbers, got {values!r}")
    for key in ("patch", "overlap"):
        if key in inp and (not isinstance(inp[key], int) or not 0 <= inp[key] <= 4096):
            raise ZooError(f"{source}: input.{key} must be an int within 0..4096, got {inp[key]!r}")
    return inp


def read_config(folder: str | os.PathLike) -> Dict[str, Any]:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise ZooError(f"{folder} is not an exported encoder folder: {CONFIG} is missing")
    return parse_config(path.read_bytes(), source=str(path))


def parse_config(data: bytes, source: str = CONFIG) -> Dict[str, Any]:
    """``config.json`` bytes -> the validated config (nothing is built before this passes)."""
    try:
        config = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ZooError(f"{source} is not valid JSON: {err}") from None
    return validate_config(config, source=source)


def build_from_config(config: Mapping[str, Any], source: str, on_meta: bool = False) -> Encoder:
    """The encoder architecture a validated config describes, with fresh (random) weights; ``on_meta``: on the
    meta device, allocating nothing, for weights to be assigned."""
    part = Part.from_dict(config["encoder"])
    try:
        with torch.device("meta"):  # count parameters before allocating any: absurd sizes fail here, cheaply
            encoder = build_encoder(part)
        n_params = sum(p.numel() for p in encoder.parameters())
        if n_params > MAX_PARAMETERS:
            raise ZooError(f"{source}: config.json's encoder {config['encoder']} would have {n_params:,} "
                           f"parameters (more than {MAX_PARAMETERS:,}); refusing to build it")
        if not on_meta:
            encoder = build_encoder(part)
    except ZooError:
        raise
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:  # e.g. a size given as a string
        raise ZooError(f"{source}: config.json's encoder {config['encoder']} cannot be built: "
                       f"{type(err).__name__}: {err}") from None
    if encoder.num_features != config["num_features"]:
        raise ZooError(f"{source}: config says num_features={config['num_features']} but the encoder has "
                       f"{encoder.num_features}")
    encoder.zoo_config = dict(config)
    return encoder


def encoder_from_files(config: Mapping[str, Any], weights: bytes, source: str) -> Encoder:
    """Build the encoder of ``config`` and load ``model.safetensors`` bytes into it strictly, in eval mode.

    The architecture is built on the meta device and the weights are assigned to it, so no random initialisation
    is computed only to be overwritten (for a ResNet-50 that is most of the load); an encoder holding buffers the
    file does not carry (non-persistent ones) is built for real instead.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    try:
        state = load_safetensors(weights)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ZooError(f"{source}: {WEIGHTS} is not a readable safetensors file: {err}") from None
    check_finite(state, f"{source}: {WEIGHTS}")
    encoder = build_from_config(config, source, on_meta=True)
    load_state_strict(encoder, state, f"{source}: {WEIGHTS}", assign=True)
    if any(t.is_meta for t in (*encoder.parameters(), *encoder.buffers())):
        encoder = build_from_config(config, source)
        load_state_strict(encoder, state, f"{source}: {WEIGHTS}")
    return encoder.eval()


def check_finite(state: Mapping[str, Tensor], source: str) -> None:
    """Refuse weights holding NaN or infinity (a run that diverged): they would load, and every feature would be
    NaN. ``source`` names the weights in the one-line error."""
    bad = [key for key, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ZooError(f"{source} holds NaN or infinite values (in {', '.join(bad[:3])}{more}): these weights are "
                       "broken, e.g. by a training run that diverged; export them again from a good checkpoint")


def load_exported(folder: str | os.PathLike) -> Encoder:
    """Rebuild and load an exported encoder folder (strict), in eval mode, with its config as ``zoo_config``."""
    config = read_config(folder)
    weights = Path(folder) / WEIGHTS
    if not weights.is_file():
        raise ZooError(f"{folder} has no {WEIGHTS}")
    return encoder_from_files(config, weights.read_bytes(), str(folder))


def load_state_strict(module: torch.nn.Module, state: Mapping[str, Tensor], source: str, assign: bool = False) -> None:
    """``load_state_dict(strict=True)`` with one readable error for missing, unexpected or mis-shaped keys
    (``assign``: the tensors become the module's, as for a module built on the meta device)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    shapes += [f"{k}: dtype {state[k].dtype} vs {v.dtype}" for k, v in own.items()
               if k in state and state[k].is_floating_point() != v.is_floating_point()]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append(f"wrong shapes {shapes[:3]}")
        raise ZooError(f"{source} does not match the encoder (strict load): {'; '.join(parts)}")
    module.load_state_dict(state, strict=True, assign=assign)


class EvalTransform:
    """The eval preprocessing of an exported encoder: resize to its input size and normalise (and cut into the
    training patch grid for patch-based methods such as CPC; the encoder then averages over the grid).

    A torchvision-style transform: it takes a PIL image of any mode (16-bit included, scaled and converted to the
    encoder's grey or RGB channels by ``zoo.images.image_to_tensor``), a (C, H, W) tensor, or a (B, C, H, W)
    batch, uint8 or float in [0, 1], and returns float tensors of the same rank, so it can be passed as
    ``transform=`` to any torchvision dataset or applied to whole batches.
    """

    def __init__(self, config: Mapping[str, Any], source: str = "eval_transform's config") -> None:
        inp = validate_input(config.get("input"), source)
        self.channels, self.size = inp["channels"], tuple(inp["size"])
        self.mean, self.std = tuple(inp["mean"]), tuple(inp["std"])
        self.patch, self.overlap = inp.get("patch"), inp.get("overlap", 0)

    def __call__(self, images: Any) -> Tensor:
        if not isinstance(images, Tensor):
            images = self._from_pil(images)
        single = images.dim() == 3
        batch = images.unsqueeze(0) if single else images
        out = eval_preprocess(batch, self.size, self.mean, self.std, channels=self.channels, patch=self.patch,
                              overlap=self.overlap)
        return out[0] if single else out

    def _from_pil(self, image: Any) -> Tensor:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow comes with torchvision
            Image = None  # type: ignore[assignment]  # (only the isinstance check below needs it)
        if Image is None or not isinstance(image, Image.Image):
            raise ZooError(f"expected a PIL image or a tensor, got {type(image).__name__}")
        return image_to_tensor(image, 1 if self.channels == 1 else 3)

    def __repr__(self) -> str:
        grid = f", patch={self.patch}, overlap={self.overlap}" if self.patch else ""
        return f"EvalTransform(size={self.size}, mean={self.mean}, std={self.std}{grid})"
