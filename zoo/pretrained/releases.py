"""Release entries: another project's checkpoint, fetched by name, checked, converted once and cached.

``load_encoder("moco_v2.imagenet")`` on a release entry (``source.kind == "release"`` in the weights registry):

1. the cache (``ZOO_CACHE``, default ``$XDG_CACHE_HOME/contrastive-zoo`` or ``~/.cache/contrastive-zoo``) holds
   ``releases/NAME/``, an exported folder, once the entry was converted: later loads read only its
   ``model.safetensors``, checked against the sha256 its certificate recorded, and never touch the network;
2. otherwise, under a lock file (two processes: one download, the other waits and reads the cache), the file is
   downloaded from the publisher's URL, or from ``ZOO_MIRROR`` (a base URL replacing the scheme and host, the
   path kept), resumably (``zoo.pretrained.download``);
3. the publisher's digest is checked before anything parses the file (a mismatch deletes it);
4. the entry's format (``zoo.pretrained.convert``) converts it, reading tensors only (``weights_only``); the folder
   is written atomically with a conversion certificate in ``config.json`` and the card (source URL, its sha256,
   the publisher's digest, format, package version, the keys dropped);
5. the downloaded file is deleted unless ``ZOO_KEEP_DOWNLOADS=1`` (or ``keep_source=True``).

``ZOO_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``: nothing is fetched; an entry not yet cached fails with one line naming
the URL to fetch by hand and the ``import-legacy --release`` command that installs that file into the cache.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional
from urllib.parse import unquote, urlsplit

from zoo.atomic import atomic_write_text
from zoo.errors import ZooError
from zoo.pretrained.download import Digest, download, file_digests
from zoo.pretrained.exported import CARD, CONFIG, WEIGHTS, read_config, replace_dir
from zoo.pretrained.licenses import forbids_commercial_use
from zoo.pretrained.release_card import release_card, release_certificate, release_reported, release_where
from zoo.pretrained.weights_registry import WeightsEntry

_TRUE = ("1", "true", "yes", "on")


def cache_root() -> Path:
    """``ZOO_CACHE``, else ``$XDG_CACHE_HOME/contrastive-zoo``, else ``~/.cache/contrastive-zoo``."""
    if os.environ.get("ZOO_CACHE"):
        return Path(os.environ["ZOO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "contrastive-zoo"


def offline_variable() -> Optional[str]:
    """The variable that forbids the network (``ZOO_OFFLINE`` or ``HF_HUB_OFFLINE``), if one is set."""
    for name in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return name
    return None


def download_url(url: str) -> str:
    """The URL to fetch: the publisher's, or ``ZOO_MIRROR``'s base with the publisher's path."""
    mirror = os.environ.get("ZOO_MIRROR", "").strip()
    if not mirror:
        return url
    parts = urlsplit(mirror)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.netloc):
        raise ZooError(f"ZOO_MIRROR must be a base URL such as https://mirror.example.com/zoo, got {mirror!r}")
    path = urlsplit(url)
    return mirror.rstrip("/") + path.path + (f"?{path.query}" if path.query else "")


def release_folder(entry: WeightsEntry) -> Path:
    return cache_root() / "releases" / entry.name


def cached_release(entry: WeightsEntry) -> Optional[Dict[str, Any]]:
    """The certificate of the cached conversion of ``entry``, or None when there is none for this very release
    (same URL, format and digest: an entry that changed its file is converted again)."""
    config_path = release_folder(entry) / CONFIG
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cert = config.get("conversion") if isinstance(config, dict) else None
    if not isinstance(cert, dict) or not (release_folder(entry) / WEIGHTS).is_file():
        return None
    src = entry.source
    same = (cert.get("source_url"), cert.get("format"), cert.get("publisher_digest")) == \
        (src["url"], src["format"], src.get("digest"))
    return cert if same and isinstance(cert.get("model_sha256"), str) else None


def ensure_release(entry: WeightsEntry, progress: Optional[bool] = None,
                   keep_source: Optional[bool] = None) -> Dict[str, Any]:
    """Make sure ``entry`` is converted in the cache (see the module docstring); returns its certificate."""
    cert = cached_release(entry)
    if cert is not None:
        return cert
    variable = offline_variable()
    if variable is not None:
        raise ZooError(f"{entry.name} is not in the zoo cache ({release_folder(entry)}) and {variable}=1 forbids the "
                       f"network: fetch {entry.source['url']} by hand, then run `python -m training import-legacy "
                       f"FILE --release {entry.name}`")
    root = cache_root()
    with entry_lock(entry):
        cert = cached_release(entry)  # another process may have finished it while this one waited
        if cert is not None:
            return cert
        url = download_url(entry.source["url"])
        basename = Path(unquote(urlsplit(entry.source["url"]).path)).name or "checkpoint"
        full = _made(root / "downloads" / entry.name) / basename  # the published name: formats know files by it
        if full.is_file():  # checked and kept by an earlier call whose conversion failed (a full disk, say)
            digests = _checked(entry, full, url, delete=True)
        else:
            part = full.with_name(f"{basename}.part")
            download(url, part, label=basename, progress=progress)
            digests = _checked(entry, part, url, delete=True)
            os.replace(part, full)
        _notice(entry)
        keep = keep_source if keep_source is not None else os.environ.get("ZOO_KEEP_DOWNLOADS", "").lower() in _TRUE
        return install_release(entry, full, downloaded_from=url, digests=digests, consume=not keep)


@contextmanager
def entry_lock(entry: WeightsEntry) -> Iterator[None]:
    """One process at a time fetches or converts an entry (``ZOO_CACHE/locks/NAME.lock``); the others wait."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(_made(cache_root() / "locks") / f"{entry.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"{entry.name}: another process is fetching or converting it; waiting for it", file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def install_release(entry: WeightsEntry, file: Path, *, downloaded_from: str,
                    digests: Optional[Dict[str, str]] = None, consume: bool = False) -> Dict[str, Any]:
    """Convert a downloaded (or hand-fetched) release file into the cache, with its certificate.

    ``digests``: the file's md5/sha256 when the caller already checked them; otherwise the publisher's digest is
    checked here first. ``consume``: delete ``file`` once the folder is in place (on success only).
    """
    from zoo.pretrained.convert import import_legacy
    from zoo.pretrained.export_folder import package_version

    digests = digests or _checked(entry, Path(file), downloaded_from)
    src = entry.source
    cert = release_certificate(entry, downloaded_from=downloaded_from, source_sha256=digests["sha256"],
                               package_version=package_version())
    final = release_folder(entry)
    staging = final.with_name(f".{entry.name}.converting-{os.getpid()}")
    try:
        import_legacy(str(file), format=src["format"], out=str(staging), name=entry.name,
                      dataset=entry.dataset, method=entry.method, license=entry.license,
                      reported=release_reported(entry), overwrite=True, certificate=cert, where=release_where(entry),
                      expect_encoder=entry.encoder or None, expect_features=entry.num_features)
        config = json.loads((staging / CONFIG).read_text(encoding="utf-8"))
        config["conversion"]["model_sha256"] = file_digests(staging / WEIGHTS, ("sha256",))["sha256"]
        atomic_write_text(staging / CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
        atomic_write_text(staging / CARD, release_card(entry, config))  # loaded by name, with its weights' sha256
        replace_dir(staging, final)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ZooError(f"no space left on the device of {final.parent} while converting {entry.name}; nothing "
                           f"was cached (the checked download stays in {file}): free some space and try again") \
                from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if consume:
        file.unlink(missing_ok=True)
        try:
            file.parent.rmdir()  # the entry's downloads folder, when nothing else is kept in it
        except OSError:
            pass
    return dict(config["conversion"])


def release_config(entry: WeightsEntry) -> Dict[str, Any]:
    """The config a release entry states before any download (``load_encoder(name, pretrained=False)``)."""
    from zoo.methods import get_method
    from zoo.pretrained.exported import FORMAT

    if not entry.encoder:
        raise ZooError(f"{entry.name}: its release entry states no encoder part, so its architecture is known only "
                       "after the download; load it with pretrained=True")
    return {"format": FORMAT, "name": entry.name, "dataset": entry.dataset, "method": get_method(entry.method).to_dict(),
            "encoder": dict(entry.encoder), "num_features": entry.num_features, "input": dict(entry.input),
            "license": entry.license}


def release_input(entry: WeightsEntry) -> Dict[str, Any]:
    """``{"input": ...}`` of a release entry: its cached conversion's when there is one (the file decides), else
    the input the entry states (no download)."""
    if cached_release(entry) is not None:
        return {"input": read_config(release_folder(entry))["input"]}  # validated: a damaged cache is one line
    return {"input": dict(entry.input)}


def counted_size(entry: WeightsEntry) -> Optional[int]:
    """Bytes of the weights of the encoder the entry states, counted on the meta device (nothing allocated), or
    None when it states none."""
    if not entry.encoder:
        return None
    import torch

    from zoo.build import build_encoder
    from zoo.spec import Part

    with torch.device("meta"):
        encoder = build_encoder(Part.from_dict(dict(entry.encoder)))
    return sum(t.numel() * t.element_size() for t in encoder.state_dict().values())


def check_cached_weights(entry: WeightsEntry, data: bytes, cert: Dict[str, Any]) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != cert["model_sha256"]:
        raise ZooError(f"{entry.name}: the cached {WEIGHTS} has sha256 {actual}, but its conversion certificate "
                       f"records {cert['model_sha256']}; the cache was modified or corrupted: delete "
                       f"{release_folder(entry)} and load it again")


def list_releases(registry: Any) -> List[Dict[str, Any]]:
    """One record per release entry of a ``WeightsRegistry``: what ``python -m training releases`` prints."""
    rows = []
    for name, entry in sorted(registry.entries.items()):
        if entry.kind != "release":
            continue
        cert = cached_release(entry)
        digest = Digest.parse(entry.source["digest"], name).kind if "digest" in entry.source else "none stated"
        rows.append({"name": name, "method": entry.method, "dataset": entry.dataset, "url": entry.source["url"],
                     "format": entry.source["format"], "digest": digest, "license": entry.license,
                     "reported_top1": entry.reported.get("value"), "protocol": entry.reported.get("protocol"),
                     "cached": cert is not None,
                     "size_bytes": (release_folder(entry) / WEIGHTS).stat().st_size if cert else counted_size(entry),
                     "default_for": sorted(a for a, t in registry.defaults.items() if t == name)})
    return rows


def _checked(entry: WeightsEntry, file: Path, url: str, delete: bool = False) -> Dict[str, str]:
    """The file's digests, after checking the publisher's (a mismatch raises, and deletes a download)."""
    digests = file_digests(file)
    stated = entry.source.get("digest")
    if stated is not None and not Digest.parse(stated, entry.name).matches(digests):
        digest = Digest.parse(stated, entry.name)
        if delete:
            file.unlink(missing_ok=True)
        raise ZooError(f"{entry.name}: the file from {url} has {digest.algorithm} {digests[digest.algorithm]}, but its "
                       f"publisher states {digest.kind} {digest.value}; "
                       f"{'it was deleted and ' if delete else ''}nothing was cached")
    return digests


def _notice(entry: WeightsEntry) -> None:
    if forbids_commercial_use(entry.license):
        print(f"notice: {entry.name} is licensed {entry.license} by its publisher, which forbids commercial use",
              file=sys.stderr)


def _made(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ZooError(f"cannot create {folder} in the zoo cache ({err.strerror}); point ZOO_CACHE at a writable "
                       "folder") from None
    return folder


