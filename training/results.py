"""Measured downstream results flow into the evaluated entry's model card (and its registry entry).

- an exported folder: ``config.json`` gains the metric and the command, ``README.md`` is re-rendered;
- a registry entry: its ``metrics`` / ``metric_commands`` are updated in the registry file that defines it, and
  for weights shipped in the package the card beside them is re-rendered. Cards inside hub repositories are not
  rewritten (that would be a new revision): the registry records the result and says so.

Each file is replaced atomically (temporary file, then rename); weights and the sha256-checked ``config.json`` of
registry entries are never touched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from training.publish import package_where
from zoo.atomic import atomic_write_text
from zoo.errors import ZooError
from zoo.pretrained.cards import render_card
from zoo.pretrained.exported import CARD, CONFIG, WEIGHTS, read_config
from zoo.pretrained.sources import resolve_source
from zoo.pretrained.weights_registry import open_registry, record_entry


def record_result(spec: str, key: str, value: float, command: Optional[str],
                  registry: Optional[str] = None) -> str:
    """Record ``key`` (``DATASET/PROTOCOL``) = ``value`` for the encoder ``spec``; returns where it went."""
    source = resolve_source(spec, registry=registry)
    value = round(float(value), 4)
    if source.kind == "folder":
        config = read_config(source.folder)
        config.setdefault("metrics", {})[key] = value
        config.setdefault("metric_commands", {})[key] = command or ""
        atomic_write_text(source.folder / CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
        atomic_write_text(source.folder / CARD, render_card(config, load_id=str(source.folder)))
        return f"{source.folder / CARD}"
    if source.entry is None:
        return "not recorded: an hf-hub id without a registry entry has no card we can write"
    entry = source.entry
    reg = open_registry(registry)
    path = reg.origin[entry.name]
    data = entry.to_json()
    data["metrics"][key] = value
    data["metric_commands"][key] = command or ""
    record_entry(path, entry.name, data)
    if entry.kind != "package":
        return f"{path} (registry only: the card in the hub repository is not rewritten)"
    folder = entry.package_folder()
    config = read_config(folder)
    card = render_card({**config, "name": entry.name, "metrics": data["metrics"],
                        "metric_commands": data["metric_commands"]},
                       sha256=entry.sha256[WEIGHTS], load_id=entry.name, where=package_where(entry.name))
    try:
        atomic_write_text(Path(folder) / CARD, card)
    except OSError as err:
        raise ZooError(f"cannot rewrite the card of {entry.name} in {folder}: {err}") from None
    return f"{path} and {Path(folder) / CARD}"
