"""Where an encoder's files come from: a local folder, the package, the Hugging Face Hub or a local directory hub.

``resolve_source`` turns what a user passed to ``load_encoder`` (a registry name, ``hf-hub:ORG/NAME[@REV]`` or a
folder) into a ``Source`` whose ``read(filename)`` returns the file's bytes. Registry entries carry the sha256 of
each file they load, and ``Source.read`` checks it before anything is parsed: a tampered or truncated download
fails here with the expected and actual digests, never later as a confusing shape error.

Hub ids and revisions are checked before any URL or cache path is built from them. Before a download, one short
request (``hub_unreachable``) asks whether the endpoint answers at all: huggingface_hub alone waits 10 s for a
first answer and then retries for minutes, so without it an unreachable Hub (offline, firewalled, a dead mirror)
takes that long to fail. An unreachable endpoint is then served from the Hugging Face cache, or fails in one line.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple
from urllib.parse import urlsplit

from zoo.errors import ZooError, first_line
from zoo.pretrained import local_hub
from zoo.pretrained.weights_registry import WeightsEntry, open_registry

HF_PREFIX = "hf-hub:"
# seconds to wait for the Hub's first answer (HF_HUB_ETAG_TIMEOUT, when set, instead): far above a working Hub's
# answer time, so that an unreachable one fails fast
HUB_TIMEOUT_S = 3.0
UNREACHABLE_MEMORY_S = 60.0  # an endpoint that did not answer is not asked again this long (a load reads 2 files)
_unreachable: Dict[str, Tuple[float, str]] = {}  # endpoint -> (time.monotonic() of the failure, why)
_HF_ID = re.compile(r"^hf-hub:(?P<repo>[^@\s]+?)(?:@(?P<rev>[^@\s]*))?$")
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class Source:
    """A readable set of files, with the registry entry (and so the expected sha256) when there is one."""

    label: str
    kind: str  # folder | package | hf-hub | local-hub | release
    entry: Optional[WeightsEntry] = None
    folder: Optional[Path] = None
    repo_id: Optional[str] = None
    revision: Optional[str] = None
    root: Optional[Path] = None
    progress: Optional[bool] = None  # a release's download bar: None shows it on a terminal only
    checked: Dict[str, str] = field(default_factory=dict)  # filename -> the sha256 read() checked it against

    def read(self, filename: str, verify: bool = True) -> bytes:
        if self.kind == "release":
            return self._read_release(filename, verify)
        data = self._read(filename)
        expected = self.entry.sha256.get(filename) if (verify and self.entry) else None
        if expected is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise ZooError(f"{self.label}: {filename} has sha256 {actual}, but the weights registry expects "
                               f"{expected}; the file was modified or corrupted (delete it from the cache and "
                               f"download it again)")
            self.checked[filename] = actual
        return data

    def _read(self, filename: str) -> bytes:
        if self.kind in ("folder", "package"):
            assert self.folder is not None, "folder and package sources have a folder"
            path = self.folder / filename
            if not path.is_file():
                raise ZooError(f"{self.label}: {path} is missing")
            return path.read_bytes()
        assert self.repo_id is not None, "hub sources have a repo_id"
        if self.kind == "local-hub":
            assert self.root is not None and self.revision is not None, "local-hub sources are pinned"
            return local_hub.read_file(self.root, self.repo_id, self.revision, filename)
        return _hub_download(self.repo_id, self.revision, filename)

    def _read_release(self, filename: str, verify: bool) -> bytes:
        """A release entry's file from the zoo cache, converted there first if need be (``zoo.pretrained.releases``);
        the weights are checked against the sha256 its conversion certificate recorded."""
        from zoo.pretrained.releases import check_cached_weights, ensure_release, release_folder

        assert self.entry is not None, "release sources have an entry"
        cert = ensure_release(self.entry, progress=self.progress)
        self.folder = release_folder(self.entry)
        path = self.folder / filename
        if not path.is_file():
            raise ZooError(f"{self.label}: {path} is missing from the zoo cache")
        data = path.read_bytes()
        if verify and filename == "model.safetensors":
            check_cached_weights(self.entry, data, cert)
            self.checked[filename] = cert["model_sha256"]
        return data

    def describe(self) -> Dict[str, Optional[str]]:
        return {"label": self.label, "kind": self.kind, "entry": self.entry.name if self.entry else None,
                "repo_id": self.repo_id, "revision": self.revision,
                "folder": str(self.folder) if self.folder else None}


def parse_hub_id(spec: str, revision: Optional[str] = None) -> tuple[str, Optional[str]]:
    """``hf-hub:ORG/NAME[@REV]`` -> (repo id, revision); ``revision=`` may be given instead of ``@REV``."""
    match = _HF_ID.match(spec)
    if not match:
        raise ZooError(f"malformed id {spec!r}: expected 'hf-hub:ORG/NAME' or 'hf-hub:ORG/NAME@REVISION'")
    repo_id, rev = match.group("repo"), match.group("rev")
    local_hub.check_repo_id(repo_id)
    if rev is not None and not rev:
        raise ZooError(f"malformed id {spec!r}: nothing after '@' (give a branch, tag or commit sha)")
    if rev and revision and rev != revision:
        raise ZooError(f"{spec!r} pins revision {rev!r} but revision={revision!r} was also passed")
    revision = rev or revision
    if revision is not None:
        local_hub.check_revision(revision)
    return repo_id, revision


def resolve_source(name_or_id: str | os.PathLike, revision: Optional[str] = None,
                   registry: Optional[str | os.PathLike] = None, progress: Optional[bool] = None) -> Source:
    """What ``load_encoder`` accepts -> a ``Source`` (see the module docstring)."""
    if not isinstance(name_or_id, (str, os.PathLike)) or not str(name_or_id):
        raise ZooError(f"load_encoder needs a registry name, 'hf-hub:ORG/NAME[@REV]' or a folder, got {name_or_id!r}")
    spec = os.fspath(name_or_id)
    if isinstance(name_or_id, str) and spec.startswith(HF_PREFIX):
        repo_id, rev = parse_hub_id(spec, revision)
        entry = _entry_for_repo(repo_id, rev, registry)
        return Source(label=f"{HF_PREFIX}{repo_id}@{rev or 'main'}", kind="hf-hub", entry=entry, repo_id=repo_id,
                      revision=rev)
    looks_like_path = isinstance(name_or_id, os.PathLike) or "/" in spec or os.sep in spec or spec.startswith(".")
    if not looks_like_path:
        reg = open_registry(registry)
        if spec in reg.names() or not Path(spec).is_dir():
            return entry_source(reg.get(spec), revision, progress)
    folder = Path(spec)
    if not folder.is_dir():
        hint = f"; for a Hub repo write 'hf-hub:{spec}'" if spec.count("/") == 1 and not spec.startswith(".") else ""
        raise ZooError(f"{spec!r} is not an exported encoder folder (no such directory){hint}")
    if revision is not None:
        raise ZooError(f"revision={revision!r} applies to Hub ids and registry names, not to folder {folder}")
    return Source(label=str(folder), kind="folder", folder=folder)


def entry_source(entry: WeightsEntry, revision: Optional[str] = None, progress: Optional[bool] = None) -> Source:
    pinned = entry.source.get("revision")
    if revision is not None and pinned is None:  # package and release entries have no revisions at all
        raise ZooError(f"{entry.name} has no revisions (its weights are {entry.where()}); revision= applies to "
                       "'hf-hub:ORG/NAME' ids and hub entries")
    if revision is not None and revision != pinned:
        hint = (f"; to load another revision use 'hf-hub:{entry.source['repo_id']}@{revision}'"
                if entry.kind == "hf-hub" else "")
        raise ZooError(f"{entry.name} is pinned to revision {pinned!r} in the weights registry, not {revision!r}"
                       f"{hint}")
    label = f"{entry.name} ({entry.where()})"
    if entry.kind == "release":
        return Source(label=entry.name, kind="release", entry=entry, progress=progress)
    if entry.kind == "package":
        return Source(label=label, kind="package", entry=entry, folder=entry.package_folder())
    if entry.kind == "local-hub":
        return Source(label=label, kind="local-hub", entry=entry, repo_id=entry.source["repo_id"],
                      revision=pinned, root=entry.local_root())
    return Source(label=label, kind="hf-hub", entry=entry, repo_id=entry.source["repo_id"], revision=pinned)


def _entry_for_repo(repo_id: str, revision: Optional[str], registry: Optional[str | os.PathLike]) -> Optional[WeightsEntry]:
    """The registry entry published as this repo at this revision, so its sha256 can be checked."""
    for entry in open_registry(registry).entries.values():
        if entry.kind == "hf-hub" and entry.source["repo_id"] == repo_id and entry.source["revision"] == revision:
            return entry
    return None


def hub_timeout() -> float:
    """Seconds to wait for the Hub's first answer: ``HF_HUB_ETAG_TIMEOUT`` when set, else ``HUB_TIMEOUT_S``."""
    from huggingface_hub import constants

    if constants.HF_HUB_ETAG_TIMEOUT != constants.DEFAULT_ETAG_TIMEOUT:  # huggingface_hub's own test for "set"
        return float(constants.HF_HUB_ETAG_TIMEOUT)
    return HUB_TIMEOUT_S


def hub_unreachable(url: str) -> Optional[str]:
    """None when ``url`` gives any HTTP answer (whatever its status) within ``hub_timeout()``; else why not, in a
    few words. It goes through huggingface_hub's own HTTP session (its proxies, certificates and headers). An
    endpoint that did not answer is taken at its word for ``UNREACHABLE_MEMORY_S``."""
    from huggingface_hub.utils import get_session

    endpoint = urlsplit(url)._replace(path="", query="", fragment="").geturl()
    failed = _unreachable.get(endpoint)
    if failed is not None and time.monotonic() - failed[0] < UNREACHABLE_MEMORY_S:
        return failed[1]
    timeout = hub_timeout()
    try:
        get_session().head(url, timeout=timeout)
    except Exception as err:  # noqa: BLE001 - refused, DNS, proxy, TLS or timeout: whatever the HTTP library raises
        why = f"no answer within {timeout:g} s" if isinstance(err, TimeoutError) or "Timeout" in type(err).__name__ \
            else first_line(err)
        _unreachable[endpoint] = (time.monotonic(), why)
        return why
    _unreachable.pop(endpoint, None)
    return None


def hub_transport_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of huggingface_hub's HTTP library for a request that got no answer (httpx and its
    successor httpx2 raise ``TransportError``s, which are not ``OSError``s; requests raises ``OSError``s)."""
    import importlib

    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _hub_download(repo_id: str, revision: Optional[str], filename: str) -> bytes:
    """``hf_hub_download`` (its cache, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``) with one clear error per failure; an
    endpoint that does not answer (``hub_unreachable``) is not waited for: the file comes from the cache."""
    from huggingface_hub import constants, hf_hub_download, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}@{revision or 'main'} ({constants.ENDPOINT})"
    offline = constants.is_offline_mode()
    # a file cached at a commit sha (what the registry pins) is read without asking the Hub anything
    pinned_and_cached = bool(revision and _COMMIT_SHA.match(revision)) and \
        isinstance(try_to_load_from_cache(repo_id, filename, revision=revision), str)
    unreachable = None
    if not (offline or pinned_and_cached):
        unreachable = hub_unreachable(hf_hub_url(repo_id, filename, revision=revision))
    try:
        path = hf_hub_download(repo_id, filename, revision=revision, local_files_only=unreachable is not None)
    except RevisionNotFoundError:
        raise ZooError(f"revision {revision!r} not found in {repo_id} ({constants.ENDPOINT})") from None
    except RepositoryNotFoundError:  # some mirrors answer this for a missing revision of an existing repo too
        what = f"repository {repo_id} or its revision {revision!r}" if revision else f"repository {repo_id}"
        raise ZooError(f"{what} not found on {constants.ENDPOINT} (or it is private and no token was given)") \
            from None
    except LocalEntryNotFoundError:
        if offline:
            raise ZooError(f"{filename} of {where} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
                           f"HF_HUB_OFFLINE is set: download it once with network access") from None
        raise ZooError(f"cannot reach {constants.ENDPOINT} ({unreachable or 'no connection'}) to download {filename} "
                       f"of {repo_id}@{revision or 'main'}, and it is not in the Hugging Face cache "
                       f"({constants.HF_HUB_CACHE}): check the network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to "
                       "work from the cache without waiting for the network") from None
    except EntryNotFoundError:
        raise ZooError(f"{where} has no file {filename}") from None
    except HfHubHTTPError as err:
        raise ZooError(f"downloading {filename} of {where} failed: {str(err).splitlines()[0]}") from None
    return Path(path).read_bytes()
