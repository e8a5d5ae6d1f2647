"""Record a measured downstream result, only where told, all files together or none.

``python -m training evaluate --record PATH`` comes here. ``PATH`` is

- a weights registry file that defines the evaluated entry: its ``metrics`` / ``metric_commands`` are updated and,
  for weights stored beside that registry (``package`` entries), the card next to them is re-rendered. Cards
  inside hub repositories are not rewritten (that would be a new revision): the registry records the result and
  says so;
- or the exported folder that is the evaluated encoder: its ``config.json`` gains the metric, ``README.md`` is
  re-rendered.

Nothing is written into the installed package (``zoo/_weights``) unless a maintainer asks (``maintainer``, or
``ZOO_MAINTAINER=1``), and an entry's card is only rewritten inside its registry's folder (the registry refuses
entries whose ``folder`` leads elsewhere, ``zoo.pretrained.weights_registry``). The
files of one record are written to temporary files first and then renamed one after the other; if a rename
fails, the files already replaced are restored, so the registry entry and the card change together or not at
all. Weights and the sha256-checked ``config.json`` of registry entries are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from filelock import FileLock

from training.release.publish import package_where
from zoo.atomic import probe_writable, temp_file_beside
from zoo.errors import ZooError
from zoo.pretrained.cards import render_card, shipped_prose
from zoo.pretrained.exported import CARD, CONFIG, WEIGHTS, read_config
from zoo.pretrained.sources import resolve_source
from zoo.pretrained.weights_registry import check_package_write, check_writable, open_registry, record_entry


def check_record_target(record: str, maintainer: bool = False) -> Path:
    """``record`` as a path, refused (one ZooError line) when it is missing, cannot be written, or is inside the
    installed package without ``maintainer``: checked before an evaluation, so that none runs for nothing."""
    path = Path(record).expanduser()
    if not path.exists():
        raise ZooError(f"--record {record}: no such registry file or exported folder")
    path = check_package_write(path, "--record", maintainer)
    if path.is_file():
        check_writable(path)
    else:  # an exported folder: its config and card are replaced through temporary files beside them
        try:
            probe_writable(path)
        except OSError as err:
            raise ZooError(f"--record {record}: cannot write in {path} ({err.strerror}); nothing was evaluated") \
                from None
    return path


def record_result(spec: str, key: str, value: float, command: Optional[str], *, record: str,
                  registry: Optional[str] = None, maintainer: bool = False) -> str:
    """Record ``key`` (``DATASET/PROTOCOL``) = ``value`` for the encoder ``spec`` into ``record``; returns where."""
    target = check_record_target(record, maintainer)
    value, command = round(float(value), 4), command or ""
    source = resolve_source(spec, registry=registry)
    folder = source.folder if source.kind == "folder" else None  # a folder source always has its folder
    if folder is not None:
        if not target.is_dir() or target.resolve() != Path(folder).resolve():
            raise ZooError(f"{spec} is an exported folder: --record must be that folder, not {record}")
        config = read_config(folder)
        config.setdefault("metrics", {})[key] = value
        config.setdefault("metric_commands", {})[key] = command
        card = render_card(config, load_id=str(folder))
        replace_together([(folder / CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n"),
                          (folder / CARD, card)], where=record)
        return f"{folder / CARD}"
    if source.entry is None:
        raise ZooError(f"{spec} has no registry entry nor exported folder to record into")
    if not target.is_file():
        raise ZooError(f"--record {record}: {spec} is a registry entry; record into the registry file defining it")
    reg = open_registry(target)
    if source.entry.name not in reg.entries:
        raise ZooError(f"--record {record} does not define the entry {source.entry.name!r}")
    entry = reg.entries[source.entry.name]
    data = entry.to_json()
    data["metrics"][key] = value
    data["metric_commands"][key] = command
    with FileLock(str(target.with_name(f".{target.name}.lock")), timeout=60):  # as publishers lock it
        files = [(target, updated_registry_text(target, entry.name, data))]
        files += package_card(entry, data, target, maintainer)
        replace_together(files, where=record)
    if entry.kind != "package":
        return f"{target} (registry only: the card in the hub repository is not rewritten)"
    return f"{target} and {files[1][0]}"


def package_card(entry, data: Dict, registry: Path, maintainer: bool) -> List[Tuple[Path, str]]:
    """``[(card path, re-rendered card)]`` for weights stored beside their registry, else ``[]``."""
    if entry.kind != "package":
        return []
    folder = check_package_write(Path(entry.package_folder()), f"the card of {entry.name}:", maintainer)
    config = read_config(folder)
    return [(folder / CARD, render_card(
        {**config, "name": entry.name, "metrics": data["metrics"], "metric_commands": data["metric_commands"]},
        sha256=entry.sha256[WEIGHTS], load_id=entry.name, where=package_where(entry.name, registry),
        prose=shipped_prose(entry.name, folder)))]


def updated_registry_text(path: Path, name: str, data: Dict) -> str:
    """The registry file's text with ``name`` set to ``data``: ``record_entry`` (validation, sorting, defaults)
    run on a scratch copy beside it, so the real file is untouched until ``replace_together``."""
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as scratch:
        copy = Path(scratch) / path.name
        shutil.copyfile(path, copy)
        record_entry(copy, name, data)
        return copy.read_text()


def replace_together(files: List[Tuple[Path, str]], where: str = "") -> None:
    """Replace each ``(path, text)`` so that either all of them change or none does; an OS error (disk full,
    permissions) becomes one ZooError line saying that nothing was changed.

    Every new text is written and fsynced to a temporary file beside its target and every old file is copied
    aside first; then the temporaries are renamed over the targets in order. If any step fails, the targets
    already replaced get their old contents back and every temporary is removed.
    """
    staged: List[Tuple[Path, str, Optional[str]]] = []
    replaced: List[Tuple[Path, Optional[str]]] = []
    try:
        for path, text in files:
            temp = _temp_beside(path, text)
            staged.append((path, temp, None))
            if path.exists():
                shutil.copymode(path, temp)  # the new file keeps the old one's permissions
                aside = _temp_beside(path, None)
                staged[-1] = (path, temp, aside)
                shutil.copy2(path, aside)
        for path, new, old in staged:
            os.replace(new, path)
            replaced.append((path, old))
    except BaseException as err:
        for path, old in reversed(replaced):
            if old is not None:
                os.replace(old, path)
            else:
                path.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise ZooError(f"could not record into {where or files[0][0]}: {err}; nothing was changed") from None
        raise
    finally:
        for _, new, old in staged:
            for leftover in (new, old):
                if leftover is not None:
                    Path(leftover).unlink(missing_ok=True)


def _temp_beside(path: Path, text: Optional[str]) -> str:
    fd, tmp = temp_file_beside(path)
    with os.fdopen(fd, "w") as handle:
        if text is not None:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    return tmp
