"""``python -m training releases [--json]`` and ``python -m training import-legacy FILE --release NAME``.

``releases`` lists every release entry of the weights registries (the package's, ``ZOO_REGISTRY``'s or
``--registry``'s): name, method, dataset, URL, the kind of digest its publisher states, licence, the top-1 its
publisher reports, the size of the converted weights (the cached file, or counted from the encoder the entry
states) and whether it is in the zoo cache. ``import-legacy`` converts
any released checkpoint into a folder; with ``--release NAME`` it installs a file fetched by hand (offline
machines) into the zoo cache as that entry, after the same digest check a download gets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from zoo.errors import ZooError
from zoo.pretrained.convert import import_legacy
from zoo.pretrained.releases import cache_root, entry_lock, install_release, list_releases, release_folder
from zoo.pretrained.weights_registry import open_registry


def releases(json_output: bool = False, markdown: bool = False, registry: Optional[str] = None) -> str:
    """List the release entries (see the module docstring).

    Args:
        json_output: print JSON (one object per entry) instead of a table.
        markdown: print docs/releases.md's table of release entries (a test holds the page to it).
        registry: a weights registry file to list instead of the package's (and ``ZOO_REGISTRY``'s).
    """
    rows = list_releases(open_registry(registry))
    if json_output:
        return json.dumps(rows, indent=2)
    if markdown:
        return release_markdown(rows)
    return release_table(rows) + f"\n\ncache: {cache_root()} (ZOO_CACHE)"


def release_markdown(rows: List[Dict[str, Any]]) -> str:
    """docs/releases.md's table: name, method, dataset, the top-1 its publisher reports, licence, size of the weights."""
    lines = ["| `zoo.load_encoder(...)` | method | data | reported top-1 | licence | digest | size |",
             "|---|---|---|---:|---|---|---:|"]
    for row in rows:
        name = row["name"] + "".join(f"`, `{a}" for a in row["default_for"])
        size = f"{row['size_bytes'] / 1e6:.0f} MB" if row["size_bytes"] else "?"
        lines.append(f"| `{name}` | {row['method']} | {row['dataset']} | {row['reported_top1']} | {row['license']} | "
                     f"{row['digest']} | {size} |")
    return "\n".join(lines)


def release_table(rows: List[Dict[str, Any]]) -> str:
    header = ["name", "method", "dataset", "reported top-1", "licence", "digest", "size", "cached", "url"]
    lines = [header, ["-" * len(h) for h in header]]
    for row in rows:
        top1 = f"{row['reported_top1']}" if row["reported_top1"] is not None else "-"
        size = f"{row['size_bytes'] / 1e6:.0f} MB" if row["size_bytes"] else "?"
        lines.append([row["name"], row["method"], row["dataset"], top1, row["license"], row["digest"], size,
                      "yes" if row["cached"] else "no", row["url"]])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join([c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)] + [line[-1]])
                     for line in lines)


def import_legacy_command(path: str, *, format: Optional[str] = None, out: Optional[str] = None,
                          name: Optional[str] = None, dataset: Optional[str] = None, method: Optional[str] = None,
                          license: Optional[str] = None, overwrite: bool = False, release: Optional[str] = None,
                          registry: Optional[str] = None) -> str:
    """Convert a released checkpoint into an exported folder, or install it into the zoo cache as a release entry.

    Args:
        path: the checkpoint (read with ``torch.load(weights_only=True)`` only).
        format: its layout (``zoo.pretrained.convert.FORMATS``: moco, swav_fair, vissl, mmselfsup, lightly,
            pl_bolts_simclr, ...); with ``release`` the entry's.
        out: the folder to write; with ``release`` the zoo cache's.
        name: entry name to record in the folder, e.g. ``moco_v2.imagenet_mine``.
        dataset: pre-training dataset, where the checkpoint does not say.
        method: the method row, for frameworks whose checkpoints do not say.
        license: the weights' licence id when it differs from the format's.
        overwrite: replace ``out`` if it exists.
        release: a release entry name (``python -m training releases``): check the file against its publisher's
            digest and install it into the zoo cache, so that ``zoo.load_encoder(release)`` works offline.
        registry: the weights registry holding ``release`` (default: the package's and ``ZOO_REGISTRY``'s).
    """
    if release is None:
        if format is None or out is None:
            raise ZooError("import-legacy needs --format and --out (or --release NAME to install a release entry)")
        return import_legacy(path, format=format, out=out, name=name, dataset=dataset, method=method,
                             license=license, overwrite=overwrite)
    given = {k: v for k, v in dict(format=format, out=out, name=name, dataset=dataset, method=method,
                                   license=license).items() if v is not None}
    if given:
        raise ZooError(f"--release {release} takes its {', '.join(sorted(given))} from the entry; drop "
                       f"{' '.join('--' + k for k in sorted(given))}")
    entry = open_registry(registry).get(release)
    if entry.kind != "release":
        raise ZooError(f"{release} is not a release entry (its weights are {entry.where()}); `python -m training "
                       "releases` lists the release entries")
    file = Path(path)
    if not file.is_file():
        raise ZooError(f"{path} does not exist")
    with entry_lock(entry):
        install_release(entry, file, downloaded_from=f"a local file, {file.name} (import-legacy --release)")
    return str(release_folder(entry))
