"""One object per key (a Core, a Database, an engine), made on first use, gone with the key.

What a process holds for one database or one Core (a cache, writes not yet flushed) lives in
a `PerKey`: a test's two Cores are two processes, and nothing outlives the key it belongs to.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class PerKey(Generic[K, V]):
    """`per(key)` is `key`'s object, made by `factory` the first time; `per.get(key)` only
    looks (None when nothing was made yet). Keys are held weakly."""

    def __init__(self, factory: Callable[[], V]) -> None:
        self._factory = factory
        self._by: weakref.WeakKeyDictionary[K, V] = weakref.WeakKeyDictionary()

    def __call__(self, key: K) -> V:
        found = self._by.get(key)
        if found is None:
            found = self._by[key] = self._factory()
        return found

    def get(self, key: K) -> V | None:
        return self._by.get(key)
