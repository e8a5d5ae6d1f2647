"""Progress of any loop a user waits on (feature extraction, kNN, the linear probe, fine-tuning): what it does, how
far it is (done/total) and how long is left, as a line on stderr. No Lightning: ``training.downstream`` uses it.

The rule, decided once here so that every stage behaves the same:

- ``quiet`` (the evaluate command's and the demo's ``--quiet``, or :func:`reporting` ``(quiet=True)``) or the
  environment variable ``ZOO_QUIET=1`` (which also silences the download bar, ``zoo.pretrained.download``):
  nothing at all.
- stderr is a terminal, or ``ZOO_PROGRESS=1`` is set (a log one wants to watch): ``live``: a line when a stage
  starts, then a line whenever the next one would otherwise come more than ``every`` seconds (10) after the last,
  then the stage's final line.
- otherwise (pytest, CI logs, ``2> file``): nothing, as under ``quiet``: a log gets the command's results, not
  its progress (``ZOO_PROGRESS=1`` brings the live lines to a log; ``final``, one summary line per stage, can be
  asked for with :func:`reporting` ``(mode="final")``).

Lines are predicted, not late: a line is printed when waiting for the next update would pass the ``every``
deadline (the average time between updates tells when that is), so a steady loop prints at least every ``every``
seconds. Where one update itself takes longer than that, the line comes with each update.

The time source, the stream and the mode can be injected (:func:`reporting`), which is how the tests drive a loop
with a fake clock without sleeping.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator, Optional, TextIO, TypeVar

T = TypeVar("T")
R = TypeVar("R")
OFF, FINAL, LIVE = "off", "final", "live"
EVERY_SECONDS = 10.0


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Reporting:
    """How loops report in the current context: ``quiet``, a forced ``mode``, the ``stream`` (default: stderr at
    the time of the line), the ``clock``, the ``every`` interval and a ``prefix`` naming the outer step."""

    quiet: bool = False
    mode: Optional[str] = None
    stream: Optional[TextIO] = None
    clock: Callable[[], float] = time.monotonic
    every: float = EVERY_SECONDS
    prefix: str = ""

    def silenced(self) -> bool:
        """Asked for silence (``--quiet``, ``ZOO_QUIET=1`` or mode off), whatever the stream is: the training
        step line (``progress.ProgressLine``) prints in logs too, unless this says no."""
        return self.quiet or _env_flag("ZOO_QUIET") or self.mode == OFF

    def resolved_mode(self) -> str:
        if self.mode is not None:
            return self.mode
        if self.quiet or _env_flag("ZOO_QUIET"):
            return OFF
        stream = self.stream or sys.stderr
        isatty = getattr(stream, "isatty", None)
        return LIVE if _env_flag("ZOO_PROGRESS") or (isatty is not None and isatty()) else OFF


_CURRENT: contextvars.ContextVar[Optional[Reporting]] = contextvars.ContextVar("zoo_loop_reporting", default=None)


def current() -> Reporting:
    return _CURRENT.get() or Reporting()


@contextlib.contextmanager
def reporting(**changes) -> Iterator[Reporting]:
    """Change how loops inside the ``with`` report (any :class:`Reporting` field; ``prefix`` is appended to the
    outer one, and ``quiet`` once set stays set inside)."""
    outer = current()
    if "prefix" in changes:
        changes["prefix"] = outer.prefix + changes["prefix"]
    if outer.quiet:
        changes["quiet"] = True
    token = _CURRENT.set(replace(outer, **changes))
    try:
        yield current()
    finally:
        _CURRENT.reset(token)


class LoopProgress:
    """One stage: ``what`` ("extracting features"), ``total`` units of ``unit`` ("images"); call :meth:`update`
    after each piece of work and :meth:`finish` at the end (``with`` does it)."""

    def __init__(self, what: str, total: Optional[int], unit: str = "batches") -> None:
        self.settings = current()
        self.mode = self.settings.resolved_mode()
        self.what, self.total, self.unit = self.settings.prefix + what, total, unit
        self.done, self.updates, self.detail = 0, 0, ""
        self.start = self.last = self.settings.clock()
        self.finished = False
        if self.mode == LIVE:
            self._print(f"{self.what}: {self._count()} {self.unit}")

    def __enter__(self) -> "LoopProgress":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.finish()

    def _print(self, text: str) -> None:
        print(text, file=self.settings.stream or sys.stderr, flush=True)

    def _count(self) -> str:
        if not self.total:
            return str(self.done)
        return f"{self.done}/{self.total} ({100 * self.done / self.total:.0f}%)"

    def update(self, n: int = 1, *, done: Optional[int] = None, detail: Optional[str] = None) -> None:
        """``n`` more units done (or ``done`` in all); ``detail`` names where the loop is (a weight decay)."""
        self.done = self.done + n if done is None else done
        if self.total:  # an "at most" total (L-BFGS evaluations) can be overshot by a line search
            self.done = min(self.done, self.total)
        self.updates += 1
        if detail is not None:
            self.detail = detail
        if self.mode != LIVE:
            return
        now = self.settings.clock()
        per_update = (now - self.start) / self.updates
        if now - self.last + per_update >= self.settings.every:
            self.last = now
            self._print(self.line(now))

    def line(self, now: float) -> str:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.what}: {self._count()} {self.unit}"
        if self.detail:
            text += f", {self.detail}"
        if rate > 0:
            text += f", {self._rate(rate)}"
            if self.total:
                text += f", ETA {duration(max(0, self.total - self.done) / rate)}"
        return text

    def over(self, items: Iterable[T], size: Callable[[T], int] = lambda item: 1) -> Iterator[T]:
        """Yield ``items``, counting ``size(item)`` units once the loop body is done with each; the final line
        when they run out (not when the body raised)."""
        for item in items:
            yield item
            self.update(size(item))
        self.finish()

    def _rate(self, rate: float) -> str:
        """Units per second, or seconds per unit for slow loops (0.04 batches/s reads as "25.0 s each")."""
        if rate < 1:
            return f"{1 / rate:.1f} s each"
        return f"{rate:.1f} {self.unit}/s" if rate < 100 else f"{rate:.0f} {self.unit}/s"

    def finish(self, summary: str = "") -> None:
        """The stage's final line (in ``live`` and ``final`` modes): what, how many, how long, and ``summary``."""
        if self.finished:
            return
        self.finished = True
        if self.mode == OFF:
            return
        elapsed = self.settings.clock() - self.start
        rate = f", {self._rate(self.done / elapsed)}" if elapsed > 0 and self.done else ""
        took = f"{elapsed:.1f} s" if elapsed < 60 else duration(elapsed)
        self._print(f"{self.what}: {self.done} {self.unit} in {took}{rate}"
                    + (f"; {summary}" if summary else ""))


def loop_size(batches: object) -> Optional[int]:
    """How many images a loader yields: its dataset's length (None where it has none, e.g. a generator)."""
    data = getattr(getattr(batches, "loader", batches), "dataset", None)
    try:
        return len(data) if data is not None else None
    except TypeError:
        return None


def tracked(items: Iterable[T], what: str, total: Optional[int], unit: str = "batches",
            size: Callable[[T], int] = lambda item: 1) -> Iterator[T]:
    """``items`` reported as one stage: ``for x in tracked(batches, "extracting features", n, "images", len)``."""
    return LoopProgress(what, total, unit).over(items, size)


def honours_quiet(command: Callable[..., R]) -> Callable[..., R]:
    """A command with a ``quiet: bool = False`` option runs its loops under ``reporting(quiet=quiet)`` (the
    signature and docstring stay the command's own: the CLI builds its options from them)."""
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> R:
        with reporting(quiet=bool(kwargs.get("quiet", False))):
            return command(*args, **kwargs)

    return run
