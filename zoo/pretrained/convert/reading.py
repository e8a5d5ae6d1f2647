"""Reading a legacy checkpoint safely and splitting its keys: trunk, dropped by name, or an error.

Files are read with ``torch.load(weights_only=True)`` only: tensors and plain containers, never pickled code or
objects (a pickle that needs one is refused, naming the class). Every key of the state dict is either a trunk key
(mapped exactly once) or under a prefix the format names as dropped; anything else stops the import.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

from torch import Tensor

from zoo.checkpoint_file import UnreadableCheckpoint, read_checkpoint_file
from zoo.errors import ZooError
from zoo.pretrained.convert.formats import FORMATS, TRUNKS, LegacyFormat
from zoo.pretrained.download import file_digests


def read_legacy(path: str | Path, safe_route: str = "") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, any failure as a one-line ZooError."""
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"legacy checkpoint {path} does not exist")
    try:
        return read_checkpoint_file(path)
    except UnreadableCheckpoint as err:  # weights_only refusals, truncated files, non-checkpoints alike
        raise ZooError(f"{path} cannot be read with torch.load(weights_only=True): {err.reason}; legacy checkpoints "
                       f"are only imported as plain tensors and containers{safe_route}") from None


def sha256_of(path: str | Path) -> str:
    return file_digests(path, ("sha256",))["sha256"]


def top_level(ckpt: Any) -> Any:
    """What a checkpoint holds at its top, for an error: its first five keys, or its type."""
    return sorted(map(str, ckpt))[:5] if isinstance(ckpt, Mapping) else type(ckpt).__name__


def layout_error(format: str, path: str, detail: str) -> ZooError:
    return ZooError(f"unknown legacy key layout for format {format!r} in {Path(path).name}: {detail}; "
                    f"known formats: {sorted(FORMATS)}")


def tensors_only(state: Any, format: str, path: str) -> Dict[str, Tensor]:
    if not isinstance(state, Mapping):
        raise layout_error(format, path, f"it holds a {type(state).__name__}, not a state dict")
    not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(v, Tensor))
    if not_tensors:
        raise layout_error(format, path, f"non-tensor entries {not_tensors[:5]} where a state dict belongs")
    return dict(state)


def lightning_state(ckpt: Any, path: str, format: str = "") -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """A Lightning checkpoint's ``state_dict`` and ``hyper_parameters``."""
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        top = top_level(ckpt)
        raise layout_error(format, path, f"not a Lightning checkpoint (no 'state_dict'; top level {top})")
    hparams = ckpt.get("hyper_parameters")
    return tensors_only(ckpt["state_dict"], format, path), dict(hparams) if isinstance(hparams, Mapping) else {}


def plain_state(ckpt: Any, path: str, format: str = "") -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """A bare state dict, or one under ``state_dict`` beside metadata (``epoch``, ``arch``, ``optimizer`` ...)."""
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else ckpt
    return tensors_only(state, format, path), {}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested dicts of tensors -> one dict with dotted keys (VISSL nests trunk and heads)."""
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def split_keys(state: Mapping[str, Tensor], fmt: LegacyFormat, path: str) -> Tuple[Dict[str, Tensor], Dict[str, int]]:
    """The trunk's tensors under torchvision-style names, and how many keys each dropped prefix held."""
    pattern = TRUNKS[fmt.kind].pattern
    inner: Dict[str, Tensor] = {}
    origin: Dict[str, str] = {}
    dropped: Counter = Counter()
    unmatched: List[str] = []
    optional = bool(fmt.options.get("prefix_optional"))  # e.g. swav weights saved without DistributedDataParallel
    for key, value in state.items():
        owner = next((p for p in fmt.dropped if key.startswith(p)), None)
        if owner is not None:
            dropped[owner] += 1
            continue
        if key.startswith(fmt.prefix):
            sub = key[len(fmt.prefix):]
        elif optional:
            sub = key
        else:
            unmatched.append(key)
            continue
        inside = next((p for p in fmt.inner_dropped if sub.startswith(p)), None)
        if inside is not None:
            dropped[(fmt.prefix if key.startswith(fmt.prefix) else "") + inside] += 1
            continue
        name = fmt.rename(sub) if fmt.rename else sub
        if not pattern.match(name):
            unmatched.append(key)
        elif name in inner:
            raise layout_error(fmt.name, path, f"{key!r} and {origin[name]!r} both map to trunk key {name!r}")
        else:
            inner[name], origin[name] = value, key
    anchor = TRUNKS[fmt.kind].anchor
    if unmatched or anchor not in inner:
        detail = f"{len(unmatched)} key(s) match none of its patterns" if unmatched else f"no encoder {anchor} found"
        raise layout_error(fmt.name, path, f"{detail}, e.g. {sorted(unmatched)[:5] or sorted(state)[:5]} (expected "
                                           f"a {fmt.kind} trunk under {fmt.prefix!r}; dropped: {list(fmt.dropped)})")
    return inner, dict(sorted(dropped.items()))


def plain(value: Any) -> Any:
    """JSON-safe copy of hyper-parameters (anything unusual becomes its repr)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    ok = value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and abs(value) < 1e308)
    return value if ok else repr(value)


def imported_training(format: str, basename: str, ckpt: Any) -> Dict[str, Any]:
    """The ``training`` block of an imported folder's config: where it came from, and the checkpoint's counters."""
    training: Dict[str, Any] = {"source": f"imported from {format} checkpoint {basename}"}
    counters = ckpt if isinstance(ckpt, Mapping) else {}
    for key in ("epoch", "global_step"):
        if isinstance(counters.get(key), int) and not isinstance(counters.get(key), bool):
            training[f"checkpoint_{key}"] = counters[key]
    return training
