"""The exported folder of an encoder: its ``config.json`` and card built from the method row, written atomically.

One builder for every way an encoder becomes a folder: an export of our own training checkpoint
(``training.release.export``), an import of another project's release (``zoo.pretrained.convert``) and a release
entry converted into the cache on first load (``zoo.pretrained.releases``). It imports nothing from ``training``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from zoo.errors import ZooError
from zoo.pretrained.cards import render_card
from zoo.pretrained.exported import FORMAT, load_exported, write_exported
from zoo.pretrained.weights_registry import check_entry_name, check_package_write


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def exported_config(method: Any, encoder: Any, *, name: Optional[str], dataset: Optional[str],
                    recipe: Mapping[str, Any], training: Mapping[str, Any],
                    metrics: Optional[Mapping[str, float]] = None,
                    metric_commands: Optional[Mapping[str, str]] = None,
                    license: Optional[str] = None, extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The ``config.json`` of an exported folder, the one builder for trained and imported (legacy) encoders.

    ``license``: the weights' licence; weights imported with a legacy format (``recipe["legacy_format"]``) default to
    their format's (``zoo.pretrained.convert.FORMATS``), weights we trained to the project's (``zoo.pretrained.licenses``).

    The input block comes from the method's augmentation: its size (an int or [h, w]), normalisation (one
    channel's statistics replicated for a grey dataset fed to a 3-channel trunk) and, for patch-grid methods
    (CPC), the patch grid evaluation encodes and averages over. ``extra`` adds top-level fields that no builder
    field covers (an import's ``license``, ``imported_from`` and ``reported``); it cannot replace one. ``name``,
    when given, must be a weights entry name (``check_entry_name``): publishing makes it a folder name.
    """
    if name is not None:
        check_entry_name(name, "--name")
    aug = method.augment.kwargs
    size = aug["size"] if isinstance(aug["size"], (list, tuple)) else [aug["size"], aug["size"]]
    channels = int(encoder.in_channels)
    mean, std = [float(m) for m in aug["mean"]], [float(s) for s in aug["std"]]
    if len(mean) != channels:
        mean, std = mean[:1] * channels, std[:1] * channels
    config: Dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "dataset": dataset,
        "method": method.to_dict(),
        "encoder": method.encoder.to_dict(),
        "num_features": int(encoder.num_features),
        "input": {"channels": channels, "size": [int(s) for s in size], "mean": mean, "std": std},
        "package_version": package_version(),
        "git_commit": git_commit(),
        "recipe": dict(recipe),
        "training": dict(training),
        "metrics": dict(metrics or {}),
        "metric_commands": dict(metric_commands or {}),
    }
    if "patch" in aug:
        config["input"].update(patch=int(aug["patch"]), overlap=int(aug.get("overlap", 0)))
    legacy_format = recipe.get("legacy_format")
    if license is None and isinstance(legacy_format, str):
        from zoo.pretrained.convert.formats import FORMATS

        known = FORMATS.get(legacy_format)
        license = known.license if known is not None else None
    if license is not None:
        config["license"] = license
    clash = sorted(set(extra or {}) & set(config))
    if clash:
        raise ZooError(f"extra config fields {clash} would replace the exported config's own")
    config.update(extra or {})
    return config


def write_export(out: str | Path, method: Any, encoder: Any, *, name: Optional[str], dataset: Optional[str],
                 recipe: Mapping[str, Any], training: Mapping[str, Any],
                 metrics: Optional[Mapping[str, float]] = None, metric_commands: Optional[Mapping[str, str]] = None,
                 where: Optional[str] = None, overwrite: bool = False, license: Optional[str] = None,
                 extra: Optional[Mapping[str, Any]] = None) -> Path:
    """Build the config (``exported_config``) and card, write the folder atomically (``zoo.pretrained.exported.write_exported``:
    staged beside ``out``, validated, then renamed) and check that it loads back strictly. ``out`` inside the
    installed package is refused unless ``ZOO_MAINTAINER=1`` (the package is read-only unless asked)."""
    check_package_write(out, "--out")
    config = exported_config(method, encoder, name=name, dataset=dataset, recipe=recipe, training=training,
                             metrics=metrics, metric_commands=metric_commands, license=license, extra=extra)
    card = render_card(config, load_id=str(out), **({"where": where} if where else {}))
    folder = write_exported(out, encoder, config, card, overwrite=overwrite)
    load_exported(folder)  # the written folder must load back strictly
    return folder


def package_version() -> str:
    from zoo.version import __version__

    return __version__
