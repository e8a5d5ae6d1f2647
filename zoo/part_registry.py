"""Part registries: one per characteristic of the framework (not to be confused with the weights registry).

A registry maps a name to a factory (a class or a function taking explicit keyword arguments). Registering a
name twice raises, so two modules can never silently shadow each other; looking up an unknown name raises with
the close matches, so a typo in a recipe is a one-line fix.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Dict, Generic, Iterator, List, TypeVar

from zoo.errors import UnknownNameError, ZooError
from zoo.values import check_values, part_rule

T = TypeVar("T")


class PartRegistry(Generic[T]):
    """Name -> factory map for one kind of part (``kind`` is used in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: Dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REGISTRY.register("name")`` above a class or factory function."""

        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ZooError(
                    f"{self.kind} {name!r} is already registered (by {_qualname(self._factories[name])}); "
                    f"pick another name for {_qualname(factory)}"
                )
            self._factories[name] = factory
            return factory

        return add

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; unknown names raise with the close matches."""
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names())) from None

    def build(self, name: str, kwargs: Dict[str, Any] | None = None) -> T:
        """Call the factory with explicit keyword arguments, reporting unknown keywords and values that
        ``zoo.values.part_rule`` refuses (a text temperature, a reversed crop scale) clearly."""
        factory = self.get(name)
        kwargs = dict(kwargs or {})
        check_kwargs(factory, kwargs, f"{self.kind} {name!r}")
        check_values(kwargs, part_rule, prefix=f"{self.kind} {name!r}: ")
        return factory(**kwargs)

    def names(self) -> List[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def unknown_name_message(kind: str, name: str, known: List[str]) -> str:
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (registered: {', '.join(known) or 'none'})"


def check_kwargs(factory: Callable[..., Any], kwargs: Dict[str, Any], what: str) -> None:
    """Raise ZooError naming the unknown or missing keyword arguments of ``factory``."""
    params = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        bad = unknown[0]
        close = difflib.get_close_matches(bad, accepted, n=2, cutoff=0.5)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ZooError(f"{what} got unknown argument(s) {unknown}{hint}; it accepts {accepted}")
    missing = [n for n, p in params.items() if p.default is p.empty and p.kind is not p.VAR_POSITIONAL
               and n not in kwargs]
    if missing:
        raise ZooError(f"{what} needs argument(s) {missing}; set them in the recipe")


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
