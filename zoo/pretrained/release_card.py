"""The card and conversion certificate of a release entry, before and after its file is downloaded.

``zoo.pretrained.releases.install_release`` writes the card of a conversion with ``release_card`` from the
converted folder's config. ``release_card(entry)`` with no config renders the same card from the registry entry
alone, for the repository's ``cards/`` folder (``python -m training cards``): every fact the entry states is
there, and every fact only the downloaded file or the converting machine can give (the file's sha256, the converted
weights' sha256, the keys the conversion drops, the checkpoint's own counters, where the file came from, the
package version and commit that convert it, and the encoder's arguments when the entry does not state them) says
so in words. Nothing here depends on the machine, the time or a path, so those cards are reproducible.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional
from urllib.parse import unquote, urlsplit

from zoo.pretrained.cards import render_card
from zoo.pretrained.download import Digest
from zoo.pretrained.weights_registry import WeightsEntry

AFTER_DOWNLOAD = "known only once the file is downloaded and converted"


def release_where(entry: WeightsEntry) -> str:
    src = entry.source
    return (f"Released by its publisher at {src['url']}; downloaded, checked and converted on this machine into the "
            f"zoo cache by `zoo.load_encoder({entry.name!r})`.")


def release_certificate(entry: WeightsEntry, *, downloaded_from: str, source_sha256: str,
                        package_version: str) -> Dict[str, Any]:
    """The ``conversion`` block of a converted release's config (``model_sha256`` is added once it is written)."""
    src = entry.source
    return {"entry": entry.name, "source_url": src["url"], "downloaded_from": downloaded_from,
            "source_sha256": source_sha256, "publisher_digest": src.get("digest"),
            "publisher_digest_kind": Digest.parse(src["digest"], entry.name).kind if "digest" in src else "none stated",
            "format": src["format"], "cited": src.get("cited"), "package_version": package_version}


def release_reported(entry: WeightsEntry) -> Optional[Dict[str, Any]]:
    """The figure the publisher reports, as the conversion records it."""
    return {k: entry.reported[k] for k in ("metric", "value", "source", "protocol")} if entry.reported else None


def release_card(entry: WeightsEntry, config: Optional[Mapping[str, Any]] = None) -> str:
    """The card of ``entry``'s conversion: from its converted ``config``, or, without one, as it will be."""
    if config is None:
        config = expected_config(entry)
    sha256 = (config.get("conversion") or {}).get("model_sha256") or f"({AFTER_DOWNLOAD})"
    return render_card(config, sha256=sha256, load_id=entry.name, where=release_where(entry))


def expected_config(entry: WeightsEntry) -> Dict[str, Any]:
    """The config a conversion of ``entry`` writes, with what only the file can tell stated as unknown."""
    from zoo.methods import get_method
    from zoo.pretrained.convert import row_augment
    from zoo.pretrained.exported import FORMAT
    from zoo.spec import Part

    row = get_method(entry.method)
    later = f"({AFTER_DOWNLOAD})"
    inputs = dict(entry.input)
    augment: Dict[str, Any] = {k: inputs[k] for k in ("mean", "std", "patch", "overlap") if k in inputs}
    augment["size"] = inputs["size"][0] if len(set(inputs["size"])) == 1 else list(inputs["size"])
    method = row.with_overrides(augment=row_augment(entry.method, entry.dataset, augment),
                                encoder=dict(entry.encoder) or None)
    if not entry.encoder:  # its arguments (depth, width) come from the file's tensors: none of the row's defaults
        method = replace(method, encoder=Part.of(row.encoder.name, arguments=f"read from the file's tensors, "
                                                 f"{AFTER_DOWNLOAD}"))
    encoder = method.encoder.to_dict()
    fmt, basename = entry.source["format"], Path(unquote(urlsplit(entry.source["url"]).path)).name
    return {"format": FORMAT, "name": entry.name, "dataset": entry.dataset, "method": method.to_dict(),
            "encoder": encoder, "num_features": entry.num_features, "input": inputs, "license": entry.license,
            "package_version": later, "git_commit": later,
            "recipe": {"legacy_format": fmt, "legacy_checkpoint": basename, "legacy_hyper_parameters": later,
                       "legacy_dropped": later},
            "training": {"source": f"imported from {fmt} checkpoint {basename}",
                         "checkpoint counters (epoch, global_step)": f"read from the file where it records them, "
                                                                     f"{AFTER_DOWNLOAD}"},
            "metrics": {}, "metric_commands": {}, "reported": release_reported(entry),
            "conversion": release_certificate(entry, downloaded_from=f"the publisher's URL, or ZOO_MIRROR's copy; "
                                              f"{AFTER_DOWNLOAD}", source_sha256=later,
                                              package_version=later)}
