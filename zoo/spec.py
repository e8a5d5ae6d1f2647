"""Frozen records that make a method *data*: one named, registered part per characteristic.

Falcon & Cho (arXiv:2009.00104) characterise every contrastive method by "(1) data augmentation pipeline,
(2) encoder selection, (3) representation extraction, (4) similarity measure, and (5) loss function". A
``Method`` is exactly that: five ``Part`` records, each a registry name plus explicit keyword arguments. The same
record is trained by the one generic recipe, written into ``config.json`` on export and printed on model cards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, Mapping, Optional, Tuple, cast

from zoo.errors import ZooError

CHARACTERISTICS: Tuple[str, ...] = ("augment", "encoder", "extract", "similarity", "loss")
CHARACTERISTIC_TITLES = {
    "augment": "(1) data augmentation pipeline",
    "encoder": "(2) encoder",
    "extract": "(3) representation extraction",
    "similarity": "(4) similarity measure",
    "loss": "(5) loss",
}


def _freeze(value: Any) -> Any:
    if isinstance(value, Part):
        return value
    if isinstance(value, Mapping):
        if "name" in value:
            return Part.from_dict(value)
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Part):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Part:
    """A registered part: ``name`` in its registry and the explicit keyword arguments it is built with."""

    name: str
    args: Tuple[Tuple[str, Any], ...] = ()

    @staticmethod
    def of(name: str, **kwargs: Any) -> "Part":
        return Part(name, tuple(sorted((k, _freeze(v)) for k, v in kwargs.items())))

    @property
    def kwargs(self) -> Dict[str, Any]:
        """Keyword arguments as plain Python values (lists, dicts) ready for the factory."""
        return {k: _thaw(v) for k, v in self.args}

    def merged(self, overrides: Mapping[str, Any]) -> "Part":
        """A copy with ``overrides`` applied: a different ``name`` replaces the part, else kwargs are merged."""
        overrides = dict(overrides)
        name = overrides.pop("name", self.name)
        base = self.kwargs if name == self.name else {}
        base.update(overrides)
        return Part.of(name, **base)

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, **self.kwargs}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> "Part":
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise ZooError(f"a part must be a mapping with a string 'name', got {data!r}")
        kwargs = {k: v for k, v in data.items() if k != "name"}
        return Part.of(data["name"], **kwargs)

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={_thaw(v)!r}" for k, v in self.args)
        return f"{self.name}({inner})"


@dataclass(frozen=True)
class Method:
    """A contrastive method as a row of the framework's table."""

    name: str
    augment: Part
    encoder: Part
    extract: Part
    similarity: Part
    loss: Part
    paper: str = ""
    summary: str = ""

    def parts(self) -> Dict[str, Part]:
        return {c: getattr(self, c) for c in CHARACTERISTICS}

    def with_overrides(self, name: Optional[str] = None, **overrides: Optional[Mapping[str, Any]]) -> "Method":
        """Apply per-characteristic overrides (see ``Part.merged``); ``None`` keeps the row's part."""
        unknown = sorted(set(overrides) - set(CHARACTERISTICS))
        if unknown:
            raise ZooError(f"unknown characteristic(s) {unknown}; a method has {list(CHARACTERISTICS)}")
        changes: Dict[str, Any] = {c: getattr(self, c).merged(o) for c, o in overrides.items() if o is not None}
        if name is not None:
            changes["name"] = name
        return replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"name": self.name, "paper": self.paper, "summary": self.summary}
        out.update({c: p.to_dict() for c, p in self.parts().items()})
        return out

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> "Method":
        if not isinstance(data, Mapping):
            raise ZooError(f"a method must be a mapping, got {type(data).__name__}")
        missing = [c for c in ("name",) + CHARACTERISTICS if c not in data]
        if missing:
            raise ZooError(f"method record is missing {missing}")
        return Method(
            name=str(data["name"]),
            paper=str(data.get("paper", "")),
            summary=str(data.get("summary", "")),
            **cast(Dict[str, Any], {c: Part.from_dict(data[c]) for c in CHARACTERISTICS}),
        )

    def table(self) -> str:
        """The method's five-part table in Markdown, as printed on model cards."""
        rows = ["| characteristic | part | arguments |", "|---|---|---|"]
        for c, p in self.parts().items():
            args = ", ".join(f"{k}={_thaw(v)}" for k, v in p.args) or "defaults"
            rows.append(f"| {CHARACTERISTIC_TITLES[c]} | `{p.name}` | {args} |")
        return "\n".join(rows)
