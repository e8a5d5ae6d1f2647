"""``python -m training publish FOLDER``: publish an exported encoder and record it in a weights registry.

Three destinations, one command:

- ``--repo-id ORG/NAME``: the Hugging Face Hub through ``huggingface_hub.HfApi`` (``create_repo`` then
  ``upload_folder``); endpoint and token come from the usual ``HF_ENDPOINT`` / ``HF_TOKEN`` variables.
- ``--repo-id ORG/NAME --to DIR``: a local directory hub (``zoo.pretrained.local_hub``: one git repository per
  model, in the Hub layout) for air-gapped teams; olah can serve ``DIR`` to any Hugging Face client. ``DIR`` is
  inside the registry's folder, which records it relative to itself.
- ``--package``: copy into the folder beside the registry (``REGISTRY_FOLDER/NAME``); with the package's own
  registry, that ships the weights with the zoo (``zoo/_weights/NAME``).

``--registry FILE`` names the registry to record into: publish never writes into the installed package (its
registry, its shipped weights, new or replaced) unless a maintainer asks with ``--maintainer true`` or
``ZOO_MAINTAINER=1`` (``training.ship_weights`` does).

Everything is checked before anything is written: the folder is loaded strictly (a broken export is never
published), the entry name (``--name`` or the one recorded at export) is a single folder name, the hub root is
inside the registry's folder, the entry is valid and the registry can be written. Then the weights go to their
destination, the card re-rendered to say where they now are and their sha256, and the registry entry (name,
source, pinned revision, sha256 of each loaded file, method, dataset, licence, metrics, training facts) is written
atomically. If that last write fails, the publish is undone where it can be (the old package folder put back, the
local hub's branch moved back) and the one error line says so; the Hub has no undo, so the line names the commit it
keeps. An entry whose licence forbids commercial use (``cc-by-nc-*``, e.g. MoCo's and SwAV's releases) is
published with a one-line warning on stderr naming the entry and the licence.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from zoo.errors import ZooError, first_line
from zoo.pretrained import local_hub, weights_registry
from zoo.pretrained.cards import render_card, shipped_prose
from zoo.pretrained.exported import CARD, CONFIG, WEIGHTS, load_exported, read_config, staging_dir
from zoo.pretrained.licenses import config_license, non_commercial_warning
from zoo.pretrained.sources import hub_transport_errors, hub_unreachable
from zoo.pretrained.weights_registry import (
    WeightsEntry,
    check_entry,
    check_entry_name,
    check_inside,
    check_package_write,
    check_writable,
    maintainer_mode,
    record_entry,
)
from zoo.spec import Method

PLACEHOLDER_REVISION = "0" * 40  # stands for the commit a hub will return, to validate the entry beforehand


def publish(folder: str, *, repo_id: Optional[str] = None, to: Optional[str] = None, package: bool = False,
            name: Optional[str] = None, registry: Optional[str] = None, default: bool = False,
            message: Optional[str] = None, private: bool = False, maintainer: bool = False) -> Dict[str, Any]:
    """Publish an exported folder and record it in a weights registry (all of it or, as far as can be undone,
    nothing: see the module docstring).

    Args:
        folder: an exported folder (``python -m training export``).
        repo_id: ``ORG/NAME`` on the Hub (or in the local hub with ``to``).
        to: a local directory hub to publish into instead of the Hub (a folder inside the registry's folder).
        package: store the weights in the folder beside the registry (``REGISTRY_FOLDER/NAME``) instead.
        name: the registry name; defaults to the name recorded at export (``METHOD.DATASET``).
        registry: the weights registry file to record the entry in (a file of your own; only maintainers record
            into the package's, which is the default for them).
        default: make this entry the default for its method (the first entry of a method always is).
        message: the commit message.
        private: create the Hub repository as private.
        maintainer: allow writing into the installed package (its registry and shipped weights);
            ``ZOO_MAINTAINER=1`` does the same.
    """
    folder_path = Path(folder)
    config = read_config(folder_path)
    license = config_license(config, f"{folder}/{CONFIG}")  # required before anything is uploaded
    load_exported(folder_path)  # strict load: never publish an export that would not load
    if name is not None:
        check_entry_name(name, "--name")
    elif config.get("name"):
        name = check_entry_name(config["name"], f"{folder}/{CONFIG}: name")
    else:
        raise ZooError(f"{folder}: no entry name recorded at export; pass --name METHOD.DATASET")
    if package == bool(repo_id):
        raise ZooError("choose one destination: --repo-id ORG/NAME (Hub, or local hub with --to DIR) or --package")
    if to and not repo_id:
        raise ZooError("--to DIR needs --repo-id ORG/NAME (the repository inside the local hub)")
    if repo_id:
        local_hub.check_repo_id(repo_id)
    registry_path = _registry_to_write(registry, maintainer)
    files = {CONFIG: (folder_path / CONFIG).read_bytes(), WEIGHTS: (folder_path / WEIGHTS).read_bytes()}
    sha256 = {fname: hashlib.sha256(data).hexdigest() for fname, data in files.items()}
    message = message or f"Publish {name} ({config['method']['name']} on {config.get('dataset') or '?'})"

    if package:
        where = package_where(name, registry_path)
        source: Dict[str, str] = {"kind": "package", "folder": name}
    elif to:
        root = check_inside(registry_path.parent, Path(to).resolve(), "--to",
                            " (a registry records its local hubs relative to itself: put the hub inside it)")
        where = (f"Local directory hub `{root}`, repository `{repo_id}` (one git repository per model; "
                 "the weights registry pins the commit).")
        source = {"kind": "local-hub", "root": str(root.relative_to(registry_path.parent.resolve())),
                  "repo_id": str(repo_id), "revision": PLACEHOLDER_REVISION}
    else:
        where = (f"Hugging Face Hub repository `{repo_id}`; the weights registry pins the commit, and "
                 f"`zoo.load_encoder(\"hf-hub:{repo_id}@REVISION\")` loads any revision.")
        source = {"kind": "hf-hub", "repo_id": str(repo_id), "revision": PLACEHOLDER_REVISION}
    entry = WeightsEntry(
        name=name, method=config["method"]["name"], dataset=config.get("dataset") or "unknown", source=source,
        sha256=sha256, input=config["input"], num_features=config["num_features"], license=license,
        metrics=dict(config.get("metrics") or {}), training=dict(config.get("training") or {}),
        metric_commands=dict(config.get("metric_commands") or {}),
        summary=Method.from_dict(config["method"]).summary)
    check_entry(registry_path, name, entry.to_json())  # every check before the first write
    try:
        check_writable(registry_path)
    except ZooError as err:
        raise ZooError(f"{err}; nothing was published (choose a --registry FILE in a folder you can write)") from None

    prose = shipped_prose(name, registry_path.parent / name) if package else ""  # a maintainer shipping it
    card = render_card({**config, "name": name}, sha256=sha256[WEIGHTS], load_id=name, where=where, prose=prose)
    files[CARD] = card.encode()
    if package:
        undo = _swap_in_folder(registry_path.parent / name, files)
    elif to:
        source["revision"], undo = _commit_to_local_hub(to, str(repo_id), files, message)
    else:
        source["revision"] = _upload_to_hub(str(repo_id), files, message, private)
        undo = _no_undo(f"the Hub repository {repo_id} keeps its new commit {source['revision']}: publish again once "
                        "the registry can be written")
    try:
        record_entry(registry_path, name, entry.to_json(), make_default=default)  # with the revision
    except BaseException as err:
        undone = undo(False)
        if isinstance(err, ZooError):
            raise ZooError(f"{err}; {undone}") from None
        raise
    undo(True)
    warning = non_commercial_warning(name, license)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    return {"name": name, "registry": str(registry_path), **source, "sha256": sha256[WEIGHTS]}


def _registry_to_write(registry: Optional[str], maintainer: bool) -> Path:
    """The registry file to record into: ``registry``, or the package's for maintainers; refused (one line) when
    none is given, or when it is inside the package (so are the weights beside it) and ``maintainer`` is off."""
    if registry is None and not maintainer_mode(maintainer):
        raise ZooError("publish needs --registry FILE, a weights registry of your own to record the entry in (layer it "
                       "on the package's with ZOO_REGISTRY); only maintainers record into the package's "
                       "(--maintainer true)")
    path = Path(registry) if registry is not None else weights_registry.PACKAGE_REGISTRY
    return check_package_write(path, "--registry", maintainer)


def package_where(name: str, registry: Path) -> str:
    """Where a ``package`` entry's weights are, for its card: inside the zoo, or beside a registry of one's own."""
    if weights_registry.inside_package(registry):
        return (f"Shipped inside the contrastive-zoo package (`zoo/_weights/{name}`), so it loads offline; "
                "not uploaded to the Hugging Face Hub.")
    return (f"Stored beside the weights registry `{registry}` (folder `{name}/`), so it loads offline; not uploaded "
            "to the Hugging Face Hub.")


def _upload_to_hub(repo_id: str, files: Dict[str, bytes], message: str, private: bool) -> str:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    unreachable = hub_unreachable(api.endpoint)  # the upload calls would wait for an answer without any limit
    if unreachable:
        raise ZooError(f"cannot reach {api.endpoint} ({unreachable}) to publish {repo_id}; nothing was published: "
                       "check the network and HF_ENDPOINT")
    with tempfile.TemporaryDirectory(prefix="zoo-publish-") as staging:
        for fname, data in files.items():
            (Path(staging) / fname).write_bytes(data)
        try:
            api.create_repo(repo_id, exist_ok=True, private=private)
            info = api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message=message)
        except HfHubHTTPError as err:
            raise ZooError(f"publishing to {api.endpoint}/{repo_id} failed: {first_line(err)}") from None
        except hub_transport_errors() as err:  # connection lost, DNS failure, offline mode
            raise ZooError(f"cannot reach {api.endpoint} to publish {repo_id}: {first_line(err)}") from None
    if not info.oid:
        raise ZooError(f"{api.endpoint} did not return a commit sha for {repo_id}")
    return info.oid


Undo = Callable[[bool], str]  # undo(False) reverts a write and says so in words; undo(True) makes it final


def _no_undo(consequence: str) -> Undo:
    return lambda keep: consequence


def _swap_in_folder(target: Path, files: Dict[str, bytes]) -> Undo:
    """Assemble the folder under a temporary name and rename it into place; the old folder is kept aside until
    the returned ``undo`` either deletes it (``True``) or puts it back (``False``)."""
    tmp = staging_dir(target)
    old = target.with_name(f".{target.name}.old-{os.getpid()}") if target.exists() else None
    try:
        for fname, data in files.items():
            (tmp / fname).write_bytes(data)
        if old is not None:
            os.rename(target, old)
        os.rename(tmp, target)
    except BaseException:
        if old is not None and not target.exists():
            os.rename(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    def undo(keep: bool) -> str:
        if keep:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            return ""
        shutil.rmtree(target)
        if old is not None:
            os.rename(old, target)
        return f"{target} was put back as it was, nothing was published"

    return undo


def _commit_to_local_hub(root: str, repo_id: str, files: Dict[str, bytes], message: str) -> Tuple[str, Undo]:
    """Commit to the local hub; the returned ``undo(False)`` moves its branch back to where it was."""
    parent = local_hub.head(root, repo_id)
    revision = local_hub.commit_files(root, repo_id, files, message, parent=parent)

    def undo(keep: bool) -> str:
        if keep:
            return ""
        local_hub.reset_branch(root, repo_id, revision, parent)
        return f"the commit was undone ({repo_id} main is back at {parent or 'no commit'}), nothing was published"

    return revision, undo
