"""The rule behind every verdict of an ``explore`` report: a paired t-interval over seeds.

Every configuration of a grid runs with the same seeds, and a seed fixes the data order, the augmentation draws
and the initial weights. So the base and an alternative are compared seed by seed: ``d_s = alt(s) - base(s)``,
which removes the part of the seed-to-seed variation the two share. Over the ``n`` seeds both have,

    mean(d) ± t(1 - α/2, n - 1) · sd(d) / √n        (sd with n - 1 in the denominator)

is the (1 - α) confidence interval of the true difference, assuming the paired differences are roughly normal. A
difference is called measurable when its interval excludes zero ("higher" or "lower at 95%"), otherwise "no
measurable difference at 95%" -- which says the seeds could not tell, not that the two are equal: the interval's
width is the size of effect this grid could have detected. One pair gives no interval at all.

Under the factorial design a pair is the same seed and the same choices on every other axis.

scipy is not a dependency, so the t quantile is computed here: for an integer df the two-sided probability
``P(|T| <= t)`` has a closed form in ``θ = atan(t / √df)`` (Abramowitz & Stegun 26.7.3-4), and the quantile is
found by bisection on it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Optional, Sequence

#: the confidence level of every verdict
LEVEL = 0.95
RULE = (f"paired by seed, d = alternative − base; {LEVEL:.0%} t-interval mean(d) ± t(df = n − 1) · sd(d) / √n; "
        "measurable when the interval excludes 0")
NO_DIFFERENCE = f"no measurable difference at {LEVEL:.0%}"


def t_central(t: float, df: int) -> float:
    """``P(|T| <= t)`` for Student's t with ``df`` degrees of freedom (an integer >= 1), ``t >= 0``."""
    if df < 1 or df != int(df):
        raise ValueError(f"degrees of freedom must be a positive integer, got {df!r}")
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:  # odd: (2/π)(θ + sinθ cosθ (1 + 2/3 c² + 2·4/(3·5) c⁴ + ... up to c^(df-3)))
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    term, total = 1.0, 1.0  # even: sinθ (1 + 1/2 c² + 1·3/(2·4) c⁴ + ... up to c^(df-2))
    for k in range(1, df // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


def t_quantile(level: float, df: int) -> float:
    """The ``t`` with ``P(|T| <= t) = level``: the multiplier of a two-sided ``level`` interval (1 - α/2 quantile)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    low, high = 0.0, 1.0
    while t_central(high, df) < level:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if t_central(mid, df) < level:
            low = mid
        else:
            high = mid
    return (low + high) / 2


@dataclass(frozen=True)
class Comparison:
    """The paired comparison of an alternative with the base over ``n`` shared seeds."""

    n: int
    mean: float
    low: Optional[float]   # the interval; None with fewer than two pairs
    high: Optional[float]

    @property
    def verdict(self) -> str:
        if self.low is None or self.high is None:
            return "one seed: no interval"
        if self.low > 0:
            return f"higher at {LEVEL:.0%}"
        if self.high < 0:
            return f"lower at {LEVEL:.0%}"
        return NO_DIFFERENCE

    @property
    def measurable(self) -> bool:
        return self.verdict in (f"higher at {LEVEL:.0%}", f"lower at {LEVEL:.0%}")

    def text(self, scale: float = 1.0, digits: int = 4) -> str:
        """``+0.0201 [-0.0305, +0.0707]: no measurable difference at 95%`` (values times ``scale``)."""
        mean = f"{self.mean * scale:+.{digits}f}"
        if self.low is None or self.high is None:
            return f"{mean} ({self.verdict})"
        return f"{mean} [{self.low * scale:+.{digits}f}, {self.high * scale:+.{digits}f}]: {self.verdict}"


def paired(differences: Sequence[float], level: float = LEVEL) -> Optional[Comparison]:
    """The t-interval of the mean of paired differences (``alt - base`` per seed); None without any pair."""
    n = len(differences)
    if n == 0:
        return None
    mean = statistics.fmean(differences)
    if n == 1:
        return Comparison(1, mean, None, None)
    half = t_quantile(level, n - 1) * statistics.stdev(differences) / math.sqrt(n)
    return Comparison(n, mean, mean - half, mean + half)
