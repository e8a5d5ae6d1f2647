"""The registry of legacy checkpoint formats: one ``LegacyFormat`` per released layout, registered by name.

A format says where a release keeps its trunk's tensors, which other tensors it holds (heads, momentum encoders,
queues, online classifiers: dropped, each by name), how the trunk's names map to the zoo's encoder, the input the
original expects, the release's licence and, for known files, the accuracy its authors report. Adding a family of
formats (AMDIM, say) is one new module that calls ``register_format`` (and, for a new trunk layout, ``register_trunk``)
plus one import line in ``zoo/pretrained/convert/__init__.py``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

from torch import Tensor

from zoo.errors import UnknownNameError, ZooError
from zoo.pretrained.licenses import check_license
from zoo.spec import Part

Unwrap = Callable[[Any, str, str], Tuple[Dict[str, Tensor], Dict[str, Any]]]  # (ckpt, file, format) -> state, hparams


class Reported(NamedTuple):
    """An accuracy a release's authors state for one file, quoted with its source (never measured here)."""

    metric: str   # e.g. "imagenet/linear_top1"
    value: float  # as the release states it, in percent
    source: str   # where the release states it: repository and file (and table)

    def to_config(self) -> Dict[str, Any]:
        return {"by": "reported by the original authors (not measured by contrastive-zoo)", "metric": self.metric,
                "value": self.value, "source": self.source}


class Preprocess(NamedTuple):
    """The input a release expects: per-channel mean/std on [0, 1] pixels, and its evaluation size."""

    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    size: int
    why: str  # the original code that fixes it


@dataclass(frozen=True)
class LegacyFormat:
    """One released checkpoint layout (see the module docstring)."""

    name: str
    source: str                      # the original project's loading code the layout follows: "owner/repo path"
    # the release's licence (SPDX-like id, as its repository states it); None where files under one format carry
    # different licences (VISSL re-hosts other projects' weights): each import must then name its licence
    license: Optional[str]
    unwrap: Unwrap                   # the flat state dict (and hyper-parameters) inside the loaded file
    prefix: str                      # where the trunk's keys live in that state dict
    method: Optional[str] = None     # the method row; None: from the checkpoint or the caller (generic frameworks)
    dropped: Tuple[str, ...] = ()    # other key prefixes of the state dict, dropped by name
    inner_dropped: Tuple[str, ...] = ()  # prefixes inside the trunk that are not trunk (an fc head), dropped
    kind: str = "resnet"             # the trunk's key layout, a registered ``Trunk``
    rename: Optional[Callable[[str], str]] = None  # original trunk name -> torchvision name (identity if None)
    check: Optional[Callable[[Mapping[str, Tensor], str], None]] = None  # refuses variants it cannot express
    options: Mapping[str, Any] = field(default_factory=dict)  # trunk options (pads_input, small_stem_padding...)
    preprocess: Optional[Preprocess] = None  # fixed input; None: the dataset's preset
    reported: Mapping[str, Reported] = field(default_factory=dict)  # known file name -> its authors' figure

    def __post_init__(self) -> None:
        if self.license is not None:
            check_license(self.license, f"legacy format {self.name!r}")


class TrunkResult(NamedTuple):
    part: Part                       # the zoo encoder part the trunk loads into
    state: Dict[str, Tensor]         # its weights under the zoo encoder's names
    preset: str                      # the dataset preset its shape suggests (input normalisation when none given)
    grid: Optional[Tuple[int, int]]  # (patch, overlap) for patch-grid encoders
    unused: Tuple[str, ...] = ()    # trunk keys the original never applies (AMDIM's use_bn=False norms)


class Trunk(NamedTuple):
    """A trunk key layout: ``pattern`` matches every trunk key (after ``rename``); ``convert`` builds the part."""

    pattern: Any  # compiled regex
    convert: Callable[[Dict[str, Tensor], LegacyFormat, Mapping[str, Any]], TrunkResult]
    anchor: str = "conv1.weight"  # a key every trunk of this layout has: none found means a wrong prefix


class FormatRegistry(Mapping[str, LegacyFormat]):
    """Name -> ``LegacyFormat``; registering a name twice raises, unknown names list the close matches."""

    def __init__(self) -> None:
        self._formats: Dict[str, LegacyFormat] = {}

    def register(self, fmt: LegacyFormat) -> LegacyFormat:
        if fmt.name in self._formats:
            raise ZooError(f"legacy checkpoint format {fmt.name!r} is already registered "
                           f"(from {self._formats[fmt.name].source}); pick another name")
        self._formats[fmt.name] = fmt
        return fmt

    def get_format(self, name: str) -> LegacyFormat:
        if name in self._formats:
            return self._formats[name]
        close = difflib.get_close_matches(str(name), self.names(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownNameError(f"unknown legacy checkpoint format {name!r}; known formats: "
                               f"{', '.join(self.names())}{hint}")

    def names(self) -> List[str]:
        return sorted(self._formats)

    def __getitem__(self, name: str) -> LegacyFormat:
        return self._formats[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._formats)


FORMATS = FormatRegistry()
TRUNKS: Dict[str, Trunk] = {}


def register_format(fmt: LegacyFormat) -> LegacyFormat:
    return FORMATS.register(fmt)


def register_trunk(kind: str, trunk: Trunk) -> Trunk:
    if kind in TRUNKS:
        raise ZooError(f"legacy trunk layout {kind!r} is already registered")
    TRUNKS[kind] = trunk
    return trunk
