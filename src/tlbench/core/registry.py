"""One registry per axis of the study (dataset, backbone, strategy, augmentation).

A registry maps a name to a small unit (a function or class). Looking up an
unknown name is an error that lists the valid names, so a typo in a config or
spec is reported with what the user could have written instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from tlbench.core.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of units for one axis of the study."""

    def __init__(self, axis: str):
        self.axis = axis
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (names are unique per axis)."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.axis} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` without a decorator."""
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        """Return the unit registered as ``name`` or raise :class:`UnknownNameError`."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.axis} {name!r}; valid {self.axis} names: "
                + ", ".join(sorted(self._items))
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
