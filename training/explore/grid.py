"""The grid file: a base (recipe + method row), alternatives per characteristic, seeds and a budget per cell.

    name: paper_fmnist                                  # optional; default: the file's stem
    recipe: training/recipes/yadim/fashion_mnist.yaml   # the base; relative to the grid, the cwd or the repo
    method: yadim                                       # optional; default: the recipe's model.method
    base: {encoder: {ndf: 16}}                          # optional part overrides on top of the recipe
    fit: {data.init_args.root: /data/fmnist}            # optional extra ``fit`` options (--key value)
    settings: {trainer.precision: 32-true}              # optional: pin a hardware-dependent setting (see below)
    budget: {steps: 200}                                # or {seconds: 90}: per cell
    seeds: [0, 1]
    evaluation: {bank: 10000, test: 5000, seed: 0}      # optional subsets (null: the whole split)
    design: one_at_a_time                               # or factorial (``--factorial`` on the command line)
    carry: {augment: [size, mean, std], encoder: [in_channels, image_size]}   # the defaults
    axes:
      augment: [{name: amdim}, {label: simclr, name: simclr, strength: 0.5}]
      similarity: [{name: cosine, temperature: 0.1}]

An alternative is a part override exactly as a recipe writes one (``training.pretrain.module``): keyword arguments
merge into the base's part; a different ``name`` replaces the part, and then only the dataset knowledge listed in
``carry`` (image size, normalisation, input channels) comes along from the base's part, where the new part takes
it. ``label`` names the alternative in tables. Falcon & Cho (arXiv:2009.00104) vary one characteristic at a time
around YADIM; that is the default design, with every axis varied around the base.

``settings`` pins what the recipes leave to the machine (``trainer.precision``, ``model.channels_last``: ``auto``
resolves them from the hardware, ``training.pretrain.hardware``). Like the machine, they are outside a cell's id:
under ``auto`` the machine chose them anyway, so pinning the value earlier cells resolved to keeps those cells
valid, and new seeds run on another CPU the way the old ones ran. Every cell records the precision it ran in and
the report lists the precisions and machines beside the tables, so a grid that mixes them says so.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from zoo.errors import ZooError, first_line
from zoo.methods import get_method
from zoo.spec import CHARACTERISTICS

REPO = Path(__file__).resolve().parents[2]
DESIGNS = ("one_at_a_time", "factorial")
KEYS = ("name", "recipe", "method", "base", "fit", "settings", "budget", "seeds", "evaluation", "design", "carry",
        "axes")
#: the fit options ``settings`` may pin: chosen by the hardware under ``auto``, so outside a cell's id
SETTINGS = ("trainer.precision", "model.channels_last")
DEFAULT_CARRY = {"augment": ("size", "mean", "std", "channels"), "encoder": ("in_channels", "image_size")}
Model = Dict[str, Optional[Dict[str, Any]]]


@dataclass(frozen=True)
class Config:
    """One point of the design: an alternative (index, 0 = base) per axis and the five ``--model.*`` mappings."""

    label: str
    choices: Tuple[Tuple[str, int], ...]
    model: Tuple[Tuple[str, Any], ...]
    digest: str

    @property
    def key(self) -> str:
        return f"{slug(self.label)}-{self.digest[:6]}"

    def mapping(self, characteristic: str) -> Optional[Dict[str, Any]]:
        return json.loads(dict(self.model)[characteristic])


@dataclass(frozen=True)
class Cell:
    config: Config
    seed: int

    @property
    def id(self) -> str:
        return f"{self.config.key}_s{self.seed}"


@dataclass
class Grid:
    name: str
    path: str
    recipe: Path
    recipe_data: Dict[str, Any]
    method: Optional[str]
    budget: Dict[str, int]
    seeds: List[int]
    evaluation: Dict[str, Optional[int]]
    fit: Dict[str, Any]
    settings: Dict[str, Any]
    design: str
    carry: Dict[str, Tuple[str, ...]]
    recipe_model: Model
    base: Model
    axes: Dict[str, List[Tuple[str, Dict[str, Any]]]] = field(default_factory=dict)
    configs: List[Config] = field(default_factory=list)

    @property
    def cells(self) -> List[Cell]:
        return [Cell(c, s) for c in self.configs for s in self.seeds]

    def labels(self, axis: str) -> List[str]:
        return ["base"] + [label for label, _ in self.axes[axis]]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_").lower()[:60] or "cell"


def _fail(grid: str, where: str, err: BaseException | str) -> ZooError:
    reason = err if isinstance(err, str) else first_line(err)
    return ZooError(f"grid {grid}: {where}: {reason}")


def find_file(given: str, grid_path: Path) -> Path:
    """``given`` as it is, else beside the grid file, else under the repository root."""
    for candidate in (Path(given), grid_path.parent / given, REPO / given):
        if candidate.expanduser().is_file():
            return candidate.expanduser()
    raise ZooError(f"grid {grid_path}: recipe {given} not found (looked in the current folder, beside the grid "
                   f"and under {REPO})")


def read_yaml(path: Path, what: str) -> Dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ZooError(f"cannot read the {what} {path}: {first_line(err)}") from None
    if not isinstance(data, dict):
        raise ZooError(f"the {what} {path} is not a YAML mapping")
    return data


def row_part_name(method: Optional[str], characteristic: str) -> Optional[str]:
    return getattr(get_method(method), characteristic).name if method else None


def merge(current: Optional[Mapping[str, Any]], change: Mapping[str, Any], method: Optional[str], characteristic: str,
          carry: Tuple[str, ...]) -> Dict[str, Any]:
    """The override mapping after ``change``: kwargs merge; another part name replaces the part, keeping ``carry``."""
    from zoo.parts import REGISTRIES

    current = dict(current or {})
    old = current.get("name") or row_part_name(method, characteristic)
    new = change.get("name", old)
    if new == old:
        return {**current, **change}
    factory = REGISTRIES[characteristic].get(str(new))  # unknown names fail here, with the close matches
    params = inspect.signature(factory).parameters
    takes = any(p.kind is p.VAR_KEYWORD for p in params.values())
    resolved = dict(getattr(get_method(method), characteristic).kwargs) if method and not current.get("name") else {}
    resolved.update({k: v for k, v in current.items() if k != "name"})
    kept = {k: resolved[k] for k in carry if k in resolved and (takes or k in params)}
    return {**kept, **change}


def describe(change: Mapping[str, Any], old_name: Optional[str]) -> str:
    """A label for an alternative that has none: the part's name when it changes, and the arguments it sets."""
    args = ", ".join(f"{k}={v}" for k, v in change.items() if k != "name")
    name = change.get("name")
    if name and name != old_name:
        return f"{name}({args})" if args else str(name)
    return args or "unchanged"


def load_grid(path: str, factorial: Optional[bool] = None) -> Grid:
    """Read ``path``, resolve every alternative against the base and expand the design into configurations."""
    grid_path = Path(path)
    if not grid_path.is_file():
        raise ZooError(f"grid file {path} does not exist")
    data = read_yaml(grid_path, "grid file")
    gname = path
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise _fail(gname, "keys", f"unknown key(s) {unknown}; a grid has {list(KEYS)}")
    for key in ("recipe", "budget", "seeds", "axes"):
        if key not in data:
            raise _fail(gname, key, "missing")
    recipe = find_file(str(data["recipe"]), grid_path)
    recipe_data = read_yaml(recipe, "recipe")
    model = recipe_data.get("model") or {}
    method = data.get("method", model.get("method"))
    try:
        if method is not None:
            get_method(str(method))
    except ZooError as err:
        raise _fail(gname, "method", err) from None
    budget = _budget(gname, data["budget"])
    seeds = data["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise _fail(gname, "seeds", f"a list of distinct integers, got {seeds!r}")
    design = "factorial" if factorial else str(data.get("design", "one_at_a_time"))
    if design not in DESIGNS:
        raise _fail(gname, "design", f"{design!r} is not one of {list(DESIGNS)}")
    evaluation = _evaluation(gname, data.get("evaluation") or {})
    fit = data.get("fit") or {}
    if not isinstance(fit, dict):
        raise _fail(gname, "fit", "a mapping of fit options (e.g. data.init_args.root: DIR)")
    settings = data.get("settings") or {}
    if not isinstance(settings, dict) or sorted(set(settings) - set(SETTINGS)):
        raise _fail(gname, "settings", f"pins only {list(SETTINGS)} (other fit options go in fit:), got {settings!r}")
    carry = {c: tuple(v) for c, v in {**DEFAULT_CARRY, **(data.get("carry") or {})}.items()}
    recipe_model: Model = {c: model.get(c) for c in CHARACTERISTICS}
    base: Model = dict(recipe_model)
    for c, change in (data.get("base") or {}).items():
        if c not in CHARACTERISTICS or not isinstance(change, dict):
            raise _fail(gname, f"base.{c}", f"base overrides are part mappings keyed by {list(CHARACTERISTICS)}")
        base[c] = _merge(gname, f"base.{c}", base[c], change, method, c, carry)
    grid = Grid(name=str(data.get("name") or grid_path.stem), path=path, recipe=recipe, recipe_data=recipe_data,
                method=method, budget=budget, seeds=seeds, evaluation=evaluation, fit=fit, settings=settings,
                design=design,
                carry=carry, recipe_model=recipe_model, base=base)
    axes = data["axes"]
    if not isinstance(axes, dict) or not axes:
        raise _fail(gname, "axes", f"a mapping from characteristics {list(CHARACTERISTICS)} to lists of alternatives")
    for axis, alternatives in axes.items():
        if axis not in CHARACTERISTICS:
            raise _fail(gname, f"axes.{axis}", f"unknown characteristic; a method has {list(CHARACTERISTICS)}")
        if not isinstance(alternatives, list) or not alternatives:
            raise _fail(gname, f"axes.{axis}", "a non-empty list of part overrides, e.g. [{name: cosine}]")
        grid.axes[axis] = []
        for i, alt in enumerate(alternatives):
            if not isinstance(alt, dict):
                raise _fail(gname, f"axes.{axis}[{i}]", f"an alternative is a mapping like {{name: ...}}, got {alt!r}")
            alt = dict(alt)
            label = str(alt.pop("label", "")) or describe(alt, (base[axis] or {}).get("name")
                                                            or row_part_name(method, axis))
            grid.axes[axis].append((label, _merge(gname, f"axes.{axis}[{i}]", base[axis], alt, method, axis, carry)))
    grid.configs = expand(grid)
    return grid


def _merge(gname: str, where: str, current, change, method, characteristic, carry) -> Dict[str, Any]:
    try:
        return merge(current, change, method, characteristic, carry.get(characteristic, ()))
    except ZooError as err:
        raise _fail(gname, where, err) from None


def _budget(gname: str, budget: Any) -> Dict[str, int]:
    if not isinstance(budget, dict) or len(budget) != 1 or next(iter(budget)) not in ("steps", "seconds") \
            or not isinstance(next(iter(budget.values())), int) or next(iter(budget.values())) < 1:
        raise _fail(gname, "budget", f"one of {{steps: N}} or {{seconds: N}} with N >= 1, got {budget!r}")
    return dict(budget)


def _evaluation(gname: str, evaluation: Any) -> Dict[str, Optional[int]]:
    unknown = sorted(set(evaluation) - {"bank", "test", "seed"}) if isinstance(evaluation, dict) else ["?"]
    if unknown:
        raise _fail(gname, "evaluation", f"takes bank, test (subset sizes or null) and seed, got {evaluation!r}")
    out = {"bank": evaluation.get("bank"), "test": evaluation.get("test"), "seed": evaluation.get("seed", 0)}
    for key, value in out.items():
        if value is not None and (not isinstance(value, int) or value < (0 if key == "seed" else 1)):
            raise _fail(gname, f"evaluation.{key}", f"a positive integer or null, got {value!r}")
    return out


def expand(grid: Grid) -> List[Config]:
    """One-at-a-time: the base, then each alternative of each axis alone. Factorial: every combination."""
    axes = list(grid.axes)
    if grid.design == "factorial":
        combos = list(itertools.product(*[range(len(grid.axes[a]) + 1) for a in axes]))
    else:
        combos = [tuple(0 for _ in axes)]
        combos += [tuple(i + 1 if a == axis else 0 for a in axes) for axis in axes for i in range(len(grid.axes[axis]))]
    configs, seen = [], set()
    for combo in combos:
        model = dict(grid.base)
        names = []
        for axis, index in zip(axes, combo, strict=True):
            if index:
                label, mapping = grid.axes[axis][index - 1]
                model[axis] = mapping
                names.append(f"{axis}={label}")
        frozen = tuple((c, json.dumps(model[c], sort_keys=True)) for c in CHARACTERISTICS)
        identity = {"recipe": recipe_identity(grid.recipe), "method": grid.method,
                    "model": frozen, "fit": grid.fit, "budget": grid.budget, "evaluation": grid.evaluation}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
        config = Config(label=", ".join(names) or "base", choices=tuple(zip(axes, combo, strict=True)), model=frozen,
                        digest=digest)
        if config.key not in seen:
            seen.add(config.key)
            configs.append(config)
    return configs


def recipe_identity(path: Path) -> str:
    """The sha256 of what a recipe trains: its YAML, parsed, without the callbacks that only measure (online kNN
    and linear accuracy, ``training.plan.recipe.ONLINE_EVAL``), so that moving or adding such a callback does not
    turn finished cells into new ones. (The committed cells were renamed once, when the online callbacks moved from
    ``training.pretrain.callbacks`` to ``training.downstream.online`` and this rule replaced a hash of the file.)"""
    import yaml

    from training.plan.recipe import ONLINE_EVAL

    recipe = yaml.safe_load(path.read_text())
    trainer = dict(recipe.get("trainer") or {})
    trainer["callbacks"] = [c for c in trainer.get("callbacks") or []
                            if not (isinstance(c, dict) and c.get("class_path") in ONLINE_EVAL)]
    return hashlib.sha256(json.dumps({**recipe, "trainer": trainer}, sort_keys=True).encode()).hexdigest()
