"""Import encoders from released checkpoints of other projects as zoo exported folders (``import-legacy``).

One format per released layout (``FORMATS``), each in the module of its family, each citing the original loading
code its layout follows: ``pl_bolts`` (pl_bolts_simclr / swav / cpc / moco / byol), ``fair`` (swav_fair, moco,
vissl), ``converted`` (simclr_v1, simclr_v2, byol: PyTorch conversions of TF/JAX releases) and ``frameworks``
(solo_learn, lightly, mmselfsup). A new family is one module registering its formats (``register_format``; a new
trunk layout with ``register_trunk``) and one line in ``_FAMILIES`` below.

An import reads the file with ``torch.load(weights_only=True)`` only, maps every trunk key exactly once onto a zoo
encoder, drops the other keys by name (heads, momentum encoders, queues, online classifiers: listed in the
config's ``recipe.legacy_dropped``), refuses anything else, loads strictly and writes the folder atomically. The
config records the input the original expects (``zoo.eval_transform`` follows it), the release's ``license``,
``imported_from`` (file name, sha256, format, the original code) and, apart from our measured ``metrics``,
``reported``: the accuracy the release's authors state (known files default it; ``reported=`` gives it).
Depth and width come from the tensors; BN counters (``num_batches_tracked``) older checkpoints lack are 0.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from zoo.build import build_encoder
from zoo.errors import ZooError
from zoo.methods import get_method, list_methods
from zoo.pretrained.convert.formats import FORMATS, TRUNKS, LegacyFormat, Reported, register_format, register_trunk
from zoo.pretrained.convert.reading import imported_training, plain, read_legacy, sha256_of, split_keys
from zoo.pretrained.export_folder import write_export
from zoo.pretrained.exported import load_state_strict
from zoo.pretrained.licenses import check_license

__all__ = ["FORMATS", "TRUNKS", "LegacyFormat", "Reported", "import_legacy", "read_legacy", "register_format",
           "register_trunk"]

_FAMILIES = ("resnet_trunk", "pl_bolts", "fair", "converted", "frameworks", "amdim")
for _family in _FAMILIES:
    importlib.import_module(f"zoo.pretrained.convert.{_family}")

# input presets per dataset: (mean, std, size), pl_bolts' dataset_normalizations.py
PRESETS: Dict[str, Tuple[Any, Any, int]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 224),
    "cifar10": ((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255), 32),
    "stl10": ((0.43, 0.42, 0.39), (0.27, 0.26, 0.27), 96)}
_ALIASES = {"imagenet2012": "imagenet", "imagenet1k": "imagenet", "imagenet128": "imagenet", "cifar": "cifar10"}


def import_legacy(path: str, *, format: str, out: str, name: Optional[str] = None, dataset: Optional[str] = None,
                  method: Optional[str] = None, license: Optional[str] = None,
                  reported: Optional[Dict[str, Any]] = None, overwrite: bool = False,
                  certificate: Optional[Mapping[str, Any]] = None, where: Optional[str] = None,
                  expect_encoder: Optional[Mapping[str, Any]] = None, expect_features: Optional[int] = None) -> str:
    """Convert a released checkpoint's encoder into an exported folder loadable by ``zoo.load_encoder(out)``.

    Args:
        path: the checkpoint (read with ``torch.load(weights_only=True)`` only).
        format: its layout, one of ``FORMATS`` (e.g. moco, simclr_v1, simclr_v2, byol, solo_learn, lightly, vissl,
            mmselfsup, swav_fair, pl_bolts_simclr, pl_bolts_swav, pl_bolts_cpc, pl_bolts_moco, pl_bolts_byol).
        out: folder to create (written atomically).
        name: entry name to record, e.g. ``moco_v2.imagenet_fair``.
        dataset: pre-training dataset (``imagenet``, ``cifar10``, ``stl10``... pick the input preset where the
            release does not fix it); default: the checkpoint's hyper-parameters, else inferred from the stem.
        method: the method row, for frameworks whose checkpoints do not say (solo_learn, lightly, vissl, mmselfsup).
        license: the weights' licence id when it differs from the format's (the release's repository licence).
        reported: the accuracy the release's authors state, ``{"metric": ..., "value": ..., "source": ...}``
            (and optionally ``"protocol"``); known file names of a format default it.
        overwrite: replace ``out`` if it exists.
        certificate: a release entry's conversion certificate (``zoo.pretrained.releases``), kept in the config as
            ``conversion`` and shown on the card.
        where: the card's "where the weights are" text.
        expect_encoder, expect_features: what a release entry says the file holds; a file that converts into
            another encoder is refused (a wrong URL or a changed file).
    """
    fmt = FORMATS.get_format(format)
    file = Path(path)
    safe_route = str(fmt.options.get("safe_route", ""))
    if file.suffix.lower() in fmt.options.get("refused_suffixes", ()):
        raise ZooError(f"{format}: {file.name} is not a PyTorch state dict and is not read here{safe_route}")
    ckpt = read_legacy(file, safe_route)
    state, hparams = fmt.unwrap(ckpt, str(file), fmt.name)
    if fmt.check is not None:
        fmt.check(state, file.name)
    inner, dropped = split_keys(state, fmt, str(file))
    trunk = TRUNKS[fmt.kind].convert(inner, fmt, hparams)
    facts = fmt.options["hparams"](hparams) if "hparams" in fmt.options else hparams
    dataset, preset, augment = _input(fmt, trunk.preset, trunk.grid, dataset, facts)
    row = _method(fmt, method, facts)
    spec = get_method(row).with_overrides(augment=row_augment(row, preset, augment), encoder=trunk.part.to_dict())
    if expect_encoder is not None and dict(expect_encoder) != trunk.part.to_dict():
        raise ZooError(f"{file.name} holds the encoder {trunk.part.to_dict()}, but its release entry states "
                       f"{dict(expect_encoder)}")
    encoder = build_encoder(spec.encoder)
    weights = dict(trunk.state)
    for key, value in encoder.state_dict().items():  # counters older checkpoints lack; unused at evaluation
        if key.endswith("num_batches_tracked") and key not in weights:
            weights[key] = torch.zeros_like(value)
    load_state_strict(encoder, weights, f"{file.name} ({format} encoder weights)")
    if expect_features is not None and encoder.num_features != expect_features:
        raise ZooError(f"{file.name} gives {encoder.num_features} features, but its release entry states "
                       f"{expect_features}")
    if license is None and fmt.license is None:
        raise ZooError(f"{format}: files in this format carry different licences ({fmt.options.get('license_why')}); "
                       f"name this file's with license= (--license)")
    license = check_license(license or fmt.license, f"{format} license")
    source_sha256 = certificate["source_sha256"] if certificate else sha256_of(file)  # a release's is checked
    extra = {"imported_from": {"file": file.name, "sha256": source_sha256, "format": format,
                               "layout_from": fmt.source},
             "reported": _reported(fmt, file.name, reported)}
    if certificate is not None:
        extra["conversion"] = dict(certificate)
    where = where or (f"Imported from a legacy {format} checkpoint ({file.name}) into a local exported folder; "
                      "not published to any hub yet.")
    if trunk.unused:
        dropped = {**dropped, "never applied by the original": len(trunk.unused)}
    recipe = {"legacy_format": format, "legacy_checkpoint": file.name, "legacy_hyper_parameters": plain(hparams),
              "legacy_dropped": dropped}
    folder = write_export(out, spec, encoder, name=name, dataset=dataset, where=where, overwrite=overwrite,
                          recipe=recipe, training=imported_training(format, file.name, ckpt), license=license,
                          extra=extra)
    return str(folder)


def row_augment(row: str, preset: str, augment: Dict[str, Any]) -> Dict[str, Any]:
    """The augment overrides of an import: the input ones (``_input``) and, for SwAV, its small crops: 96 px of 224
    on ImageNet, 36 of 96 on STL-10 (pl_bolts' recipes). A release entry's card states them before any download."""
    if row == "swav":
        augment = {**augment, "small_size": {"imagenet": 96, "stl10": 36}.get(
            preset, max(8, round(augment["size"] * 96 / 224)))}
    return augment


def _input(fmt: LegacyFormat, inferred: str, grid: Optional[Tuple[int, int]], dataset: Optional[str],
           facts: Mapping[str, Any]) -> Tuple[str, str, Dict[str, Any]]:
    """The dataset name to record, its input preset, and the augment overrides fixing the input (size, mean, std,
    patch grid)."""
    presets = fmt.options.get("norms") or PRESETS
    named = [d for d in (dataset, facts.get("dataset")) if isinstance(d, str) and d]
    given = _ALIASES.get(named[0].lower(), named[0].lower()) if named else inferred
    preset = given if given in presets else inferred  # an unknown dataset name keeps the stem's input preset
    mean, std, size = presets[preset]
    if fmt.preprocess is not None:  # the release fixes its input statistics
        mean, std, size = fmt.preprocess.mean, fmt.preprocess.std, fmt.preprocess.size or size
    if grid is not None:  # a 7x7 grid of patches for CPC, as pl_bolts trains it
        size = grid[0] + 6 * (grid[0] - grid[1])
    augment: Dict[str, Any] = {"size": size, "mean": list(mean), "std": list(std)}
    augment.update({} if grid is None else {"patch": grid[0], "overlap": grid[1]})
    return (given if given in presets else named[0]), preset, augment


def _method(fmt: LegacyFormat, method: Optional[str], facts: Mapping[str, Any]) -> str:
    """The method row: the format's, else the caller's, else the one the checkpoint names."""
    if fmt.method is not None:
        if method is not None and method != fmt.method:
            raise ZooError(f"{fmt.name} checkpoints are {fmt.method!r} weights; method={method!r} contradicts that")
        return fmt.method
    if method is not None:
        return method
    named = facts.get("method")
    known = fmt.options.get("method_names", {})
    if isinstance(named, str) and named in known:
        return known[named]
    said = f"it names method {named!r}, which has no row here; " if isinstance(named, str) else ""
    raise ZooError(f"{fmt.name}: the checkpoint does not say which method trained it ({said}pass method=, one of "
                   f"{list_methods()})")


def _reported(fmt: LegacyFormat, basename: str, given: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    if given is None:
        known = fmt.reported.get(basename)
        return known.to_config() if known is not None else None
    keys = set(given) if isinstance(given, Mapping) else set()
    if not {"metric", "value", "source"} <= keys or keys - {"metric", "value", "source", "protocol"} \
            or not isinstance(given["value"], (int, float)) or isinstance(given["value"], bool):
        raise ZooError(f"reported must be {{'metric': str, 'value': number, 'source': str}} and optionally "
                       f"'protocol' (the figure the release's authors state, how, and where), got {given!r}")
    assert isinstance(given, Mapping)
    config = Reported(str(given["metric"]), float(given["value"]), str(given["source"])).to_config()
    return {**config, "protocol": str(given["protocol"])} if "protocol" in given else config
