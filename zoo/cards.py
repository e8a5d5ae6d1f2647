"""Model cards: the ``README.md`` of an exported folder, rendered from ``cards/template.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from zoo.errors import ZooError
from zoo.spec import Method


def template_text(name: str = "template.md") -> str:
    """Read a card template shipped with the package (``cards/`` in the source tree)."""
    try:
        from importlib.resources import files

        return (files("zoo._cards") / name).read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        local = Path(__file__).resolve().parents[1] / "cards" / name
        if local.is_file():
            return local.read_text()
        raise ZooError(f"card template {name} is not installed with the package") from None


def render_card(config: Mapping[str, Any], sha256: str = "(computed at publish time)",
                load_id: str = "path/to/folder") -> str:
    method = Method.from_dict(config["method"])
    metrics = config.get("metrics") or {}
    metric_rows = ["| dataset | protocol | metric | value |", "|---|---|---|---|"]
    for key, value in sorted(metrics.items()):
        dataset, _, protocol = key.partition("/")
        metric_rows.append(f"| {dataset} | {protocol or '-'} | accuracy | {value:.4f} |")
    recipe = config.get("recipe") or {}
    training = config.get("training") or {}
    lines = [f"- {k}: {v}" for k, v in sorted(training.items())]
    lines.append("- recipe (the run's full configuration):\n\n```json\n" + json.dumps(recipe, indent=1, sort_keys=True)
                 + "\n```")
    front = {
        "library_name": "contrastive-zoo",
        "license": "apache-2.0",
        "tags": ["self-supervised", "contrastive", method.name, "image-feature-extraction"],
    }
    if config.get("dataset"):
        front["datasets"] = [config["dataset"]]
    front_matter = "\n".join(f"{k}: {json.dumps(v)}" for k, v in front.items())
    return template_text().format(
        front_matter=front_matter,
        title=config.get("name") or f"{method.name} encoder",
        summary=method.summary,
        method_name=method.name,
        paper=method.paper,
        load_id=load_id,
        size="x".join(map(str, config["input"]["size"])),
        num_features=config["num_features"],
        five_part_table=method.table(),
        training="\n".join(lines),
        metrics="\n".join(metric_rows) if len(metric_rows) > 2 else "Not measured yet.",
        package_version=config.get("package_version", "?"),
        git_commit=config.get("git_commit") or "unknown",
        sha256=sha256,
    )


