"""Allowed values of settings, checked where they are read, each refused with one line naming the setting, the
value and what is allowed.

``PART_VALUES`` holds the part arguments that mean the same in every part that takes them (a ``temperature`` is
always a positive number, a crop scale always a fraction range); ``PartRegistry.build`` checks them before a
part is built, and ``python -m training fit`` checks them, under their recipe keys, before anything is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from zoo.errors import ZooError


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool, not text)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class BadValue(ZooError):
    """A setting whose value is not allowed; the message names the setting, the value and what is allowed."""


@dataclass(frozen=True)
class Allowed:
    """What a setting may be: ``test`` says whether a value is allowed, ``text`` says it in words."""

    test: Callable[[Any], bool]
    text: str

    def check(self, key: str, value: Any) -> None:
        if not self.test(value):
            raise BadValue(f"{key} is {value!r}; it must be {self.text}")


def _fraction_range(value: Any) -> bool:
    return value is None or (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(is_number, value))
                             and 0 < value[0] <= value[1] <= 1)


def integer_at_least(low: int) -> Allowed:
    """An int (not a bool) of at least ``low``."""
    return Allowed(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low, f"an integer >= {low}")


POSITIVE = Allowed(lambda v: is_number(v) and v > 0, "a number > 0")
NON_NEGATIVE = Allowed(lambda v: is_number(v) and v >= 0, "a number >= 0")
PROBABILITY = Allowed(lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
PROBABILITIES = Allowed(lambda v: isinstance(v, (list, tuple)) and all(PROBABILITY.test(p) for p in v),
                        "a list of numbers in [0, 1]")
CROP_SCALE = Allowed(_fraction_range, "null (the whole image) or [lo, hi] with 0 < lo <= hi <= 1")
OPTIONAL_POSITIVE = Allowed(lambda v: v is None or POSITIVE.test(v), "null or a number > 0")

#: part arguments with one meaning in every part (by name; ``*_prob`` and ``*_probs`` are probabilities)
PART_VALUES = {"temperature": POSITIVE, "tanh_clip": OPTIONAL_POSITIVE, "strength": NON_NEGATIVE,
               "crop_scale": CROP_SCALE, "large_scale": CROP_SCALE, "small_scale": CROP_SCALE}


def part_rule(name: str) -> Optional[Allowed]:
    """The rule for a part argument called ``name``, or None when its values are the part's own business."""
    if name.endswith("_prob"):
        return PROBABILITY
    if name.endswith("_probs"):
        return PROBABILITIES
    return PART_VALUES.get(name)


def check_values(values: Mapping[str, Any], rule_of: Callable[[str], Optional[Allowed]], prefix: str = "") -> None:
    """Check each of ``values`` that ``rule_of`` (e.g. ``part_rule``, or a dict's ``get``) has a rule for; the
    first bad one raises ``BadValue`` (a ``ZooError``) naming it ``prefix + key``."""
    for key, value in values.items():
        rule = rule_of(key)
        if rule is not None:
            rule.check(prefix + key, value)
