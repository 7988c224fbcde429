"""Stories: what a process holds per Core or per database is one object per key, made on first
use, and it goes when the key goes (a test's many Cores do not pile up)."""

from __future__ import annotations

import gc

from storage.perkey import PerKey


class Key:
    """Something a process holds things for (a Core, a Database, an engine)."""


def test_each_key_has_one_object_made_on_first_use() -> None:
    made: list[list[str]] = []

    def fresh() -> list[str]:
        made.append([])
        return made[-1]

    per: PerKey[Key, list[str]] = PerKey(fresh)
    a, b = Key(), Key()
    assert per.get(a) is None and not made, "looking makes nothing"
    per(a).append("held")
    assert per(a) == ["held"] and per.get(a) is per(a)
    assert per(b) == [] and per(b) is not per(a) and len(made) == 2


def test_the_object_goes_with_its_key() -> None:
    per: PerKey[Key, list[str]] = PerKey(list)
    key = Key()
    per(key).append("held")
    del key
    gc.collect()
    assert not list(per._by)
