"""The zoo's front door: ``load_encoder``, ``list_encoders``, ``get_card`` and ``eval_transform``.

``load_encoder("yadim")`` returns the default pretrained YADIM encoder named by the weights registry;
``load_encoder("yadim.fashion_mnist")`` a specific entry; ``load_encoder("hf-hub:ORG/NAME@REV")`` any Hub repo
holding an exported folder; ``load_encoder("path/to/folder")`` a local export. Registry files are checked
against their sha256 before parsing, the config is validated before anything is built, weights come only from
safetensors and are loaded strictly. Nothing ever falls back to random weights: ``pretrained=False`` is the one
explicit way to get the architecture untrained.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, List, Optional

from zoo.errors import ZooError
from zoo.parts.encoders.base import Encoder
from zoo.pretrained.exported import (
    CARD,
    CONFIG,
    WEIGHTS,
    EvalTransform,
    build_from_config,
    encoder_from_files,
    parse_config,
)
from zoo.pretrained.releases import release_config, release_input
from zoo.pretrained.sources import Source, resolve_source
from zoo.pretrained.weights_registry import open_registry


def load_encoder(name_or_id: str | os.PathLike, pretrained: bool = True, revision: Optional[str] = None,
                 registry: Optional[str | os.PathLike] = None, progress: Optional[bool] = None) -> Encoder:
    """A pretrained encoder in eval mode; ``encoder(x)`` gives (B, ``encoder.num_features``).

    Args:
        name_or_id: a registry name (``"yadim"``, ``"yadim.fashion_mnist"``; see ``list_encoders()``),
            ``"hf-hub:ORG/NAME"`` or ``"hf-hub:ORG/NAME@REVISION"``, or an exported folder.
        pretrained: ``False`` builds the same architecture with random weights (nothing is downloaded but the
            config); the result's ``zoo_source["pretrained"]`` says which one you have.
        revision: a branch, tag or commit sha for ``hf-hub:`` ids (registry entries are pinned).
        registry: a weights registry file to use instead of the package registry (and ``ZOO_REGISTRY``).
        progress: the download bar of a release entry's first load (on stderr): ``None`` shows it only on a
            terminal (and not under ``ZOO_QUIET=1``), ``False`` never.

    A release entry (``python -m training releases`` lists them; e.g. ``"moco_v2.imagenet"``) is downloaded from its
    publisher on first use, checked against the publisher's digest, converted and cached
    (``zoo.pretrained.releases``); later loads read only the cache.

    The encoder carries ``zoo_config`` (its config.json) and ``zoo_source`` (where it came from, its sha256).
    """
    source = resolve_source(name_or_id, revision=revision, registry=registry, progress=progress)
    if not pretrained and source.kind == "release":  # the architecture the entry states: nothing is downloaded
        assert source.entry is not None, "release sources have an entry"
        encoder = build_from_config(release_config(source.entry), source.label).eval()
        encoder.zoo_source = {**source.describe(), "pretrained": False, "sha256": None}
        return encoder
    config = parse_config(source.read(CONFIG), source=f"{source.label}: {CONFIG}")
    if not pretrained:
        encoder = build_from_config(config, source.label).eval()
        encoder.zoo_source = {**source.describe(), "pretrained": False, "sha256": None}
        return encoder
    weights = source.read(WEIGHTS)
    encoder = encoder_from_files(config, weights, source.label)
    sha256 = source.checked.get(WEIGHTS) or hashlib.sha256(weights).hexdigest()  # hashed once per load
    encoder.zoo_source = {**source.describe(), "pretrained": True, "sha256": sha256}
    return encoder


def list_encoders(pattern: str = "*", registry: Optional[str | os.PathLike] = None) -> List[str]:
    """Registry names (entries and per-method default aliases) matching a glob ``pattern``."""
    return open_registry(registry).list(pattern)


def get_card(name_or_id: str | os.PathLike, revision: Optional[str] = None,
             registry: Optional[str | os.PathLike] = None) -> str:
    """The model card (``README.md``, a Hugging Face model card) of a registry entry, Hub repo or folder."""
    source = resolve_source(name_or_id, revision=revision, registry=registry)
    try:
        return source.read(CARD, verify=False).decode("utf-8")
    except UnicodeDecodeError as err:
        raise ZooError(f"{source.label}: {CARD} is not UTF-8 text (byte {err.start} cannot be decoded), so it is "
                       "not a model card; the file is damaged: publish or export it again") from None


def eval_transform(name_or_encoder: Any, registry: Optional[str | os.PathLike] = None) -> EvalTransform:
    """The eval preprocessing (resize to the input size, normalise; patch grid for CPC) of an encoder from
    ``load_encoder``, of a registry name (no download: the registry records the input), of a ``hf-hub:`` id or
    folder, or of a config dict. Usable as a torchvision ``transform=`` and on whole batches."""
    config = getattr(name_or_encoder, "zoo_config", name_or_encoder)
    if isinstance(config, dict):
        if "input" not in config:
            raise ZooError("eval_transform needs an encoder from load_encoder, a name, or config.json contents")
        return EvalTransform(config)
    if isinstance(name_or_encoder, (str, os.PathLike)):
        source: Source = resolve_source(name_or_encoder, registry=registry)
        if source.entry is not None and source.kind == "release":  # the conversion's input once it exists
            return EvalTransform(release_input(source.entry), source=f"{source.label}: input")
        if source.entry is not None:
            return EvalTransform({"input": source.entry.input}, source=f"weights registry entry {source.entry.name}")
        return EvalTransform(parse_config(source.read(CONFIG), source=f"{source.label}: {CONFIG}"))
    raise ZooError(f"eval_transform needs an encoder from load_encoder, a name or a config, got "
                   f"{type(name_or_encoder).__name__}")
