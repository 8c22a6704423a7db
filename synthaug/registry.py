"""One registry type for everything chosen by name: architectures, losses, augmentations, classifiers, metrics,
writers. The CLI takes its choices from `names()`."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from synthaug.errors import SynthaugError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; duplicate names raise, unknown names give a one-line error listing the choices."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register `entry` under `name`."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        """The entry registered as `name`."""
        try:
            return self._entries[name]
        except KeyError:
            raise SynthaugError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
