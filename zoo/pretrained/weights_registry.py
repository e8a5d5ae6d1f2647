"""The weights registry: one JSON file naming every published encoder, where its files are and their sha256.

``load_encoder``, ``hubconf.py`` and the model cards all read this file; ``python -m training publish`` is the
only writer. Every entry states its weights' ``license``. An entry is named ``METHOD.DATASET`` (``yadim.fashion_mnist``); ``defaults`` maps a method name to
its default entry, so ``load_encoder("yadim")`` works. Each entry's ``source`` says where the files are:

- ``{"kind": "package", "folder": F}``: shipped inside this package (``zoo/_weights/F``), works offline;
- ``{"kind": "hf-hub", "repo_id": "ORG/NAME", "revision": SHA}``: the Hugging Face Hub (or any mirror named by
  ``HF_ENDPOINT``), fetched with ``hf_hub_download`` into its cache;
- ``{"kind": "local-hub", "root": DIR, "repo_id": "ORG/NAME", "revision": SHA}``: a local directory hub
  (``zoo.pretrained.local_hub``), read directly from its git repository;
- ``{"kind": "release", "url": URL, "format": FORMAT, "digest": "md5:HEX", "cited": "owner/repo path"}``: a
  checkpoint another project released, downloaded from its publisher (or ``ZOO_MIRROR``), checked against the digest
  the publisher states (``digest`` is optional: not every publisher states one), converted once with the
  ``zoo.pretrained.convert`` format and cached (``zoo.pretrained.releases``). Such an entry has no ``sha256`` (the
  converted files are made on the user's machine), states the ``encoder`` part the conversion must produce, and
  may quote ``reported``: the accuracy the publisher states, with its protocol.

The package registry is ``zoo/_weights/registry.json``; ``ZOO_REGISTRY`` (paths separated by ``os.pathsep``) adds
more registry files on top. An entry name defined twice is an error rather than a silent override; a later file's
``defaults`` override earlier ones (a user's default for a method replaces the package's).

Every path an entry names stays inside its registry's folder: a ``package`` entry's ``folder`` and a ``local-hub``
entry's ``root`` are resolved (symbolic links followed) and must name a folder inside it, and entry names are single
folder names (``check_entry_name``), so no entry can point a loader, a publisher or ``evaluate --record`` elsewhere.
The installed package is read-only unless a maintainer asks (``check_package_write``: a flag, or
``ZOO_MAINTAINER=1``).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from zoo.atomic import atomic_write_text, probe_writable
from zoo.errors import UnknownNameError, ZooError
from zoo.part_registry import unknown_name_message
from zoo.pretrained.licenses import PROJECT_LICENSE, check_license

FORMAT = "contrastive-zoo/weights-registry@1"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the installed zoo package
PACKAGE_REGISTRY = PACKAGE_DIR / "_weights" / "registry.json"
LOADED_FILES = ("config.json", "model.safetensors")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")  # one folder name: never '.', '..' or a path
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SOURCE_KEYS = {"package": {"folder"}, "hf-hub": {"repo_id", "revision"}, "local-hub": {"root", "repo_id", "revision"},
                "release": {"url", "format"}}
_OPTIONAL_SOURCE_KEYS = {"release": {"digest", "cited"}}
_REPORTED_KEYS: Dict[str, Any] = {"metric": str, "value": (int, float), "protocol": str, "source": str}


@dataclass(frozen=True)
class WeightsEntry:
    """One published encoder: its name, what trained it, where its files are and what they hash to."""

    name: str
    method: str
    dataset: str
    source: Dict[str, str]
    sha256: Dict[str, str]
    input: Dict[str, Any]
    num_features: int
    license: str  # e.g. "apache-2.0" (see zoo.pretrained.licenses)
    metrics: Dict[str, float] = field(default_factory=dict)
    metric_commands: Dict[str, str] = field(default_factory=dict)  # how each metric was measured
    training: Dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    reported: Dict[str, Any] = field(default_factory=dict)  # the publisher's own figure (release entries)
    encoder: Dict[str, Any] = field(default_factory=dict)   # the encoder part a release converts into
    base_dir: Path = Path(".")  # the registry file's folder: relative package folders and hub roots start here

    @property
    def kind(self) -> str:
        return self.source["kind"]

    def where(self) -> str:
        """Where the weights are, in words (for cards and error messages)."""
        if self.kind == "package" and inside_package(self.package_folder()):
            return f"inside the contrastive-zoo package (zoo/_weights/{self.source['folder']})"
        if self.kind == "package":
            return f"in the folder {self.package_folder()} beside its weights registry"
        if self.kind == "hf-hub":
            return f"Hugging Face Hub repo {self.source['repo_id']} at revision {self.source['revision']}"
        if self.kind == "release":
            return f"released by its publisher at {self.source['url']}, converted into the zoo cache on first load"
        return (f"local directory hub {self.local_root()} repo {self.source['repo_id']} at revision "
                f"{self.source['revision']}")

    def package_folder(self) -> Path:
        return self.base_dir / self.source["folder"]

    def local_root(self) -> Path:
        return (self.base_dir / self.source["root"]).resolve()

    def to_json(self) -> Dict[str, Any]:
        """The entry as its registry file holds it: every field but the name and the file's folder (``reported``
        and ``encoder``, which only release entries have, left out when empty)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("name", "base_dir")}
        data = {k: v for k, v in data.items() if v or k not in ("reported", "encoder")}
        return json.loads(json.dumps(data))


def _registry_fields() -> tuple:
    """The fields a registry file holds, from ``WeightsEntry`` itself: the required ones with the JSON type each
    must have (``Dict[...]`` -> dict), and the optional ones (those with a default)."""
    hints = typing.get_type_hints(WeightsEntry)
    required: Dict[str, type] = {}
    optional = set()
    for f in fields(WeightsEntry):
        if f.name in ("name", "base_dir"):  # the entry's key in the file, and the file's folder
            continue
        if f.default is MISSING and f.default_factory is MISSING:
            required[f.name] = typing.get_origin(hints[f.name]) or hints[f.name]
        else:
            optional.add(f.name)
    return required, optional


_REQUIRED_FIELDS, _OPTIONAL_FIELDS = _registry_fields()


def check_entry_name(name: Any, what: str) -> str:
    """``name`` when it is a weights entry name (``METHOD.DATASET``: one folder name, never a path), else one
    ZooError line starting with ``what`` (where the name came from: ``--name``, a file's field)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ZooError(f"{what} {name!r} is not a weights entry name: use lower-case letters, digits, '_', '.' and "
                       "'-', starting with a letter or digit (e.g. 'yadim.fashion_mnist')")
    return name


def check_inside(base: Path, path: str | os.PathLike, what: str, hint: str = "") -> Path:
    """``base / path`` resolved, which must be a folder strictly inside ``base`` (resolved too); else one ZooError
    line: ``{what} {path!r} must name a folder inside the registry's folder {base}{hint}``."""
    root = Path(base).resolve()
    target = (root / path).resolve()
    if target == root or not target.is_relative_to(root):
        raise ZooError(f"{what} {os.fspath(path)!r} must name a folder inside the registry's folder {root}{hint}")
    return target


def _entry(name: str, data: Any, base_dir: Path, source: str) -> WeightsEntry:
    check_entry_name(name, f"{source}: entry")
    where = f"{source}: entry {name!r}"
    if not isinstance(data, dict):
        raise ZooError(f"{where} must be a JSON object")
    if "license" not in data:
        raise ZooError(f"{where}: field 'license' is missing (the weights' licence, e.g. {PROJECT_LICENSE!r} for "
                       "weights trained by this project)")
    release = isinstance(data.get("source"), dict) and data["source"].get("kind") == "release"
    data = {"sha256": {}, **data} if release else data
    for key, kind in _REQUIRED_FIELDS.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise ZooError(f"{where}: field {key!r} must be {kind.__name__}")
    _check_source(data["source"], where)
    for key in ("folder", "root"):  # a package entry's folder, a local hub's root: inside the registry's folder
        if key in data["source"]:
            check_inside(base_dir, data["source"][key], f"{where}: source.{key}")
    if release:
        _check_release(data, where)
    else:
        for fname in LOADED_FILES:
            if not _SHA256.match(str(data["sha256"].get(fname, ""))):
                raise ZooError(f"{where}: sha256 of {fname} is missing or not 64 hex digits")
    check_license(data["license"], where)
    known = set(_REQUIRED_FIELDS) | _OPTIONAL_FIELDS
    if set(data) - known:
        raise ZooError(f"{where}: unknown field(s) {sorted(set(data) - known)}")
    return WeightsEntry(name=name, base_dir=base_dir, **{k: data[k] for k in known if k in data})


def _check_source(src: Dict[str, Any], where: str) -> None:
    expected = _SOURCE_KEYS.get(src.get("kind"))  # type: ignore[arg-type]
    if expected is None:
        raise ZooError(f"{where}: source.kind must be one of {sorted(_SOURCE_KEYS)}, got {src.get('kind')!r}")
    optional = _OPTIONAL_SOURCE_KEYS.get(src["kind"], set())
    keys = set(src) - {"kind"}
    if not expected <= keys or keys - expected - optional or not all(isinstance(src[k], str) for k in keys):
        extra = f" (optional: {sorted(optional)})" if optional else ""
        raise ZooError(f"{where}: a {src['kind']} source has exactly the string fields {sorted(expected)}{extra}")
    if "revision" in src and not _COMMIT.match(src["revision"]):
        raise ZooError(f"{where}: revision must be a 40-hex commit sha (a pinned revision), got {src['revision']!r}")


def _check_release(data: Dict[str, Any], where: str) -> None:
    """A release entry: an http(s) URL, a digest of a known form, the publisher's figure with its protocol."""
    from zoo.pretrained.download import Digest

    src = data["source"]
    if not re.match(r"^https?://[^/\s]+/\S+$", src["url"]):
        raise ZooError(f"{where}: source.url must be an http(s) URL of the file, got {src['url']!r}")
    if "digest" in src:
        Digest.parse(src["digest"], f"{where}: source")
    if data["sha256"]:
        raise ZooError(f"{where}: a release entry has no sha256 (its converted files are made on the user's machine)")
    reported = data.get("reported", {})
    if not isinstance(reported, dict) or (reported and (set(reported) != set(_REPORTED_KEYS) or not all(
            isinstance(reported[k], t) and not isinstance(reported[k], bool) for k, t in _REPORTED_KEYS.items()))):
        raise ZooError(f"{where}: reported must be {{'metric': str, 'value': number, 'protocol': str, 'source': str}} "
                       f"(the figure the publisher states, how it was measured, and where), got {reported!r}")
    if "encoder" in data and not isinstance(data["encoder"], dict):
        raise ZooError(f"{where}: encoder must be the encoder part as a JSON object")


class WeightsRegistry:
    """Entries and default aliases read from one or more registry files: later files may not redefine entry names,
    and their ``defaults`` override earlier ones."""

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        self.paths = [Path(p) for p in paths]
        self.entries: Dict[str, WeightsEntry] = {}
        self.defaults: Dict[str, str] = {}
        self.origin: Dict[str, Path] = {}
        for path in self.paths:
            data = read_registry_file(path, must_exist=True)
            for name, raw in data["entries"].items():
                if name in self.entries:
                    raise ZooError(f"weights entry {name!r} is defined in both {self.origin[name]} and {path}")
                self.entries[name] = _entry(name, raw, path.parent, str(path))
                self.origin[name] = path
            self.defaults.update(data["defaults"])  # the later registry's default for a method wins
        for alias, target in self.defaults.items():
            if target not in self.entries:
                raise ZooError(f"default {alias!r} -> {target!r}: no such entry in {[str(p) for p in self.paths]}")

    def names(self) -> List[str]:
        """Entry names and default aliases, sorted."""
        return sorted(set(self.entries) | set(self.defaults))

    def get(self, name: str) -> WeightsEntry:
        target = self.defaults.get(name, name)
        if target not in self.entries:
            raise UnknownNameError(unknown_name_message("pretrained encoder", name, self.names()))
        return self.entries[target]

    def list(self, pattern: str = "*") -> List[str]:
        return [n for n in self.names() if fnmatch.fnmatchcase(n, pattern)]


def read_registry_file(path: str | os.PathLike, must_exist: bool = False) -> Dict[str, Any]:
    """A registry file's contents; a missing file is an empty registry to write into, or an error to read from."""
    path = Path(path)
    if not path.is_file():
        if must_exist:
            raise ZooError(f"weights registry {path} does not exist")
        return {"format": FORMAT, "defaults": {}, "entries": {}}
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ZooError(f"weights registry {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ZooError(f"weights registry {path}: expected format {FORMAT!r}")
    if not isinstance(data.get("entries"), dict) or not isinstance(data.get("defaults", {}), dict):
        raise ZooError(f"weights registry {path}: 'entries' and 'defaults' must be JSON objects")
    data.setdefault("defaults", {})
    return data


def registry_paths(registry: Optional[str | os.PathLike] = None) -> List[Path]:
    """``registry`` alone when given; else the package registry plus the files named by ``ZOO_REGISTRY``."""
    if registry is not None:
        return [Path(registry)]
    extra = [Path(p) for p in os.environ.get("ZOO_REGISTRY", "").split(os.pathsep) if p]
    return [PACKAGE_REGISTRY, *extra]


def open_registry(registry: Optional[str | os.PathLike] = None) -> WeightsRegistry:
    return WeightsRegistry(registry_paths(registry))


def check_entry(path: str | os.PathLike, name: str, entry: Mapping[str, Any]) -> WeightsEntry:
    """``entry`` validated as the registry file at ``path`` would hold it under ``name`` (nothing is written)."""
    path = Path(path)
    return _entry(name, dict(entry), path.parent, str(path))


def record_entry(path: str | os.PathLike, name: str, entry: Mapping[str, Any], make_default: bool = False) -> None:
    """Add or replace ``name`` in the registry file at ``path`` (validated first, written atomically, under a lock
    file so that concurrent publishers do not lose each other's entries). A failed write (disk full, permissions)
    is one ZooError line and leaves the file as it was."""
    from filelock import FileLock

    path = Path(path)
    check_entry(path, name, entry)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path.with_name(f".{path.name}.lock")), timeout=60):  # concurrent publishers queue here
            data = read_registry_file(path)
            data["entries"][name] = dict(entry)
            method = entry["method"]
            if make_default or method not in data["defaults"]:
                data["defaults"][method] = name
            data["entries"] = dict(sorted(data["entries"].items()))
            data["defaults"] = dict(sorted(data["defaults"].items()))
            atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    except OSError as err:  # filelock's Timeout is an OSError too
        raise ZooError(f"cannot write the weights registry {path}: {err.strerror or err}") from None


def check_writable(path: str | os.PathLike) -> None:
    """Refuse, with one ZooError line, a registry file that could not be recorded into: unreadable, or in a
    folder that takes no new file (the lock and the atomic rename need one), or itself not writable."""
    path = Path(path)
    read_registry_file(path)
    folder = next(p for p in (path.parent, *path.parent.parents) if p.exists())  # the nearest that exists
    try:
        probe_writable(folder)
    except OSError as err:
        raise ZooError(f"cannot write the weights registry {path}: {err.strerror or err}") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise ZooError(f"cannot write the weights registry {path}: the file is read-only")


def inside_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` (resolved) is the installed package's folder or inside it."""
    return Path(path).resolve().is_relative_to(PACKAGE_DIR.resolve())


def maintainer_mode(flag: bool = False) -> bool:
    """Whether the caller may write into the installed package: its own ``--maintainer`` flag, or
    ``ZOO_MAINTAINER=1`` in the environment."""
    return bool(flag) or os.environ.get("ZOO_MAINTAINER") == "1"


def check_package_write(path: str | os.PathLike, what: str, maintainer: bool = False,
                        flag: str = "--maintainer true") -> Path:
    """``path``, refused with one ZooError line when it is inside the installed package and the caller is no
    maintainer (``maintainer_mode``): no command writes into the package unless asked."""
    if inside_package(path) and not maintainer_mode(maintainer):
        raise ZooError(f"{what} {path} is inside the installed package ({PACKAGE_DIR}); write to a file of your own, "
                       f"or pass {flag} (or set ZOO_MAINTAINER=1) to change what ships with the zoo")
    return Path(path)
