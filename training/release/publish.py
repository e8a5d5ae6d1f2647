"""``python -m training publish FOLDER``: publish an exported encoder and record it in the weights registry.

Three destinations, one command:

- ``--repo-id ORG/NAME``: the Hugging Face Hub through ``huggingface_hub.HfApi`` (``create_repo`` then
  ``upload_folder``); endpoint and token come from the usual ``HF_ENDPOINT`` / ``HF_TOKEN`` variables.
- ``--repo-id ORG/NAME --to DIR``: a local directory hub (``zoo.pretrained.local_hub``: one git repository per model, in the
  Hub layout) for air-gapped teams; olah can serve ``DIR`` to any Hugging Face client.
- ``--package``: copy into this package (``zoo/_weights/NAME``) for weights shipped with the zoo.

The folder is loaded strictly first (a broken export is never published), its card is re-rendered to say where
the weights now are and their sha256, and the registry entry (name, source, pinned revision, sha256 of each
loaded file, method, dataset, licence, metrics, training facts) is written atomically afterwards. An entry whose
licence forbids commercial use (``cc-by-nc-*``, e.g. MoCo's and SwAV's releases) is published with a one-line warning
on stderr naming the entry and the licence.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

from zoo.errors import ZooError, first_line
from zoo.pretrained import local_hub
from zoo.pretrained.cards import render_card
from zoo.pretrained.exported import CARD, CONFIG, WEIGHTS, load_exported, read_config, replace_dir, staging_dir
from zoo.pretrained.licenses import config_license, non_commercial_warning
from zoo.pretrained.sources import hub_transport_errors, hub_unreachable
from zoo.pretrained.weights_registry import PACKAGE_REGISTRY, record_entry
from zoo.spec import Method


def publish(folder: str, *, repo_id: Optional[str] = None, to: Optional[str] = None, package: bool = False,
            name: Optional[str] = None, registry: Optional[str] = None, default: bool = False,
            message: Optional[str] = None, private: bool = False) -> Dict[str, Any]:
    """Publish an exported folder and record it in the weights registry.

    Args:
        folder: an exported folder (``python -m training export``).
        repo_id: ``ORG/NAME`` on the Hub (or in the local hub with ``to``).
        to: a local directory hub to publish into instead of the Hub.
        package: ship inside this package (``zoo/_weights/NAME``) instead.
        name: the registry name; defaults to the name recorded at export (``METHOD.DATASET``).
        registry: the weights registry file to record the entry in (default: the package's).
        default: make this entry the default for its method (the first entry of a method always is).
        message: the commit message.
        private: create the Hub repository as private.
    """
    folder_path = Path(folder)
    config = read_config(folder_path)
    license = config_license(config, f"{folder}/{CONFIG}")  # required before anything is uploaded
    load_exported(folder_path)  # strict load: never publish an export that would not load
    name = name or config.get("name")
    if not name:
        raise ZooError(f"{folder}: no entry name recorded at export; pass --name METHOD.DATASET")
    if package == bool(repo_id):
        raise ZooError("choose one destination: --repo-id ORG/NAME (Hub, or local hub with --to DIR) or --package")
    if to and not repo_id:
        raise ZooError("--to DIR needs --repo-id ORG/NAME (the repository inside the local hub)")
    if repo_id:
        local_hub.check_repo_id(repo_id)
    files = {CONFIG: (folder_path / CONFIG).read_bytes(), WEIGHTS: (folder_path / WEIGHTS).read_bytes()}
    sha256 = {fname: hashlib.sha256(data).hexdigest() for fname, data in files.items()}
    registry_path = Path(registry) if registry else PACKAGE_REGISTRY
    message = message or f"Publish {name} ({config['method']['name']} on {config.get('dataset') or '?'})"

    if package:
        where = package_where(name)
        card = render_card({**config, "name": name}, sha256=sha256[WEIGHTS], load_id=name, where=where)
        _write_package_folder(registry_path.parent / name, {**files, CARD: card.encode()})
        source = {"kind": "package", "folder": name}
    elif to:
        where = (f"Local directory hub `{Path(to).resolve()}`, repository `{repo_id}` (one git repository per model; "
                 "the weights registry pins the commit).")
        card = render_card({**config, "name": name}, sha256=sha256[WEIGHTS], load_id=name, where=where)
        revision = local_hub.commit_files(to, repo_id, {**files, CARD: card.encode()}, message)
        source = {"kind": "local-hub", "root": _relative_root(Path(to), registry_path), "repo_id": repo_id,
                  "revision": revision}
    else:
        where = (f"Hugging Face Hub repository `{repo_id}`; the weights registry pins the commit, and "
                 f"`zoo.load_encoder(\"hf-hub:{repo_id}@REVISION\")` loads any revision.")
        card = render_card({**config, "name": name}, sha256=sha256[WEIGHTS], load_id=name, where=where)
        source = {"kind": "hf-hub", "repo_id": repo_id,
                  "revision": _upload_to_hub(repo_id, {**files, CARD: card.encode()}, message, private)}

    entry = {"method": config["method"]["name"], "dataset": config.get("dataset") or "unknown", "source": source,
             "sha256": sha256, "input": config["input"], "num_features": config["num_features"],
             "license": license,
             "metrics": dict(config.get("metrics") or {}), "training": dict(config.get("training") or {}),
             "metric_commands": dict(config.get("metric_commands") or {}),
             "summary": Method.from_dict(config["method"]).summary}
    record_entry(registry_path, name, entry, make_default=default)
    warning = non_commercial_warning(name, license)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    return {"name": name, "registry": str(registry_path), **source, "sha256": sha256[WEIGHTS]}


def package_where(name: str) -> str:
    return (f"Shipped inside the contrastive-zoo package (`zoo/_weights/{name}`), so it loads offline; "
            "not uploaded to the Hugging Face Hub.")


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


def _write_package_folder(target: Path, files: Dict[str, bytes]) -> None:
    """Assemble the folder under a temporary name and rename it into place (old folder kept until then)."""
    tmp = staging_dir(target)
    try:
        for fname, data in files.items():
            (tmp / fname).write_bytes(data)
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _relative_root(root: Path, registry_path: Path) -> str:
    """The hub root as the registry records it: relative to the registry's folder when inside it."""
    root, base = root.resolve(), registry_path.resolve().parent
    try:
        return str(root.relative_to(base))
    except ValueError:
        return str(root)
