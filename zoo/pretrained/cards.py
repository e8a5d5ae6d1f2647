"""Model cards: the ``README.md`` of an exported or published folder, rendered from ``card_templates/template.md``.

The front matter is written by ``huggingface_hub.ModelCardData`` (library_name, license, tags, datasets and the
measured metrics as ``model-index``), so the card is a valid Hugging Face model card; the body holds the method's
five-part table, where the weights are, how they were trained and what our own evaluation measured.

Per-entry prose (``card_templates/entries/NAME.md``) describes the run a maintainer shipped under that name, so it
is never chosen by name alone: callers pass it (``shipped_prose``) only for the card of weights shipped inside the
package, and an export or a publish elsewhere that happens to reuse the name gets a card about itself.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any, List, Mapping, Optional

from zoo.errors import ZooError
from zoo.pretrained.licenses import config_license
from zoo.spec import Method

# Hub dataset ids for the datasets our recipes know (cards link them); other names are written as given.
HUB_DATASETS = {"fashion_mnist": ("zalando-datasets/fashion_mnist", "Fashion-MNIST"),
                "cifar10": ("uoft-cs/cifar10", "CIFAR-10"), "stl10": ("tanganke/stl10", "STL-10"),
                "imagenet": ("ILSVRC/imagenet-1k", "ImageNet-1k")}
PROTOCOLS = {"knn": "kNN on frozen features (cosine, exp(sim/t) votes)",
             "linear": "linear probe on frozen features", "finetune": "fine-tuned encoder + linear head",
             "rankme": "label-free, frozen test embeddings", "areq": "label-free, frozen test embeddings"}
#: what a metric key's protocol measures: (model-index task type, metric type, the metric as a card names it);
#: a key's description follows its protocol, so a label-free figure is never called an accuracy
MEASURES = {"rankme": ("image-feature-extraction", "rankme", "RankMe (effective rank; Garrido et al. 2023)"),
            "areq": ("image-feature-extraction", "alpha-req",
                     "alpha-ReQ (covariance spectrum decay exponent; Agrawal et al. 2022)")}
ACCURACY = ("image-classification", "accuracy", "top-1 accuracy")


def measure(protocol: str) -> tuple:
    """(task type, metric type, metric name) of a metric key's protocol: an accuracy unless it is label-free."""
    return MEASURES.get(protocol, ACCURACY)


def template_text(name: str = "template.md") -> Optional[str]:
    """A file shipped with the card templates (``zoo/pretrained/card_templates/``), or None when absent.

    ``name`` is a ``/``-separated path inside that package (``"entries/yadim.fashion_mnist.md"``); it is joined one
    segment at a time, which every importlib.resources reader (folder, zip, wheel) supports.
    """
    path = files("zoo.pretrained.card_templates")
    for segment in name.split("/"):
        path = path.joinpath(segment)
    return path.read_text(encoding="utf-8") if path.is_file() else None


def shipped_prose(name: str, folder: str | Path) -> str:
    """The prose of ``entries/NAME.md`` for a card written into ``folder`` when that folder is inside the installed
    package (only a maintainer ships there), else ``""``: a namesake elsewhere is another run."""
    from zoo.pretrained.weights_registry import inside_package

    return (template_text(f"entries/{name}.md") or "").strip() if inside_package(folder) else ""


def front_matter(config: Mapping[str, Any], method: Method) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    dataset: Any = config.get("dataset")
    hub_id, pretty = HUB_DATASETS.get(dataset, (dataset, dataset))
    results: List[EvalResult] = []
    for key, value in sorted((config.get("metrics") or {}).items()):
        eval_set, _, protocol = key.partition("/")
        eval_id, eval_name = HUB_DATASETS.get(eval_set, (eval_set, eval_set))
        task, metric_type, metric = measure(protocol)
        label = PROTOCOLS.get(protocol, protocol or "accuracy")
        results.append(EvalResult(task_type=task, dataset_type=eval_id, dataset_name=eval_name,
                                  dataset_split="test", metric_type=metric_type, metric_value=float(value),
                                  metric_name=label if metric_type == "accuracy" else f"{metric}, {label}"))
    reported = config.get("reported")
    if isinstance(reported, Mapping) and isinstance(reported.get("value"), (int, float)):
        # the authors' figure, as they state it (often a percentage), attributed to them and marked unverified
        eval_set, _, protocol = str(reported.get("metric", "")).partition("/")
        eval_id, eval_name = HUB_DATASETS.get(eval_set, (eval_set, eval_set))
        results.append(EvalResult(task_type="image-classification", dataset_type=eval_id, dataset_name=eval_name,
                                  metric_type="accuracy", metric_value=reported["value"], verified=False,
                                  metric_name=f"{protocol or 'accuracy'} as reported in {reported.get('source')} "
                                              "(not measured here)"))
    license = config_license(config, required=False) or "other"  # "other": imported, licence not recorded
    data = ModelCardData(library_name="contrastive-zoo", license=license, pipeline_tag="image-feature-extraction",
                         tags=["self-supervised", "contrastive", method.name], datasets=[hub_id] if hub_id else None,
                         model_name=config.get("name") or f"{method.name} encoder", eval_results=results or None)
    return data.to_yaml()


def certificate_lines(config: Mapping[str, Any]) -> str:
    """The provenance of imported weights: the figure their publisher reports and, for a release entry converted
    on the user's machine, its conversion certificate (``zoo.pretrained.releases``)."""
    lines = []
    reported = config.get("reported")
    if isinstance(reported, Mapping):
        protocol = f", {reported['protocol']}" if reported.get("protocol") else ""
        lines.append(f"- reported by the original authors (not measured here): {reported.get('metric')} "
                     f"{reported.get('value')}{protocol} ({reported.get('source')})")
    cert = config.get("conversion")
    if isinstance(cert, Mapping):
        lines += [f"- converted from: {cert.get('source_url')} (downloaded from {cert.get('downloaded_from')})",
                  f"- source file sha256: `{cert.get('source_sha256')}`; publisher's digest: "
                  f"{cert.get('publisher_digest') or 'none stated'} ({cert.get('publisher_digest_kind')})",
                  f"- conversion: format `{cert.get('format')}` by contrastive-zoo {cert.get('package_version')}; "
                  f"layout cited from {cert.get('cited') or 'the format'}"]
        dropped = (config.get("recipe") or {}).get("legacy_dropped") or {}
        listed = dropped if isinstance(dropped, str) else \
            ", ".join(f"`{k}` ({n})" for k, n in sorted(dropped.items())) or "none"  # str: not yet converted
        lines.append(f"- keys dropped: {listed}")
    return "".join(f"\n{line}" for line in lines)


def render_card(config: Mapping[str, Any], sha256: str = "(computed at publish time)",
                load_id: str = "path/to/folder",
                where: str = "A local exported folder; not published to any hub yet.", prose: str = "") -> str:
    """The card of ``config``; ``prose`` is the entry's own section (``shipped_prose``), empty for any other card."""
    template = template_text()
    if template is None:
        raise ZooError("card template zoo/pretrained/card_templates/template.md is not installed with the package")
    method = Method.from_dict(config["method"])
    commands = config.get("metric_commands") or {}
    metric_rows = ["| dataset | protocol | metric | value | command |", "|---|---|---|---|---|"]
    for key, value in sorted((config.get("metrics") or {}).items()):
        dataset, _, protocol = key.partition("/")
        command = f"`{commands[key]}`" if commands.get(key) else "-"
        metric_rows.append(f"| {dataset} (test split) | {PROTOCOLS.get(protocol, protocol or '-')} | "
                           f"{measure(protocol)[2]} | {value:.4f} | {command} |")
    recipe = config.get("recipe") or {}
    lines = [f"- {k}: {v}" for k, v in sorted((config.get("training") or {}).items())]
    lines.append("- recipe (the run's full configuration):\n\n```json\n" + json.dumps(recipe, indent=1, sort_keys=True)
                 + "\n```")
    name = config.get("name") or ""
    text = template.format(
        front_matter=front_matter(config, method).strip(),
        title=name or f"{method.name} encoder",
        summary=method.summary,
        method_name=method.name,
        paper=method.paper,
        prose=prose.strip(),
        where=where,
        load_id=load_id,
        size="x".join(map(str, config["input"]["size"])),
        num_features=config["num_features"],
        five_part_table=method.table(),
        training="\n".join(lines),
        metrics="\n".join(metric_rows) if len(metric_rows) > 2 else "Not measured yet.",
        package_version=config.get("package_version", "?"),
        git_commit=config.get("git_commit") or "unknown",
        sha256=sha256,
        certificate=certificate_lines(config),
    )
    while "\n\n\n" in text:  # an empty section (no prose) leaves no gap
        text = text.replace("\n\n\n", "\n\n")
    return text
